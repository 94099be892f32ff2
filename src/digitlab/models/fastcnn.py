"""A CNN built for time-to-accuracy on a CPU: every layer strides, so no layer runs at 28x28."""

from collections.abc import Sequence

from torch import nn

from digitlab.errors import ModelError
from digitlab.models.layers import Classifier, ConvBnAct, num_flat_features
from digitlab.models.registry import register_model


@register_model("fastcnn", description="three stride-2 conv-BN-ReLU layers and a linear head: ~0.6M MACs",
                reference="digitlab: CPU time-to-accuracy (benchmarks/time_to_accuracy.py)")
class FastCNN(Classifier):
    """On a CPU the per-pixel work of BatchNorm, ReLU and their backward passes at full 28x28
    resolution costs as much as the convolutions; striding from the first layer keeps every
    activation map at 14x14 or smaller. (16, 32, 64) gives 98.8-98.9% after one MNIST epoch."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels: Sequence[int] = (16, 32, 64),
                 first_kernel: int = 5):
        super().__init__()
        if not channels:
            raise ModelError("fastcnn: channels must name at least one layer width")
        widths = [in_channels, *channels]
        self.features = nn.Sequential(*[
            ConvBnAct(c_in, c_out, first_kernel if i == 0 else 3, stride=2)
            for i, (c_in, c_out) in enumerate(zip(widths, widths[1:]))
        ])  # (B, 1, 28, 28) -> (B, 16, 14, 14) -> (B, 32, 7, 7) -> (B, 64, 4, 4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(num_flat_features(self.features, in_channels), num_classes))
