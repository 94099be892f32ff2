"""Federated training on Flower: partitions and the clients' work in plain PyTorch (partition, task), the
server's record (history), Flower's apps as thin adapters (client_app, server_app), the runtime that starts
and stops a private SuperLink (runtime), and `federate`, a whole federation on this machine (run).

Importing this package imports neither torch nor flwr: each name loads its module when first used."""

from importlib import import_module

_API = {
    "FedConfig": "config", "federate": "run", "partition_indices": "partition", "parse_partition": "partition",
    "FED_PRESETS": "presets", "get_fed_preset": "presets",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f"digitlab.federated.{_API[name]}"), name)
    raise AttributeError(f"module 'digitlab.federated' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
