"""LeNet-300-100 and the Caffe LeNet-5 of Deep Compression.

Both are ``nn.Sequential`` with named children (``model.fc1``...), so layer-walking code
(OBD's second-order back-propagation, activation replacement) sees a plain chain.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import nn

from ..errors import SparsenetError

__all__ = ["LeNet300", "LeNet5"]


class LeNet300(nn.Sequential):
    """LeNet-300-100: flatten → fc1 (in→300) → ReLU → fc2 (300→100) → ReLU → fc3 (100→classes).

    266,200 weights for 28×28 inputs and 10 classes.
    """

    def __init__(
        self, in_features: int = 784, hidden: tuple[int, ...] = (300, 100), num_classes: int = 10
    ):
        if in_features < 1 or num_classes < 2 or any(h < 1 for h in hidden):
            raise SparsenetError(
                f"lenet300: bad sizes in_features={in_features}, hidden={hidden}, "
                f"num_classes={num_classes}; expected positive sizes and >= 2 classes"
            )
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        sizes = [in_features, *hidden]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
            layers[f"fc{i}"] = nn.Linear(a, b)
            layers[f"relu{i}"] = nn.ReLU()
        layers[f"fc{len(sizes)}"] = nn.Linear(sizes[-1], num_classes)
        super().__init__(layers)
        self.arch: dict[str, Any] = {
            "name": "lenet300",
            "kwargs": {
                "in_features": in_features,
                "hidden": list(hidden),
                "num_classes": num_classes,
            },
        }


class LeNet5(nn.Sequential):
    """Caffe's LeNet-5 as used by Deep Compression.

    conv1 (5×5, 20) → max-pool 2 → conv2 (5×5, 50) → max-pool 2 → fc1 (→500) → ReLU → fc2.
    Like Caffe's ``lenet_train_test.prototxt`` there is no non-linearity after the convolutions.
    430,500 weights for 28×28 inputs and 10 classes.
    """

    def __init__(
        self, in_channels: int = 1, input_size: int = 28, num_classes: int = 10, padding: int = 0
    ):
        side = input_size
        for _ in range(2):
            side = side + 2 * padding - 4  # 5×5 conv
            if side < 2:
                break
            side //= 2  # 2×2 max-pool
        if side < 1 or in_channels < 1 or num_classes < 2:
            raise SparsenetError(
                f"lenet5: input_size={input_size} with padding={padding} is too small for two "
                f"5×5 conv + 2×2 pool stages; expected input_size >= 16 or more padding"
            )
        super().__init__(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, 20, 5, padding=padding),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(20, 50, 5, padding=padding),
                pool2=nn.MaxPool2d(2),
                flatten=nn.Flatten(),
                fc1=nn.Linear(50 * side * side, 500),
                relu1=nn.ReLU(),
                fc2=nn.Linear(500, num_classes),
            )
        )
        self.arch = {
            "name": "lenet5",
            "kwargs": {
                "in_channels": in_channels,
                "input_size": input_size,
                "num_classes": num_classes,
                "padding": padding,
            },
        }
