"""The reader's line reader network: a whole line of digits read at once (CNN + BiLSTM, trained with CTC).

Not a 28x28 classifier: it reads line images LINE_HEIGHT pixels high and any width, and emits one
distribution over the classes and the CTC blank per STRIDE pixels of width. digitlab.read.linereader
makes its line images, trains it and decodes its output.
"""

from __future__ import annotations

import torch
from torch import nn

from digitlab.errors import ModelError
from digitlab.models.registry import register_model

LINE_HEIGHT = 32  # pixels: every line image is this high
STRIDE = 4  # pixels of line image per output frame
HEIGHTS = (16, 24, 32, 40, 48, 56, 64)  # image heights the network can read (three halvings, then one row)


class LineReaderNet(nn.Module):
    """(N, 1, height, W) line images -> (W // STRIDE, N, classes + 1) log-probabilities, blank last. height:
    LINE_HEIGHT (the page reader's line images), or another multiple of 8 for a field reader's."""

    def __init__(self, num_classes: int = 10, width: int = 48, hidden: int = 128, height: int = LINE_HEIGHT) -> None:
        super().__init__()
        if height not in HEIGHTS:
            raise ModelError(f"the line reader reads images {', '.join(map(str, HEIGHTS))} pixels high, got {height}")

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        c1, c2, c3 = width // 2, width, width * 4 // 3
        self.features = nn.Sequential(
            *block(1, c1), nn.MaxPool2d(2),  # 16 x W/2
            *block(c1, c2), nn.MaxPool2d(2),  # 8 x W/4
            *block(c2, c3), *block(c3, c3), nn.MaxPool2d((2, 1)),  # 4 x W/4
            nn.Conv2d(c3, hidden, (height // 8, 1)), nn.ReLU(inplace=True), nn.Dropout(0.2))  # 1 x W/4
        self.rnn = nn.LSTM(hidden, hidden, bidirectional=True)
        self.head = nn.Linear(2 * hidden, num_classes + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x).squeeze(2).permute(2, 0, 1)  # (T, N, hidden)
        out, _ = self.rnn(f)
        return self.head(out).log_softmax(2)


@register_model("line-reader", kind="line",
                description=f"CNN + BiLSTM over a {LINE_HEIGHT}-pixel-high line, CTC: reads a whole line of digits",
                reference="B. Shi, X. Bai, C. Yao, An end-to-end trainable neural network for image-based sequence "
                          "recognition (CRNN), IEEE PAMI 2017")
def line_reader(in_channels: int = 1, num_classes: int = 10, width: int = 48, hidden: int = 128,
                height: int = LINE_HEIGHT) -> LineReaderNet:
    if in_channels != 1:
        raise ModelError(f"the line reader reads gray line images (in_channels 1), got in_channels={in_channels}")
    return LineReaderNet(num_classes, width, hidden, height)
