"""The model zoo: digit classifiers by name, timm-style.

    model = create_model("lenet5-improved", in_channels=1, num_classes=10, dropout=0.3)
    logits = model(x)  # (B, 1, 28, 28) float -> (B, 10)

Every model splits into forward_features (a feature map) and forward_head (logits), and derives
its layer sizes from a 28x28 input. `list_models()` names them; `model_info(name)` counts
parameters and multiply-accumulates.
"""

# Importing the model modules registers their constructors.
from digitlab.models import baselines, ensemble, fastcnn, lenet, linereader, mobilenetv3, rescnn  # noqa: F401
from digitlab.models.layers import INIT_SCHEMES, count_macs, init_weights
from digitlab.models.registry import ModelInfo, create_model, list_models, model_info, model_kind, register_model

__all__ = [
    "INIT_SCHEMES",
    "ModelInfo",
    "count_macs",
    "create_model",
    "init_weights",
    "list_models",
    "model_info",
    "model_kind",
    "register_model",
]
