"""digitlab's Flower ClientApp: a thin adapter over federated.task. It receives the global weights and both
configs from the server, trains locally through the one training loop and replies with its weights and
metrics. Which client it is comes from the SuperNode's node config: `partition-id` (a simulation sets it;
a SuperNode is started with it) and, optionally, `data-dir`, a folder holding this client's own data."""

from __future__ import annotations

import math

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from digitlab.federated.config import unpack
from digitlab.federated.task import build_model, client_data, drops_out, local_round, poison, pool_and_test, round_seed

app = ClientApp()


class SimulatedDropout(RuntimeError):
    """Raised by a client the federation's `dropout` setting makes fail mid-round."""


def client_id(context: Context) -> int:
    node = context.node_config
    if "partition-id" not in node:
        raise ValueError("this SuperNode has no partition-id: start it with --node-config 'partition-id=K'")
    return int(node["partition-id"])


@app.train()
def train(msg: Message, context: Context) -> Message:
    config = msg.content["config"]
    cfg, fed = unpack(str(config["digitlab"]))
    client = client_id(context)
    server_round = int(config["server-round"]) + int(config.get("round-offset", 0))
    torch.set_num_threads(fed.client_threads)
    data_dir = context.node_config.get("data-dir")
    data = client_data(cfg, fed, client, data_dir=str(data_dir) if data_dir else None)
    sent = msg.content["arrays"].to_torch_state_dict()
    model = build_model(cfg)
    test = pool_and_test(cfg)[1] if fed.eval_every else None
    weights, metrics = local_round(model, sent, data, cfg, fed, server_round, client, test,
                                   proximal_mu=float(config.get("proximal-mu", 0.0)))
    if drops_out(fed, server_round, client, cfg.seed):  # after the work: the client dies before it replies
        raise SimulatedDropout(f"client {client} dropped out in round {server_round} (simulated)")
    malicious = client < fed.malicious
    if malicious:
        weights = poison(sent, weights, fed, round_seed(cfg.seed + 1, server_round, client))
    record = {
        "num-examples": metrics["examples"], "client": client, "steps": metrics["steps"],
        "train-loss": _finite(metrics["train_loss"]), "train-accuracy": _finite(metrics["train_accuracy"]),
        "diverged": int(bool(metrics["diverged"])), "malicious": int(malicious),
    }
    if curve := metrics.get("curve"):
        record["curve-step"] = [int(s) for s, _ in curve]
        record["curve-accuracy"] = [float(a) for _, a in curve]
    content = RecordDict({"arrays": ArrayRecord(weights), "metrics": MetricRecord(record)})
    return Message(content=content, reply_to=msg)


def _finite(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(value) else float("nan")
