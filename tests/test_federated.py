"""Federated training on Flower: the plain-PyTorch client work, the server's record, and whole federations on
Flower's simulation runtime (a private SuperLink per run) through `digitlab federate`."""

import csv
import json
import os
from pathlib import Path

import pytest
import torch

from digitlab.cli import main
from digitlab.errors import ConfigError, DigitlabError
from digitlab.federated.config import FedConfig, pack, unpack
from digitlab.federated.history import check_folder
from digitlab.federated.task import (
    ProximalLoss,
    build_model,
    client_data,
    drops_out,
    federated_defaults,
    local_round,
    local_steps,
    poison,
    pool_and_test,
)
from digitlab.train.config import TrainConfig

DIGITS = TrainConfig(model="fastcnn", dataset="digits", batch_size=32, lr=0.01)


def test_configs_travel_as_one_json_string():
    cfg, fed = DIGITS, FedConfig(clients=3, partition="dirichlet:0.3", client_data=(), strategy="krum")
    assert unpack(pack(cfg, fed)) == (cfg, fed)


@pytest.mark.parametrize("values, message", [
    ({"strategy": "fedsgd"}, "strategy must be one of"),
    ({"clients": 0}, "clients must be >= 1"),
    ({"fraction": 0}, "fraction"),
    ({"dropout": 1.0}, "dropout"),
    ({"malicious": 2, "clients": 2}, "malicious"),
    ({"partition": "dirichlet:-1"}, "> 0"),
    ({"client_data": "a,b,c", "clients": 2}, "3 folders for 2 clients"),
    ({"trim": 0.5}, "trim"),
])
def test_bad_federation_settings_fail_with_one_line(values, message):
    with pytest.raises(ConfigError, match=message):
        FedConfig.from_dict(values)


def test_clients_split_the_whole_pool():
    cfg = federated_defaults(DIGITS)
    fed = FedConfig(clients=3, partition="shards")
    pool, test = pool_and_test(cfg)
    parts = [client_data(cfg, fed, k) for k in range(3)]
    assert sum(len(p) for p in parts) == len(pool)  # no validation share held back
    assert len(pool) + len(test) == 1797  # sklearn digits: pool and test are its one split
    with pytest.raises(ConfigError, match="no such partition"):
        client_data(cfg, fed, 3)


def test_local_round_takes_k_steps_from_the_weights_it_was_sent():
    cfg = federated_defaults(DIGITS)
    fed = FedConfig(clients=2, local_steps=7)
    data = client_data(cfg, fed, 0)
    model = build_model(cfg)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict({k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in sent.items()})
    a, metrics = local_round(model, sent, data, cfg, fed, server_round=1, client=0)
    b, _ = local_round(build_model(cfg), sent, data, cfg, fed, server_round=1, client=0)
    c, _ = local_round(build_model(cfg), sent, data, cfg, fed, server_round=2, client=0)
    assert metrics["steps"] == 7 and metrics["examples"] == len(data)
    assert all(torch.equal(a[k], b[k]) for k in a)  # same round and client: same result
    assert not all(torch.equal(a[k], c[k]) for k in a)  # another round: another batch order
    assert local_steps(FedConfig(local_epochs=2), 100, 10) == 20


def test_local_round_curve_and_proximal_term():
    cfg = federated_defaults(DIGITS)
    fed = FedConfig(clients=2, local_steps=20, eval_every=5)
    data = client_data(cfg, fed, 0)
    _, test = pool_and_test(cfg)
    sent = build_model(cfg).state_dict()
    free, m = local_round(build_model(cfg), sent, data, cfg, fed, 1, 0, test)
    assert [s for s, _ in m["curve"]] == [0, 5, 10, 15, 20]  # 0: the weights as sent
    assert all(0 <= a <= 1 for _, a in m["curve"])
    held, _ = local_round(build_model(cfg), sent, data, cfg, fed, 1, 0, proximal_mu=100.0)

    params = {name for name, _ in build_model(cfg).named_parameters()}  # not BatchNorm's running statistics

    def distance(w):
        return sum(((w[k] - sent[k]) ** 2).sum() for k in params).sqrt()

    assert distance(held) < 0.5 * distance(free)  # the proximal term keeps the client near the global model
    model = build_model(cfg)
    loss = ProximalLoss(__import__("digitlab.train.loop", fromlist=["x"]).ClassificationLoss(10), 1.0,
                        tuple(p.detach().clone() for p in model.parameters()))
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    assert torch.allclose(loss(model, (x, y))[0], torch.nn.functional.cross_entropy(model(x), y))  # 0 at the anchor


def test_poison_and_dropout_are_seeded():
    sent = {"w": torch.zeros(3), "n": torch.tensor(5)}
    trained = {"w": torch.ones(3), "n": torch.tensor(6)}
    scaled = poison(sent, trained, FedConfig(clients=2, malicious=1, attack="scale", attack_scale=10), 0)
    assert torch.equal(scaled["w"], torch.full((3,), 10.0)) and scaled["n"] == 6
    noisy = poison(sent, trained, FedConfig(clients=2, malicious=1, attack="noise"), 0)
    assert not torch.equal(noisy["w"], trained["w"])
    fed = FedConfig(clients=100, dropout=0.2)
    dropped = [drops_out(fed, 1, k, seed=0) for k in range(100)]
    assert dropped == [drops_out(fed, 1, k, seed=0) for k in range(100)]
    assert 8 <= sum(dropped) <= 35
    assert not any(drops_out(FedConfig(clients=100), 1, k, 0) for k in range(100))


def test_folder_of_another_federation_is_refused(tmp_path):
    cfg = federated_defaults(DIGITS)
    assert check_folder(tmp_path, cfg, FedConfig(rounds=2)) == 0
    assert check_folder(tmp_path, cfg, FedConfig(rounds=5)) == 0  # more rounds: the same federation goes on
    with pytest.raises(DigitlabError, match="federation.clients"):
        check_folder(tmp_path, cfg, FedConfig(clients=3))
    # a folder made before a setting existed resumes when the setting is at its default, not otherwise
    saved = json.loads((tmp_path / "federation.json").read_text())
    del saved["federation"]["dp_noise"]
    (tmp_path / "federation.json").write_text(json.dumps(saved))
    assert check_folder(tmp_path, cfg, FedConfig(rounds=6)) == 0
    with pytest.raises(DigitlabError, match="federation.dp_noise"):
        check_folder(tmp_path, cfg, FedConfig(rounds=6, dp_noise=1.0))


# --- whole federations on Flower's simulation runtime ---------------------------------------------------


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def flower_processes(home: Path) -> list[int]:
    """Processes started for this federation (their environment names its Flower home), still running."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if f"FLWR_HOME={home}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


DIGITS_ARGS = ["--dataset", "digits", "--model", "fastcnn", "--batch-size", "32", "--lr", "0.01", "--no-progress"]


def test_federate_on_the_simulation_runtime_then_resume(tmp_path, capsys):
    out = tmp_path / "fl"
    assert main(["federate", *DIGITS_ARGS, "--clients", "2", "--rounds", "1", "--out", str(out)]) == 0
    assert main(["federate", *DIGITS_ARGS, "--clients", "2", "--rounds", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "resuming after round 1 of 2" in printed
    table = rows(out / "rounds.csv")
    assert [int(r["round"]) for r in table] == [0, 1, 2]
    acc = [float(r["test_accuracy"]) for r in table]
    assert acc[2] > 0.6 and acc[2] > acc[0] + 0.3  # 1,528 training images over 2 clients, fastcnn
    assert all(int(r["replied"]) == 2 == int(r["clients"]) for r in table[1:])
    assert all(int(r["bytes_sent"]) > 0 and int(r["bytes_received"]) > 0 for r in table[1:])
    clients = rows(out / "clients.csv")
    assert sorted((int(r["round"]), int(r["client"])) for r in clients) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["test_accuracy"] == pytest.approx(acc[2])
    for name in ("partition.png", "partition.csv", "rounds.png", "model.safetensors", "model.json"):
        assert (out / name).is_file(), name
    # the global model is a normal checkpoint: eval reads it (here on all 1,797 images, the test share among them)
    assert main(["eval", "--checkpoint", str(out), "--split", "all", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 1797 and report["accuracy"] > 0.6
    assert flower_processes(out / "flower" / "flwr-home") == []  # nothing left running


def test_federation_survives_dropouts_and_krum_resists_a_malicious_client(tmp_path):
    out = tmp_path / "faults"
    assert main(["federate", *DIGITS_ARGS, "--clients", "5", "--rounds", "3", "--local-epochs", "2",
                 "--dropout", "0.3", "--malicious", "1", "--attack-scale", "50", "--strategy", "krum",
                 "--out", str(out)]) == 0
    table = rows(out / "rounds.csv")[1:]
    assert len(table) == 3
    assert sum(int(r["failed"]) for r in table) >= 1  # clients dropped out, the rounds went on
    assert all(int(r["replied"]) >= 1 for r in table)
    assert float(table[-1]["test_accuracy"]) > 0.6
    clients = rows(out / "clients.csv")
    assert any(int(r["malicious"]) for r in clients)
    assert flower_processes(out / "flower" / "flwr-home") == []


def test_fedavg_is_wrecked_by_the_same_malicious_client(tmp_path):
    # the control for the test above: without a robust rule, one client scaling its update 50x ruins the model
    out = tmp_path / "poisoned"
    assert main(["federate", *DIGITS_ARGS, "--clients", "5", "--rounds", "3", "--local-epochs", "2",
                 "--malicious", "1", "--attack-scale", "50", "--out", str(out)]) == 0
    assert float(rows(out / "rounds.csv")[-1]["test_accuracy"]) < 0.5


def test_federate_refuses_epochs_and_unknown_presets(tmp_path, capsys):
    assert main(["federate", *DIGITS_ARGS, "--epochs", "3", "--out", str(tmp_path / "x")]) == 2
    assert "--local-epochs" in capsys.readouterr().err
    assert main(["federate", "--preset", "tibetan-exchang", "--out", str(tmp_path / "y")]) == 2
    assert "did you mean 'tibetan-exchange'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_superlink_and_two_supernodes_with_tls_and_node_auth(tmp_path):
    # a real deployment on 127.0.0.1: SuperLink, 2 SuperNodes as separate processes, TLS, SuperNode
    # authentication on, `flwr run` of digitlab's app against them, 2 rounds
    from flower_helpers import make_certificates, make_node_keys

    from digitlab.federated.history import completed_rounds
    from digitlab.federated.runtime import flwr_run, register_supernode, superlink, supernode

    tls = make_certificates(tmp_path / "certs")
    out, run_config = tmp_path / "deployed", tmp_path / "run.toml"
    assert main(["federate", *DIGITS_ARGS, "--clients", "2", "--rounds", "2", "--out", str(out),
                 "--write-run-config", str(run_config)]) == 0
    out.mkdir()
    nodes = []
    with superlink(tmp_path, simulation=False, tls=tls, supernode_auth=True) as link:
        try:
            for k in range(2):
                private, public = make_node_keys(tmp_path / "keys", f"node{k}")
                register_supernode(link, public, tmp_path)
                nodes.append(supernode(link, tmp_path, f"supernode{k}", {"partition-id": k, "num-partitions": 2},
                                       auth_key=private))
            run = flwr_run(link, run_config, tmp_path)
            run.wait(600)
        finally:
            for node in nodes:
                node.stop()
    log = (tmp_path / "run.log").read_text(errors="replace")
    assert run.returncode == 0, log[-3000:]
    assert completed_rounds(out) == 2, log[-3000:]
    table = rows(out / "rounds.csv")
    assert [int(r["round"]) for r in table] == [0, 1, 2]
    assert all(int(r["replied"]) == 2 for r in table[1:])
    assert float(table[-1]["test_accuracy"]) > 0.6
    assert sorted(int(r["client"]) for r in rows(out / "clients.csv")) == [0, 0, 1, 1]
    assert flower_processes(link.home) == []


def test_an_unregistered_supernode_is_refused(tmp_path):
    from flower_helpers import make_certificates, make_node_keys

    from digitlab.federated.runtime import superlink, supernode

    tls = make_certificates(tmp_path / "certs")
    with superlink(tmp_path, simulation=False, tls=tls, supernode_auth=True) as link:
        private, _ = make_node_keys(tmp_path / "keys", "stranger")
        node = supernode(link, tmp_path, "stranger", {"partition-id": 0}, auth_key=private)
        try:
            node.popen.wait(60)  # it is turned away and gives up
        finally:
            node.stop()
    assert node.popen.returncode != 0
    # turned away at activation (the registered nodes of the test above, same TLS set-up, get in)
    assert "Failed to activate SuperNode" in (tmp_path / "stranger.log").read_text(errors="replace")
