"""Settings of `digitlab serve` (imports no FastAPI and no torch: the command line is built from them)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from digitlab.errors import ConfigError

API_KEYS_ENV = "DIGITLAB_API_KEYS"  # comma-separated keys; a request must send one (X-API-Key or Bearer)
CONFIG_ENV = "DIGITLAB_SERVE_CONFIG"  # how `digitlab serve --workers N` hands the settings to each worker


@dataclass(frozen=True)
class ServeConfig:
    # script name -> checkpoint (a run folder, .safetensors or .onnx file; None: the bundled set of that name);
    # empty: every bundled set (digitlab.pretrained.names())
    models: dict[str, str | None] = field(default_factory=dict)
    max_bytes: int = 10_000_000  # largest request body; larger ones get 413 before they are read
    max_pixels: int = 25_000_000  # largest image, checked on its header before decoding
    timeout: float = 30.0  # seconds one request may compute before it gets 504
    api_keys: tuple[str, ...] = ()  # none: the API is open
    backend: str | None = None  # the classifiers' engine: onnxruntime, torch, None: ONNX Runtime when installed
    threads: int = 1  # intra-op threads of each model call
    tune_process: bool = False  # a process that only serves: one thread per model call, GIL handed over often
    concurrency: int = 1  # requests computed at once per worker (the rest wait their turn): one per core a worker has

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_pixels, self.threads, self.concurrency) < 1 or self.timeout <= 0:
            raise ConfigError(f"max_bytes, max_pixels, threads and concurrency must be >= 1 and timeout > 0, got "
                              f"{self.max_bytes}, {self.max_pixels}, {self.threads}, {self.concurrency} and "
                              f"{self.timeout:g}")
        if self.backend not in (None, "onnxruntime", "torch"):
            raise ConfigError(f"backend must be onnxruntime or torch, got {self.backend!r}")
        if any(not k or "," in k for k in self.api_keys):
            raise ConfigError("an API key must be non-empty and hold no comma")

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeConfig:
        """The settings a `digitlab serve` parent process left in the environment, else the defaults; the keys
        of $DIGITLAB_API_KEYS are added."""
        raw = os.environ.get(CONFIG_ENV)
        values = json.loads(raw) if raw else {}
        values["api_keys"] = tuple(values.get("api_keys", ())) + env_keys()
        return cls(**values)


def env_keys() -> tuple[str, ...]:
    return tuple(k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip())
