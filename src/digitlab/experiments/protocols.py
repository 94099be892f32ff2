"""Named model comparisons: which models, trained how, tested on what, against which published figures
(torch-free: the CLI lists them). `digitlab compare --protocol NAME` runs one (digitlab.experiments.compare).

Every run of a protocol shares one train/val/test cut (split_seed 0), so the seeds vary the weights,
shuffling, dropout and augmentation only. A recipe starts from a preset where one exists (its published
set-up) and changes what the time budget needs, mostly the epochs.

Seconds per MNIST epoch below: one torch thread on the project's 2-core CPU, the second epoch of a
2,000-image `--limit` run extrapolated to 55,000 train + 5,000 val images (ms per training image: lenet5
0.11, lenet-attention 0.71, lenet5-improved 0.58, alexnet 1.14, vgg16 1.76, mobilenetv3-small 6.48,
resnet18 10.75), measured while other processes loaded the machine (1-minute load 1.2-2.3): an upper
bound. rescnn: about 33 s per full epoch with its preset (channels_last, batch 64), measured whole. The
times in the descriptions assume `jobs` trainings at once, one thread each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from digitlab.errors import ConfigError, close_match


@dataclass(frozen=True)
class Recipe:
    """One model of a protocol: how it is trained and the figure it is compared with."""
    model: str
    preset: str | None = None  # start from this preset's settings
    overrides: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields on top of preset and protocol
    published: float | None = None  # the published test accuracy (fraction) of this architecture
    source: str = ""  # where that figure comes from, and how it was obtained


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    dataset: str
    base: dict[str, Any]  # TrainConfig fields every model shares (dataset, splits, split_seed)
    recipes: tuple[Recipe, ...]
    folds: int = 0  # > 0: each model trains once per fold (the folds stand in for seeds)
    jobs: int = 2  # trainings at once that the stated time assumes (one torch thread each)

    @property
    def models(self) -> list[str]:
        return [r.model for r in self.recipes]

    def recipe(self, model: str) -> Recipe | None:
        return next((r for r in self.recipes if r.model == model), None)


MNIST = {"dataset": "mnist", "train_split": "train", "test_split": "test", "split": (11, 1), "split_seed": 0}
ONECYCLE_ADAM = {"optimizer": "adam", "schedule": "onecycle", "keep": "last", "batch_size": 128}

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in [
    Protocol(
        name="mnist-zoo",
        description="the zoo on MNIST (55k train, 5k val, the 10k test set), each model against its published "
                    "figure: lenet5 20 epochs, lenet-attention 15, lenet5-improved 12, alexnet 4, vgg16 3, "
                    "rescnn 10, mobilenetv3-small 2, resnet18 1; 3 seeds, 2 at a time, take about 1.4 h on 2 cores",
        dataset="mnist",
        base=MNIST,
        # s per epoch, 1 thread: see the module docstring; per seed about 3,350 s of one core, so 3 seeds
        # two at a time about 84 min, and about 5 more for testing, calibration and inference timing
        recipes=(
            # 20 x 6.1 s; the preset (4:1 split, seed 0) reached 98.8% test
            Recipe("lenet5", preset="lenet5-classic", published=0.977,
                   source="LeNet-5 (LeCun et al. 1998) as the comparison cites it"),
            # 15 x 41 s; the preset reached 99.51% (seed 0)
            Recipe("lenet-attention", preset="lenet-attention", published=0.993,
                   source="LeNet with a 1x1-convolution attention mask"),
            # 12 x 33 s; the preset reached 99.55% (seed 0)
            Recipe("lenet5-improved", preset="lenet5-improved", published=0.9914,
                   source="improved LeNet-5: test error 0.86%"),
            # 4 x 65 s; no BatchNorm: on 12k images lr 1e-3 reached 91.5% in one epoch, 2e-3 79.7%
            Recipe("alexnet", overrides={**ONECYCLE_ADAM, "lr": 1e-3, "epochs": 4}, published=0.987,
                   source="AlexNet on MNIST"),
            # 3 x 99 s
            Recipe("vgg16", overrides={**ONECYCLE_ADAM, "lr": 3e-3, "epochs": 3}, published=0.989,
                   source="VGG-16 on MNIST"),
            # 10 x 33 s: the preset as it is (seeds 1, 2: 99.08, 98.99% test)
            Recipe("rescnn", preset="rescnn-sgd", published=0.98,
                   source="residual CNN with SGD: about 98-99%"),
            # 2 x 361 s (depthwise convolutions are slow on a CPU); no published MNIST figure
            Recipe("mobilenetv3-small", overrides={**ONECYCLE_ADAM, "lr": 4e-3, "epochs": 2}),
            # 1 x 608 s: one epoch is far above the published figure, which came from a short run
            Recipe("resnet18", overrides={**ONECYCLE_ADAM, "lr": 2e-3, "epochs": 1}, published=0.865,
                   source="ResNet on MNIST"),
        ),
    ),
    Protocol(
        name="fashion-mnist",
        description="four zoo models on Fashion-MNIST (55k train, 5k val, the 10k test set) against the figures "
                    "submitted to the Fashion-MNIST benchmark (other sizes and preprocessing): lenet5-improved 10 "
                    "epochs, alexnet 10, vgg16 8, resnet18 2; 3 seeds, 2 at a time, take about 1.3 h on 2 cores",
        dataset="fashion-mnist",
        base={**MNIST, "dataset": "fashion-mnist"},
        recipes=(
            Recipe("lenet5-improved", overrides={**ONECYCLE_ADAM, "lr": 2e-3, "epochs": 10}),
            Recipe("alexnet", overrides={**ONECYCLE_ADAM, "lr": 1e-3, "epochs": 10}, published=0.899,
                   source="AlexNet with triplet loss (zalandoresearch/fashion-mnist benchmark table)"),
            Recipe("vgg16", overrides={**ONECYCLE_ADAM, "lr": 4e-3, "epochs": 8}, published=0.935,
                   source="VGG16, 26M parameters, no preprocessing (fashion-mnist benchmark table)"),
            Recipe("resnet18", overrides={**ONECYCLE_ADAM, "lr": 2e-3, "epochs": 2}, published=0.949,
                   source="ResNet18 with flips, translation and rotation (fashion-mnist benchmark table)"),
        ),
    ),
    Protocol(
        name="tibetan-mnist",
        description="three zoo models on TibetanMNIST (17,768 images cut 70:20:10 into train, val and test once "
                    "for all runs): mobilenetv3-small 12 epochs (its preset), lenet5-improved 12, alexnet 10; "
                    "3 seeds, 2 at a time, take about 35 min on 2 cores",
        dataset="tibetan-mnist",
        base={"dataset": "tibetan-mnist", "train_split": "all", "test_split": "", "split": (70, 20, 10),
              "split_seed": 0},
        recipes=(
            Recipe("mobilenetv3-small", preset="mobilenetv3-tibetan", published=0.9594,
                   source="MobileNetV3-small on TibetanMNIST, 70:20:10 split, 95.94% test"),
            Recipe("lenet5-improved", overrides={**ONECYCLE_ADAM, "lr": 2e-3, "epochs": 12}),
            Recipe("alexnet", overrides={**ONECYCLE_ADAM, "lr": 1e-3, "epochs": 10}),
        ),
    ),
    Protocol(
        name="kannada-mnist",
        description="three zoo models trained on Kannada-MNIST's 10k test split in 5 folds (8k train, 2k val "
                    "each) and tested on Dig-MNIST, the out-of-distribution set; mean ± std over the folds. "
                    "lenet5-improved 15 epochs, alexnet 10, vgg16 8; 2 at a time about 12 min on 2 cores",
        dataset="kannada-mnist",
        base={"dataset": "kannada-mnist", "train_split": "test", "test_split": "dig", "split_seed": 0},
        folds=5,
        recipes=tuple(
            Recipe(model, overrides={**ONECYCLE_ADAM, "lr": lr, "epochs": epochs,
                                     "augment": "rotation=10,scale=0.9:1.1,translate=0.1"}, published=0.761,
                   source="Prabhu 2019: 76.1% on Dig-MNIST from a CNN trained on the full 60k train set")
            for model, lr, epochs in (("lenet5-improved", 2e-3, 15), ("alexnet", 1e-3, 10), ("vgg16", 4e-3, 8))
        ),
    ),
]}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown comparison protocol {name!r}{close_match(name, PROTOCOLS)}")
    return PROTOCOLS[name]
