"""A small residual network for 28×28 images (He et al., 2016, the CIFAR-style basic-block net).

Layout for the defaults (widths 16/32/80, two basic blocks per stage), 28×28 input::

    stem    conv3×3 (C→16) + BN + ReLU                         28×28
    stage1  2 basic blocks, the first with stride 2            14×14   16 channels
    stage2  2 basic blocks, the first with stride 2             7×7    32 channels
    stage3  2 basic blocks, the first with stride 2             4×4    80 channels
    pool    global average pooling → flatten → fc (80→classes)

A basic block is ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with bias-free
3×3 convolutions; the shortcut is the identity, or a 1×1 strided convolution + BN where the
shape changes. Downsampling at the start of every stage keeps the three stages at
14×14 / 7×7 / 4×4, so one epoch of Fashion-MNIST is cheap on a CPU; the last stage is
wide (80 rather than 64 channels) because at 4×4 its weights cost little compute, which
puts 82% of the 241,584 weights (Linear + Conv, 28×28 inputs, 10 classes) where pruning
has the most redundancy to remove. Every activation is its own ``nn.ReLU``
module and the forward has no data-dependent Python control flow, so the model traces with
``torch.fx.symbolic_trace``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import SparsenetError

__all__ = ["BasicBlock", "ResNet"]


def _conv_bn(cin: int, cout: int, kernel: int, stride: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv, nn.BatchNorm2d(cout)


class BasicBlock(nn.Module):
    """Two 3×3 conv + BN with a residual connection.

    Parameters
    ----------
    cin, cout : input and output channels.
    stride : stride of the first convolution (and of the projection shortcut).

    Shapes: (B, cin, H, W) → (B, cout, ⌈H/stride⌉, ⌈W/stride⌉).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, cout, 3, stride)
        self.relu1 = nn.ReLU()
        self.conv2, self.bn2 = _conv_bn(cout, cout, 3, 1)
        self.shortcut: nn.Module
        if stride != 1 or cin != cout:
            conv, bn = _conv_bn(cin, cout, 1, stride)
            self.shortcut = nn.Sequential(OrderedDict(conv=conv, bn=bn))
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem, three stages of basic blocks, global average pooling, a linear classifier.

    Parameters
    ----------
    in_channels : image channels C.
    num_classes : outputs of ``fc``.
    widths : channels of stage 1, 2, 3 (the stem has ``widths[0]``).
    blocks : basic blocks per stage.

    Input (B, C, H, W) with H, W >= 1; output (B, num_classes) logits. Children:
    ``stem`` (conv, bn, relu), ``stage1..3`` (``nn.Sequential`` of :class:`BasicBlock`),
    ``pool``, ``flatten``, ``fc``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32, 80),
        blocks: Sequence[int] = (2, 2, 2),
    ) -> None:
        widths, blocks = [int(w) for w in widths], [int(b) for b in blocks]
        if (
            in_channels < 1
            or num_classes < 2
            or len(widths) != 3
            or len(blocks) != 3
            or min(widths) < 1
            or min(blocks) < 1
        ):
            raise SparsenetError(
                f"resnet: bad sizes in_channels={in_channels}, num_classes={num_classes}, "
                f"widths={widths}, blocks={blocks}; expected positive sizes, >= 2 classes and "
                "three widths and three block counts"
            )
        super().__init__()
        conv, bn = _conv_bn(in_channels, widths[0], 3, 1)
        self.stem = nn.Sequential(OrderedDict(conv=conv, bn=bn, relu=nn.ReLU()))
        ins = [widths[0], *widths[:-1]]

        def stage(i: int) -> nn.Sequential:
            w = widths[i]
            return nn.Sequential(
                *[BasicBlock(ins[i] if b == 0 else w, w, 2 if b == 0 else 1) for b in range(blocks[i])]
            )

        self.stage1, self.stage2, self.stage3 = stage(0), stage(1), stage(2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(widths[-1], num_classes)
        self.arch: dict[str, Any] = {
            "name": "resnet",
            "kwargs": {
                "in_channels": in_channels,
                "num_classes": num_classes,
                "widths": widths,
                "blocks": blocks,
            },
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, w0, H, W)
        x = self.stage3(self.stage2(self.stage1(x)))  # (B, w2, ⌈H/8⌉, ⌈W/8⌉)
        return self.fc(self.flatten(self.pool(x)))  # (B, classes)
