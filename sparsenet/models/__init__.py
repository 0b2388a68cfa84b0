"""Reference networks by name: LeNet-300-100, LeNet-5, a small ResNet and a small ViT.

Each model records its registry name and constructor arguments in ``model.arch`` so a
checkpoint can rebuild it without being told the architecture. ``lenet.py`` holds the
two ``nn.Sequential`` chains of Deep Compression, ``resnet.py`` and ``vit.py`` the graph
models (residual adds, BatchNorm, attention) sized for 28×28 inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import SparsenetError
from .lenet import LeNet5, LeNet300
from .resnet import BasicBlock, ResNet
from .vit import EncoderBlock, ViT

__all__ = [
    "LeNet300",
    "LeNet5",
    "ResNet",
    "BasicBlock",
    "ViT",
    "EncoderBlock",
    "MODELS",
    "build_model",
    "model_for_dataset",
    "arch_of",
    "count_weights",
]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet300": LeNet300,
    "lenet5": LeNet5,
    "resnet": ResNet,
    "vit": ViT,
}


def build_model(name: str, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model by name; ``seed`` fixes the initial weights."""
    if name not in MODELS:
        raise SparsenetError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    if seed is not None:
        torch.manual_seed(seed)
    try:
        return MODELS[name](**kwargs)
    except TypeError as exc:
        raise SparsenetError(f"model {name!r}: bad arguments {kwargs}: {exc}") from None


def model_for_dataset(
    name: str, input_shape: tuple[int, ...], num_classes: int, seed: int | None = None
) -> nn.Module:
    """Build ``name`` sized for samples of ``input_shape`` ``(C, H, W)`` and ``num_classes``.

    ``vit`` takes the largest patch side in (4, 2) that divides ``H`` into at least 4
    patches a side (4 for 28×28, 2 for 8×8 digits), else 1.
    """
    c, h = input_shape[0], input_shape[-1]
    if name == "lenet300":
        n = 1
        for s in input_shape:
            n *= s
        return build_model(name, seed=seed, in_features=n, num_classes=num_classes)
    if name == "lenet5":
        return build_model(
            name,
            seed=seed,
            in_channels=c,
            input_size=h,
            num_classes=num_classes,
            padding=0 if h >= 16 else 2,
        )
    if name == "resnet":
        return build_model(name, seed=seed, in_channels=c, num_classes=num_classes)
    if name == "vit":
        patch = next((p for p in (4, 2) if h % p == 0 and h // p >= 4), 1)
        return build_model(
            name, seed=seed, in_channels=c, input_size=h, num_classes=num_classes, patch=patch
        )
    return build_model(name, seed=seed)


def arch_of(model: nn.Module) -> dict[str, Any] | None:
    """The ``{"name", "kwargs"}`` record of a registry model, or ``None`` for a foreign model."""
    arch = getattr(model, "arch", None)
    return dict(arch) if isinstance(arch, dict) else None


def count_weights(model: nn.Module) -> int:
    """Number of entries of the compressible tensors (:mod:`sparsenet.layers`; not biases).

    Linear, Conv, ConvTranspose, Embedding and attention weights (a
    :class:`torch.nn.MultiheadAttention`'s input projection and ``out_proj``); normalisation
    layers are not counted.
    """
    from ..layers import compressible_tensors

    return sum(t.value.numel() for t in compressible_tensors(model))
