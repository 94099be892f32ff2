"""digitlab's Flower ServerApp: a thin adapter that picks one of Flower's strategies by name, runs it for the
federation's rounds and, after each round, tests the global model on the held-out test set and saves the
round (federated.history). The settings come from the run config: `digitlab-config` (both configs as JSON)
and `out` (the federation's folder)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from logging import INFO
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp import strategy as strategies

from digitlab.federated.config import FedConfig, pack, unpack
from digitlab.federated.history import History
from digitlab.federated.task import build_model, pool_and_test, test_weights
from digitlab.train.config import TrainConfig

app = ServerApp()


def mean_train_metrics(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """The example-weighted mean train loss and accuracy of the replies (the per-client rows hold the rest)."""
    totals: dict[str, float] = {}
    weight = 0.0
    for record in records:
        metrics = next(iter(record.metric_records.values()))
        n = float(metrics[weight_key])
        if not all(math.isfinite(float(metrics.get(k, math.nan))) for k in ("train-loss", "train-accuracy")):
            continue
        weight += n
        for key in ("train-loss", "train-accuracy"):
            totals[key] = totals.get(key, 0.0) + n * float(metrics[key])
    return MetricRecord({k: v / weight for k, v in totals.items()} if weight else {})


def make_strategy(fed: FedConfig, history: History | None = None):
    """Flower's strategy of fed.strategy, configured from fed, recording each round into `history`."""
    common = dict(fraction_train=fed.fraction, fraction_evaluate=0.0, min_train_nodes=fed.sampled,
                  min_evaluate_nodes=0, min_available_nodes=fed.clients, train_metrics_aggr_fn=mean_train_metrics)
    name = fed.strategy
    if name == "fedavg":
        cls, extra = strategies.FedAvg, {}
    elif name == "fedprox":
        cls, extra = strategies.FedProx, {"proximal_mu": fed.proximal_mu}
    elif name == "fedavgm":
        cls, extra = strategies.FedAvgM, {"server_momentum": fed.server_momentum}
        if fed.server_lr is not None:
            extra["server_learning_rate"] = fed.server_lr
    elif name in ("fedadam", "fedyogi"):
        cls = strategies.FedAdam if name == "fedadam" else strategies.FedYogi
        extra = {} if fed.server_lr is None else {"eta": fed.server_lr}
    elif name == "fedmedian":
        cls, extra = strategies.FedMedian, {}
    elif name == "fedtrimmedavg":
        cls, extra = strategies.FedTrimmedAvg, {"beta": fed.trim}
    elif name == "krum":
        cls, extra = strategies.Krum, {"num_malicious_nodes": fed.byzantine}
    elif name == "multikrum":
        cls, extra = strategies.MultiKrum, {"num_malicious_nodes": fed.byzantine,
                                            "num_nodes_to_select": max(1, fed.sampled - fed.byzantine)}
    else:
        cls, extra = strategies.Bulyan, {"num_malicious_nodes": fed.byzantine}
    if history is None:
        return cls(**common, **extra)
    return _recording(cls, history)(**common, **extra)


def _recording(cls: type, history: History) -> type:
    """cls that also tells `history` what each round sent and received, per client."""

    class Recording(cls):
        def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid):
            messages = list(super().configure_train(server_round, arrays, config, grid))
            history.sent(server_round + history_offset(config), len(messages), arrays.count_bytes())
            return messages

        def aggregate_train(self, server_round: int, replies: Iterable[Message]):
            replies = list(replies)
            client_rows, curve_rows, received = [], [], 0
            for msg in replies:
                if msg.has_error():
                    continue
                arrays = msg.content.array_records.get("arrays")
                size = arrays.count_bytes() if arrays is not None else 0
                received += size
                m = next(iter(msg.content.metric_records.values()))
                r = history.pending.get("round", server_round)
                client = int(m.get("client", -1))
                client_rows.append({
                    "round": r, "client": client, "examples": int(m["num-examples"]), "steps": int(m.get("steps", 0)),
                    "train_loss": _or_none(m.get("train-loss")), "train_accuracy": _or_none(m.get("train-accuracy")),
                    "diverged": int(m.get("diverged", 0)), "malicious": int(m.get("malicious", 0)),
                    "bytes_received": size})
                steps, accs = m.get("curve-step", []), m.get("curve-accuracy", [])
                curve_rows += [{"round": r, "client": client, "step": int(s), "test_accuracy": float(a)}
                               for s, a in zip(steps, accs)]
            history.received(server_round, sorted(client_rows, key=lambda row: row["client"]), curve_rows, received)
            return super().aggregate_train(server_round, replies)

    Recording.__name__ = Recording.__qualname__ = cls.__name__
    return Recording


def history_offset(config: ConfigRecord) -> int:
    return int(config.get("round-offset", 0))


def _or_none(value) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def run_server(grid: Grid, cfg: TrainConfig, fed: FedConfig, out: Path) -> History:
    """The whole federation from the server's side: resume after the last saved round, run the rest."""
    torch.set_num_threads(fed.client_threads)
    history = History(out, cfg, fed)
    offset = history.done
    if offset >= fed.rounds:
        log(INFO, "digitlab: all %d rounds are done in %s", fed.rounds, out)
        return history
    model = build_model(cfg)
    _, test = pool_and_test(cfg)
    initial = history.initial_weights(model)
    strategy = make_strategy(fed, history)
    clock = {"t": time.perf_counter()}

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        weights = arrays.to_torch_state_dict()
        result = test_weights(cfg, weights, test, model)
        seconds = time.perf_counter() - clock["t"]
        clock["t"] = time.perf_counter()
        if server_round == 0 and offset:
            return MetricRecord({"test-accuracy": result.accuracy})  # the resumed round, already recorded
        history.finish_round(offset + server_round, model, result.loss, result.accuracy, seconds)
        log(INFO, "digitlab: round %d test accuracy %.4f", offset + server_round, result.accuracy)
        return MetricRecord({"test-accuracy": result.accuracy, "test-loss": result.loss})

    train_config = ConfigRecord({"digitlab": pack(cfg, fed), "round-offset": offset})
    strategy.start(grid=grid, initial_arrays=ArrayRecord(initial), num_rounds=fed.rounds - offset,
                   timeout=fed.round_timeout or 3600, train_config=train_config, evaluate_fn=evaluate)
    return history


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg, fed = unpack(str(context.run_config["digitlab-config"]))
    run_server(grid, cfg, fed, Path(str(context.run_config["out"])))
