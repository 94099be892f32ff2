"""Settings of `digitlab prune` (imports no torch: the command line is built from them)."""

from __future__ import annotations

from dataclasses import dataclass

from digitlab.errors import ConfigError

GRANULARITIES = ("weights", "channels")
SCHEDULES = ("iterative", "energy")
COSTS = ("macs", "energy")
STORAGES = ("sparse", "sparse-int8", "dense", "int8")


@dataclass(frozen=True)
class PruneConfig:
    granularity: str = "weights"  # weights: single weights set to zero; channels: whole filters/neurons cut out
    schedule: str = "iterative"  # iterative: all layers, `steps` prune -> fine-tune rounds; energy: layer by layer
    amount: float = 0.8  # weights: share of conv/linear weights zeroed; channels: share of each layer's channels cut
    steps: int = 4  # iterative: prune -> fine-tune rounds to reach `amount`
    finetune_epochs: float = 1.0  # epochs of fine-tuning after each iterative step, and at the end of `energy`
    local_epochs: float = 0.25  # energy: epochs of fine-tuning the just-pruned layer alone
    cost: str = "macs"  # energy: order layers by multiply-accumulates, or by MACs + 6x memory accesses ("energy")
    lr: float = 0.0  # fine-tuning learning rate, cosine-decayed in each fine-tune (0: a tenth of the run's own)
    storage: str = "sparse"  # how the checkpoint is written: sparse, sparse-int8 (also int8 weights), dense, int8
    data_dir: str | None = None  # data root (None: the run's own, then $DIGITLAB_DATA, then the cache)
    seed: int = 0  # seeds the fine-tuning
    threads: int = 0  # torch threads while fine-tuning (0: the run's own setting)

    def __post_init__(self) -> None:
        for name, allowed in (("granularity", GRANULARITIES), ("schedule", SCHEDULES), ("cost", COSTS),
                              ("storage", STORAGES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not 0 < self.amount < 1:
            raise ConfigError(f"amount must be in (0, 1), got {self.amount}")
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.finetune_epochs < 0 or self.local_epochs < 0 or self.lr < 0 or self.threads < 0:
            raise ConfigError("finetune_epochs, local_epochs, lr and threads must be >= 0")
