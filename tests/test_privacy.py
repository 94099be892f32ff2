"""Privacy modes of federated training, on Flower's simulation runtime: SecAgg+ secure aggregation (the
server gets the right average, yet what it receives from a client is not that client's weights) and
differential privacy (the Gaussian noise of the stated size, and the accountant's epsilon per round)."""

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from test_federated import DIGITS_ARGS, flower_processes, rows

from digitlab.checkpoint import load_checkpoint
from digitlab.cli import main
from digitlab.errors import ConfigError
from digitlab.federated.config import FedConfig, unpack
from digitlab.federated.history import completed_rounds
from digitlab.federated.task import build_model, client_data, float_keys, local_round
from digitlab.train.config import TrainConfig

PROBE_APP = Path(__file__).parent / "secagg_probe"


@pytest.mark.parametrize("values, message", [
    ({"secure_aggregation": True, "strategy": "krum"}, "fedavg only"),
    ({"secure_aggregation": True, "dp_noise": 1.0}, "choose one"),
    ({"secure_aggregation": True, "clients": 1}, "at least 2 clients"),
    ({"dp_noise": 1.0, "strategy": "fedmedian"}, "fedavg or fedprox"),
    ({"dp_clipping": "both"}, "dp_clipping must be one of"),
    ({"dp_delta": 1.0}, "dp_delta"),
])
def test_bad_privacy_settings_fail_with_one_line(values, message):
    with pytest.raises(ConfigError, match=message):
        FedConfig.from_dict(values)


def flat(weights: dict, keys: list[str]) -> np.ndarray:
    return torch.cat([weights[k].reshape(-1).double() for k in keys]).numpy()


def test_secure_aggregation_gives_the_server_only_the_average(tmp_path):
    from flwr.common.secure_aggregation.quantization import quantize

    from digitlab.federated.runtime import flwr_run, superlink

    out, run_config = tmp_path / "secure", tmp_path / "run.toml"
    assert main(["federate", *DIGITS_ARGS, "--clients", "3", "--rounds", "1", "--secure-aggregation", "true",
                 "--out", str(out), "--write-run-config", str(run_config)]) == 0
    out.mkdir()
    federation = {"num_supernodes": 3, "client_resources_num_cpus": 1, "init_args_num_cpus": 2,
                  "init_args_logging_level": "warning"}
    with superlink(tmp_path, simulation=True) as link:
        run = flwr_run(link, run_config, tmp_path, federation, app=PROBE_APP)
        run.wait(600)
    log = (tmp_path / "run.log").read_text(errors="replace")
    assert run.returncode == 0 and completed_rounds(out) == 1, log[-3000:]
    assert flower_processes(link.home) == []

    # each client's round, done again here: the same seeds give the same local models
    cfg, fed = unpack(tomllib.loads(run_config.read_text())["digitlab-config"])
    initial = build_model(cfg).state_dict()
    keys = float_keys(initial)
    threads = torch.get_num_threads()
    torch.set_num_threads(fed.client_threads)
    try:
        local = []
        for k in range(3):
            data = client_data(cfg, fed, k)
            weights, _ = local_round(build_model(cfg), initial, data, cfg, fed, 1, k)
            local.append((flat(weights, keys), len(data)))
    finally:
        torch.set_num_threads(threads)
    plain = sum(w * n for w, n in local) / sum(n for _, n in local)  # plain FedAvg's example-weighted mean
    secure = flat(load_checkpoint(out).model.state_dict(), keys)
    assert np.abs(plain - flat(initial, keys)).max() > 1e-2  # the clients did move the model
    assert np.abs(secure - plain).max() < 1e-4  # SecAgg+'s average is FedAvg's, up to its quantisation

    for k, (weights, n) in enumerate(local):
        received = np.load(out / "received" / f"client-{k}.npz")
        assert int(received["plain_array_bytes"]) == 0  # no weights in the clear beside the masked vector
        # arr_0 is the client's (masked) weight factor, then one masked array per floating-point tensor
        masked = np.concatenate([received[f"arr_{i + 1}"].reshape(-1) for i in range(len(keys))]).astype(np.float64)
        assert masked.size == weights.size
        # unmasked, the quantised weights would give the client's model away (correlation ~1) ...
        ratio = n / max(m for _, m in local)
        unmasked = np.concatenate(quantize([weights * ratio], 8.0, 2**22)).astype(np.float64)
        assert np.corrcoef(unmasked, weights)[0, 1] > 0.99
        # ... masked, they are uniform noise over [0, 2^32) that says nothing of them
        assert abs(np.corrcoef(masked, weights)[0, 1]) < 0.05
        assert abs(masked.mean() / 2**32 - 0.5) < 0.01 and abs(masked.std() / 2**32 - 12**-0.5) < 0.01


def test_secure_aggregation_survives_clients_dropping_out_mid_round(tmp_path):
    # a client that dies after the keys are shared: the others' shares remove its pairwise masks
    out = tmp_path / "secure-dropout"
    assert main(["federate", *DIGITS_ARGS, "--clients", "5", "--rounds", "3", "--dropout", "0.3",
                 "--secure-aggregation", "true", "--out", str(out)]) == 0
    table = rows(out / "rounds.csv")[1:]
    assert len(table) == 3 and sum(int(r["failed"]) for r in table) >= 1
    assert float(table[-1]["test_accuracy"]) > 0.6
    assert flower_processes(out / "flower" / "flwr-home") == []


def expected_epsilon(fed: FedConfig, releases: int) -> float:
    from flwr.serverapp import GaussianPrivacyEvent

    from digitlab.federated.server_app import make_accountant

    accountant = make_accountant(fed)
    accountant.compose(GaussianPrivacyEvent(fed.dp_noise, fed.sampled, fed.clients), count=releases)
    return accountant.get_privacy_spent().epsilon


def dp_run(out: Path, clipping: str, noise: float, clip: float, rounds: int) -> tuple[TrainConfig, FedConfig]:
    assert main(["federate", *DIGITS_ARGS, "--clients", "3", "--dp-noise", str(noise), "--dp-clip", str(clip),
                 "--dp-clipping", clipping, "--rounds", str(rounds), "--out", str(out)]) == 0
    saved = json.loads((out / "federation.json").read_text())
    return TrainConfig.from_dict(saved["train"]), FedConfig.from_dict(saved["federation"])


def global_change(out: Path, cfg: TrainConfig) -> np.ndarray:
    """The round's global model minus the initial one, as one vector of the floating-point weights."""
    initial = build_model(cfg).state_dict()
    keys = float_keys(initial)
    return flat(load_checkpoint(out).model.state_dict(), keys) - flat(initial, keys)


def check_epsilon(out: Path, fed: FedConfig) -> None:
    table = rows(out / "rounds.csv")[1:]
    epsilons = [float(r["epsilon"]) for r in table]
    assert epsilons == pytest.approx([expected_epsilon(fed, k + 1) for k in range(len(table))], rel=1e-6)
    assert all(e > 0 for e in epsilons) and epsilons == sorted(epsilons)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epsilon"] == pytest.approx(epsilons[-1]) and summary["delta"] == fed.dp_delta


def test_central_dp_adds_the_stated_noise_and_counts_epsilon_across_a_resume(tmp_path):
    out = tmp_path / "dp"
    cfg, fed = dp_run(out, "server", noise=1.0, clip=0.1, rounds=1)
    change = global_change(out, cfg)
    # the clipped mean moves at most C = 0.1; the Gaussian noise, std z C / n per weight, moves it far more
    noise = fed.dp_noise * fed.dp_clip / fed.sampled * np.sqrt(change.size)
    assert noise > 20 * fed.dp_clip
    assert np.linalg.norm(change) == pytest.approx(noise, rel=0.05)
    dp_run(out, "server", noise=1.0, clip=0.1, rounds=2)  # resumed: the accountant goes on counting
    check_epsilon(out, fed)


def test_client_side_clipping_bounds_each_update_before_it_leaves(tmp_path):
    out = tmp_path / "dp-client"
    cfg, fed = dp_run(out, "client", noise=0.001, clip=0.1, rounds=1)
    initial = build_model(cfg).state_dict()
    keys = float_keys(initial)
    trained, _ = local_round(build_model(cfg), initial, client_data(cfg, fed, 0), cfg, fed, 1, 0)
    assert np.linalg.norm(flat(trained, keys) - flat(initial, keys)) > 5 * fed.dp_clip  # unclipped: far larger
    noise = fed.dp_noise * fed.dp_clip / fed.sampled * np.sqrt(len(flat(initial, keys)))
    # the server only averages (and adds its little noise): the clients clipped their updates to C
    assert np.linalg.norm(global_change(out, cfg)) <= fed.dp_clip + 3 * noise
    check_epsilon(out, fed)
