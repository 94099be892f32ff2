"""digitlab's Flower ServerApp: a thin adapter that picks one of Flower's strategies by name, runs it for the
federation's rounds and, after each round, tests the global model on the held-out test set and saves the
round (federated.history). The settings come from the run config: `digitlab-config` (both configs as JSON)
and `out` (the federation's folder).

Privacy modes, both Flower's own: differential privacy wraps the strategy in Flower's fixed-clipping DP
wrapper (server- or client-side clipping) with its RDP accountant, whose epsilon is recorded every round;
secure aggregation runs Flower's SecAgg+ workflow, which Flower provides on its legacy strategy API only."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from logging import INFO
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp import strategy as strategies

from digitlab.atomic import write_text
from digitlab.federated.config import FedConfig, pack, unpack
from digitlab.federated.history import History
from digitlab.federated.task import build_model, client_parts, float_keys, pool_and_test, test_weights
from digitlab.train.config import TrainConfig

app = ServerApp()
PRIVACY_STATE = "privacy.json"  # the accountant's state, so that a resumed federation keeps counting


def mean_train_metrics(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """The example-weighted mean train loss and accuracy of the replies (the per-client rows hold the rest)."""
    totals: dict[str, float] = {}
    weight = 0.0
    for record in records:
        metrics = next(iter(record.metric_records.values()))
        n = float(metrics["num-examples"])
        if not all(math.isfinite(float(metrics.get(k, math.nan))) for k in ("train-loss", "train-accuracy")):
            continue
        weight += n
        for key in ("train-loss", "train-accuracy"):
            totals[key] = totals.get(key, 0.0) + n * float(metrics[key])
    return MetricRecord({k: v / weight for k, v in totals.items()} if weight else {})


def content_bytes(msg: Message) -> int:
    """The bytes of a message's records (arrays, configs, metrics): what travels, framing aside."""
    if msg.has_error():
        return 0
    total = 0
    for record in msg.content.values():
        if isinstance(record, ArrayRecord):
            total += record.count_bytes()
        else:  # Config/MetricRecord.count_bytes refuses list values, which SecAgg+ sends
            total += sum(len(key) + _value_bytes(value) for key, value in record.items())
    return total


def _value_bytes(value: Any) -> int:
    if isinstance(value, list):
        return sum(_value_bytes(v) for v in value)
    if isinstance(value, (bytes, str)):
        return len(value)
    return 8  # bool, int, float


class CountingGrid:
    """A Grid that counts the bytes of every message sent and received, whatever the protocol (plain rounds,
    the four stages of SecAgg+); everything else is the wrapped Grid's."""

    def __init__(self, grid: Grid):
        self._grid = grid
        self.sent = self.received = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        self.sent += sum(content_bytes(m) for m in messages)
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        self.received += sum(content_bytes(m) for m in replies)
        return replies

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        self.sent += sum(content_bytes(m) for m in messages)
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        replies = list(self._grid.pull_messages(message_ids))
        self.received += sum(content_bytes(m) for m in replies)
        return replies

    def take(self) -> tuple[int, int]:
        """Bytes sent and received since the last call."""
        counts = (self.sent, self.received)
        self.sent = self.received = 0
        return counts


def _strategy_class(fed: FedConfig) -> tuple[type, dict[str, Any]]:
    server_lr = {} if fed.server_lr is None else {"server_learning_rate": fed.server_lr}
    eta = {} if fed.server_lr is None else {"eta": fed.server_lr}
    table: dict[str, tuple[type, dict[str, Any]]] = {
        "fedavg": (strategies.FedAvg, {}),
        "fedprox": (strategies.FedProx, {"proximal_mu": fed.proximal_mu}),
        "fedavgm": (strategies.FedAvgM, {"server_momentum": fed.server_momentum, **server_lr}),
        "fedadam": (strategies.FedAdam, eta),
        "fedyogi": (strategies.FedYogi, eta),
        "fedmedian": (strategies.FedMedian, {}),
        "fedtrimmedavg": (strategies.FedTrimmedAvg, {"beta": fed.trim}),
        "krum": (strategies.Krum, {"num_malicious_nodes": fed.byzantine}),
        "multikrum": (strategies.MultiKrum, {"num_malicious_nodes": fed.byzantine,
                                             "num_nodes_to_select": max(1, fed.sampled - fed.byzantine)}),
        "bulyan": (strategies.Bulyan, {"num_malicious_nodes": fed.byzantine}),
    }
    return table[fed.strategy]


def make_accountant(fed: FedConfig, state: dict | None = None):
    """Flower's RDP accountant for client-level (epsilon, delta): every sampled client is in every release
    (no amplification by sampling is claimed)."""
    from flwr.serverapp import NeighboringRelation, PrivacyConfig, RdpAccountant, SamplingMethod

    accountant = RdpAccountant(PrivacyConfig(target_delta=fed.dp_delta, population_size=fed.clients,
                                             neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                                             sampling_method=SamplingMethod.NO_AMPLIFICATION))
    if state:
        accountant.load_state_dict(state)
    return accountant


def make_strategy(fed: FedConfig, history: History | None = None, accountant=None):
    """Flower's strategy of fed.strategy, configured from fed (wrapped in Flower's DP wrapper when dp_noise is
    set), recording each round into `history`."""
    common = dict(fraction_train=fed.fraction, fraction_evaluate=0.0, min_train_nodes=fed.sampled,
                  min_evaluate_nodes=0, min_available_nodes=fed.clients, train_metrics_aggr_fn=mean_train_metrics)
    cls, extra = _strategy_class(fed)
    if not fed.dp_noise:
        return cls(**common, **extra) if history is None else _recording(cls, history)(**common, **extra)
    inner = cls(**common, **extra, weighted_by_key="unit-weight")
    wrapper = (strategies.DifferentialPrivacyServerSideFixedClipping if fed.dp_clipping == "server"
               else strategies.DifferentialPrivacyClientSideFixedClipping)
    wrapper = wrapper if history is None else _recording(wrapper, history)
    return wrapper(inner, fed.dp_noise, fed.dp_clip, fed.sampled,
                   accountant=accountant if accountant is not None else make_accountant(fed))


def _recording(cls: type, history: History) -> type:
    """cls that also tells `history` what each round sent and received, per client."""

    class Recording(cls):
        def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid):
            messages = list(super().configure_train(server_round, arrays, config, grid))
            history.sent(server_round + int(config.get("round-offset", 0)), len(messages))
            return messages

        def aggregate_train(self, server_round: int, replies: Iterable[Message]):
            replies = list(replies)
            client_rows, curve_rows = [], []
            for msg in replies:
                if msg.has_error():
                    continue
                arrays = msg.content.array_records.get("arrays")
                m = next(iter(msg.content.metric_records.values()))
                row = client_row(history.pending.get("round", server_round), m)
                row["bytes_received"] = arrays.count_bytes() if arrays is not None else 0
                client_rows.append(row)
                steps, accs = m.get("curve-step", []), m.get("curve-accuracy", [])
                curve_rows += [{"round": row["round"], "client": row["client"], "step": int(s),
                                "test_accuracy": float(a)} for s, a in zip(steps, accs)]
            history.received(client_rows, curve_rows)
            return super().aggregate_train(server_round, replies)

    Recording.__name__ = Recording.__qualname__ = cls.__name__
    return Recording


def client_row(server_round: int, m) -> dict[str, Any]:
    """A clients.csv row from a client's reported metrics."""
    return {"round": server_round, "client": int(m.get("client", -1)), "examples": int(m["num-examples"]),
            "steps": int(m.get("steps", 0)), "train_loss": _or_none(m.get("train-loss")),
            "train_accuracy": _or_none(m.get("train-accuracy")), "diverged": int(m.get("diverged", 0)),
            "malicious": int(m.get("malicious", 0)), "bytes_received": None}


def _or_none(value) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def run_server(grid: Grid, cfg: TrainConfig, fed: FedConfig, out: Path, context: Context | None = None) -> History:
    """The whole federation from the server's side: resume after the last saved round, run the rest.
    `context`: the ServerApp's (secure aggregation keeps its state there)."""
    torch.set_num_threads(fed.client_threads)
    history = History(out, cfg, fed)
    offset = history.done
    if offset >= fed.rounds:
        log(INFO, "digitlab: all %d rounds are done in %s", fed.rounds, out)
        return history
    model = build_model(cfg)
    _, test = pool_and_test(cfg)
    initial = history.initial_weights(model)
    grid = CountingGrid(grid)
    accountant = None
    if fed.dp_noise:
        saved = out / PRIVACY_STATE
        accountant = make_accountant(fed, json.loads(saved.read_text()) if offset and saved.is_file() else None)
    clock = {"t": time.perf_counter()}

    def evaluate(server_round: int, weights: dict) -> tuple[float, float]:
        result = test_weights(cfg, weights, test, model)
        seconds = time.perf_counter() - clock["t"]
        clock["t"] = time.perf_counter()
        sent, received = grid.take()
        if server_round == 0:  # the initial model (or, on resuming, the round already recorded)
            if not offset:
                history.finish_round(0, model, result.loss, result.accuracy, 0.0)
            return result.loss, result.accuracy
        epsilon = None
        if accountant is not None:
            epsilon = accountant.get_privacy_spent().epsilon if accountant.num_releases else 0.0
            write_text(out / PRIVACY_STATE, json.dumps(accountant.state_dict()))
        history.finish_round(offset + server_round, model, result.loss, result.accuracy, seconds, epsilon=epsilon,
                             bytes_sent=sent, bytes_received=received)
        log(INFO, "digitlab: round %d test accuracy %.4f", offset + server_round, result.accuracy)
        return result.loss, result.accuracy

    if fed.secure_aggregation:
        context = context or Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
        _run_secure(grid, context, cfg, fed, history, model, initial, offset, evaluate)
        return history
    strategy = make_strategy(fed, history, accountant)

    def evaluate_arrays(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        loss, accuracy = evaluate(server_round, arrays.to_torch_state_dict())
        return MetricRecord({"test-accuracy": accuracy, "test-loss": loss})

    train_config = ConfigRecord({"digitlab": pack(cfg, fed), "round-offset": offset})
    strategy.start(grid=grid, initial_arrays=ArrayRecord(initial), num_rounds=fed.rounds - offset,
                   timeout=fed.round_timeout or 3600, train_config=train_config, evaluate_fn=evaluate_arrays)
    return history


def secagg_max_weight(cfg: TrainConfig, fed: FedConfig) -> float:
    """SecAgg+ scales each client's weights by its examples / max_weight before quantising, so max_weight must
    be at least the largest client's examples: known for a partition; for clients with their own data, the
    largest MNIST-sized training set is assumed."""
    if not fed.client_data:
        return float(max(len(part) for part in client_parts(cfg, fed)))
    return 100_000.0


def _run_secure(grid: CountingGrid, context: Context, cfg: TrainConfig, fed: FedConfig, history: History,
                model: torch.nn.Module, initial: dict, offset: int,
                evaluate: Callable[[int, dict], tuple[float, float]]) -> None:
    """The federation with Flower's SecAgg+ workflow: each client masks its (example-weighted, quantised)
    floating-point weights with pairwise and private masks; the server removes the masks only from the sum."""
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg as LegacyFedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    keys = float_keys(initial)
    dtypes = [initial[k].numpy().dtype for k in keys]
    packed = pack(cfg, fed)

    def as_state_dict(arrays: list[np.ndarray]) -> dict:
        weights = dict(model.state_dict())
        weights.update({k: torch.from_numpy(np.asarray(a, dtype=d)) for k, a, d in zip(keys, arrays, dtypes)})
        return weights

    def fit_config(server_round: int) -> dict:
        history.sent(offset + server_round, fed.sampled)
        return {"digitlab": packed, "round-offset": offset, "server-round": server_round}

    def fit_metrics(results: list[tuple[int, dict]]) -> dict:
        rows = [client_row(history.pending.get("round", 0), m) for _, m in results]
        history.received(sorted(rows, key=lambda r: r["client"]), [])
        return {}

    def central(server_round: int, arrays: list[np.ndarray], config: dict) -> tuple[float, dict]:
        loss, accuracy = evaluate(server_round, as_state_dict(arrays))
        return loss, {"test-accuracy": accuracy}

    class SecureFedAvg(LegacyFedAvg):
        def aggregate_fit(self, server_round, results, failures):
            from flwr.common import parameters_to_ndarrays

            parameters, metrics = super().aggregate_fit(server_round, results, failures)
            if parameters is not None:  # the unmasked sum comes back in float64: send the model's own dtypes
                arrays = parameters_to_ndarrays(parameters)
                parameters = ndarrays_to_parameters([a.astype(d) for a, d in zip(arrays, dtypes)])
            return parameters, metrics

    strategy = SecureFedAvg(
        fraction_fit=fed.fraction, fraction_evaluate=0.0, min_fit_clients=fed.sampled, min_evaluate_clients=0,
        min_available_clients=fed.clients, evaluate_fn=central, on_fit_config_fn=fit_config,
        fit_metrics_aggregation_fn=fit_metrics,
        initial_parameters=ndarrays_to_parameters([initial[k].numpy() for k in keys]))
    rounds = ServerConfig(num_rounds=fed.rounds - offset, round_timeout=fed.round_timeout or None)
    context = LegacyContext(context=context, config=rounds, strategy=strategy)
    workflow = DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(
        num_shares=fed.secagg_shares, reconstruction_threshold=fed.secagg_threshold,
        max_weight=secagg_max_weight(cfg, fed), clipping_range=fed.secagg_clip,
        timeout=fed.round_timeout or None))
    workflow(grid, context)


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg, fed = unpack(str(context.run_config["digitlab-config"]))
    run_server(grid, cfg, fed, Path(str(context.run_config["out"])), context)
