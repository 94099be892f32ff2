"""digitlab's Flower ClientApp: a thin adapter over federated.task. It receives the global weights and both
configs from the server, trains locally through the one training loop and replies with its weights and
metrics. Which client it is comes from the SuperNode's node config: `partition-id` (a simulation sets it;
a SuperNode is started with it) and, optionally, `data-dir`, a folder holding this client's own data.

Privacy: with secure aggregation the server speaks Flower's SecAgg+ protocol, whose client side is Flower's
`secaggplus_mod` (it masks this client's weights before they leave); that protocol carries the weights in
Flower's legacy fit format, which `train` answers too. With client-side DP clipping, Flower's
`fixedclipping_mod` clips the update before it leaves. `privacy_mod` routes each message to the mod it needs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import fixedclipping_mod
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common import recorddict_compat as compat

from digitlab.federated.config import unpack
from digitlab.federated.task import (
    Weights,
    build_model,
    client_data,
    drops_out,
    float_keys,
    local_round,
    poison,
    pool_and_test,
    round_seed,
)

LEGACY_PARAMETERS = "fitins.parameters"  # where Flower's legacy fit format (SecAgg+) carries the weights
CLIPPING_NORM = "clipping_norm"  # the key DifferentialPrivacyClientSideFixedClipping sends


def privacy_mod(msg: Message, context: Context, call_next) -> Message:
    """SecAgg+ messages go through Flower's secaggplus_mod, DP-clipped rounds through fixedclipping_mod, the
    rest straight to the app."""
    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    config = msg.content.config_records.get("config")
    if config is not None and CLIPPING_NORM in config:
        return fixedclipping_mod(msg, context, call_next)
    return call_next(msg, context)


app = ClientApp(mods=[privacy_mod])


class SimulatedDropout(RuntimeError):
    """Raised by a client the federation's `dropout` setting makes fail mid-round."""


def client_id(context: Context) -> int:
    node = context.node_config
    if "partition-id" not in node:
        raise ValueError("this SuperNode has no partition-id: start it with --node-config 'partition-id=K'")
    return int(node["partition-id"])


def local_work(config: ConfigRecord | dict, sent: Weights, context: Context) -> tuple[Weights, dict[str, Any]]:
    """This client's round: train from `sent`, then the simulated faults. Returns the weights to send back and
    the metrics."""
    cfg, fed = unpack(str(config["digitlab"]))
    client = client_id(context)
    server_round = int(config["server-round"]) + int(config.get("round-offset", 0))
    torch.set_num_threads(fed.client_threads)
    data_dir = context.node_config.get("data-dir")
    data = client_data(cfg, fed, client, data_dir=str(data_dir) if data_dir else None)
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
    if fed.dp_noise:
        record["unit-weight"] = 1  # DP averages clients uniformly (the accountant's assumption)
    if curve := metrics.get("curve"):
        record["curve-step"] = [int(s) for s, _ in curve]
        record["curve-accuracy"] = [float(a) for _, a in curve]
    return weights, record


@app.train()
def train(msg: Message, context: Context) -> Message:
    if LEGACY_PARAMETERS in msg.content.array_records:
        return _train_legacy(msg, context)
    sent = msg.content["arrays"].to_torch_state_dict()
    weights, record = local_work(msg.content["config"], sent, context)
    content = RecordDict({"arrays": ArrayRecord(weights), "metrics": MetricRecord(record)})
    return Message(content=content, reply_to=msg)


def _train_legacy(msg: Message, context: Context) -> Message:
    """The same round in Flower's legacy fit format, which SecAgg+ speaks: the floating-point weights as a
    list of arrays in state-dict order (see task.float_keys) and the config as a dict."""
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    cfg, _ = unpack(str(fitins.config["digitlab"]))
    sent = build_model(cfg).state_dict()  # integer buffers: this side's own
    keys = float_keys(sent)
    arrays = parameters_to_ndarrays(fitins.parameters)
    sent.update({k: torch.from_numpy(np.array(a, copy=True)) for k, a in zip(keys, arrays, strict=True)})
    weights, record = local_work(fitins.config, sent, context)
    metrics = {k: v for k, v in record.items() if not isinstance(v, list)}  # legacy metrics hold scalars only
    fitres = FitRes(status=Status(code=Code.OK, message=""), num_examples=int(record["num-examples"]),
                    parameters=ndarrays_to_parameters([weights[k].numpy() for k in keys]), metrics=metrics)
    return Message(content=compat.fitres_to_recorddict(fitres, keep_input=True), reply_to=msg)


def _finite(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(value) else float("nan")
