"""Model registry: a name maps to a constructor fn(in_channels=1, num_classes=10, **kw) -> nn.Module.

A constructor is a model class (when the class is the model) or a function (when the model is one
configuration of a more general class, such as resnet18). Its keyword arguments are the model's
arguments: create_model checks them against its signature.

Every network digitlab saves is registered, so that a checkpoint is rebuilt by name alone. Its kind
says what it reads: "classifier" (a (B, 1, 28, 28) digit -> (B, C) logits: the zoo), "line" (the
reader's line reader: (B, 1, 32, W) -> CTC log-probabilities) or "ensemble" (classifiers averaged,
built from finished runs). list_models() lists the classifiers unless asked for another kind.

It lives apart from ``__init__`` so that model modules can import ``register_model`` without
an import cycle.
"""

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from digitlab.errors import ModelError
from digitlab.models.layers import count_macs

Constructor = Callable[..., nn.Module]


@dataclass(frozen=True)
class _Entry:
    fn: Constructor
    description: str
    reference: str
    kind: str


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    reference: str
    params: int  # all parameters, trainable or not
    macs: int  # Conv2d + Linear multiply-accumulates per 1x28x28 image


_REGISTRY: dict[str, _Entry] = {}
KINDS = ("classifier", "line", "ensemble")


def register_model(name: str, *, description: str, reference: str = "", kind: str = "classifier",
                   ) -> Callable[[Constructor], Constructor]:
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")

    def decorator(fn: Constructor) -> Constructor:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = _Entry(fn, description, reference, kind)
        return fn
    return decorator


def list_models(pattern: str | None = None, kind: str | None = "classifier") -> list[str]:
    """Registered names of one kind (None: every kind), sorted; `pattern` is an fnmatch pattern such as
    'lenet*'."""
    names = sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def model_kind(name: str) -> str:
    """"classifier", "line" or "ensemble" (see the module's docstring)."""
    return _entry(name).kind


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ModelError(f"unknown model {name!r}{hint} (known: {', '.join(list_models(kind=None))})")
    return _REGISTRY[name]


def create_model(name: str, in_channels: int = 1, num_classes: int = 10, pretrained: str | None = None,
                 **kw) -> nn.Module:
    """Build a registered model; unknown names and bad arguments raise a one-line ModelError. pretrained: the
    weights of a bundled set (e.g. "mnist", or "fastcnn.mnist" as digitlab.pretrained.list_pretrained() names
    them), with that set's architecture arguments; the model comes in eval mode."""
    if pretrained is not None:
        from digitlab.errors import DigitlabError
        from digitlab.pretrained import pretrained_model

        _entry(name)
        if kw or (in_channels, num_classes) != (1, 10):
            raise ModelError(f"model {name!r} with pretrained={pretrained!r} takes its arguments from the bundled "
                             f"weights; give no others")
        try:
            return pretrained_model(name, pretrained)
        except DigitlabError as e:
            raise ModelError(str(e)) from None
    entry = _entry(name)
    for arg, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError(f"model {name!r}: {arg} must be a positive integer, got {value!r}")
    params = inspect.signature(entry.fn).parameters
    unknown = sorted(set(kw) - set(params))
    if unknown:
        accepted = [p for p in params if p not in ("in_channels", "num_classes")]
        close = difflib.get_close_matches(unknown[0], accepted, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelError(f"model {name!r} takes no argument {', '.join(map(repr, unknown))}{hint}; "
                         f"it takes: {', '.join(accepted) or 'no extra arguments'}")
    try:
        return entry.fn(in_channels=in_channels, num_classes=num_classes, **kw)
    except (TypeError, ValueError) as e:  # a wrong type or value deep inside a constructor
        raise ModelError(f"model {name!r} cannot be built with {kw}: {e}") from e


def model_info(name: str, **kw) -> ModelInfo:
    """Build the model and count its parameters and per-image MACs (a 28x28 classifier's)."""
    entry = _entry(name)
    if entry.kind != "classifier":
        raise ModelError(f"model {name!r} is a {entry.kind} model, not a 28x28 classifier")
    model = create_model(name, **kw)
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, in_channels=kw.get("in_channels", 1))
    return ModelInfo(name, entry.description, entry.reference, params, macs)
