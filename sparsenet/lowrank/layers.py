"""Low-rank layers: a Linear or Conv2d replaced by two thinner ordinary layers (a module swap).

A weight matrix A (m × n) with SVD A = U Σ Vᵀ is approximated at rank r by
A_r = (U_r Σ_r^½)(Σ_r^½ V_rᵀ) = B C with B (m × r), C (r × n): storage m·n → r·(m + n).

* :class:`LowRankLinear` is ``nn.Sequential(Linear(n → r, no bias), Linear(r → m, bias))``
  holding C and B.
* :class:`LowRankConv2d` factorises the conv weight through its (out, in·kh·kw) matrix:
  ``nn.Sequential(Conv2d(in → r, original kernel/stride/padding/dilation, no bias),
  Conv2d(r → out, 1×1, bias))``.

The children are plain ``nn.Linear``/``nn.Conv2d``, so training, pruning masks and weight
sharing treat the factors as ordinary layers. Both classes set ``transform_kind = "lowrank"``
and ``spec()``; :func:`_rebuild` is registered with the checkpoint module so
``save_model``/``load_model`` round-trip factorised models.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from ..checkpoint import register_transform
from ..errors import CheckpointError, SparsenetError

__all__ = [
    "LowRankLinear",
    "LowRankConv2d",
    "LowRankLayer",
    "weight_matrix",
    "singular_values",
    "svd_factors",
    "factorize_layer",
    "is_lowrank",
]


def weight_matrix(layer: nn.Linear | nn.Conv2d) -> torch.Tensor:
    """The layer's effective weight as a detached matrix (m, n).

    Linear: (out_features, in_features). Conv2d: (out_channels, in_channels·kh·kw).
    """
    w = layer.weight.detach()
    return w.reshape(w.shape[0], -1)


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """Singular values of ``matrix`` (m, n) in float64, descending, shape (min(m, n),)."""
    return torch.linalg.svdvals(matrix.detach().to(torch.float64).cpu())


def svd_factors(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced rank-``rank`` factors of ``matrix`` (m, n) from its SVD, computed in float64.

    Returns
    -------
    (left, right): left = U_r Σ_r^½ (m, r), right = Σ_r^½ V_rᵀ (r, n), float64 on CPU, with
    ``left @ right`` the best rank-r approximation (Eckart–Young).
    """
    a = matrix.detach().to(torch.float64).cpu()  # (m, n)
    u, s, vh = torch.linalg.svd(a, full_matrices=False)  # (m, k), (k,), (k, n)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


class LowRankLinear(nn.Sequential):
    """``Linear(n → r, no bias)`` then ``Linear(r → m, bias)``: y = B (C x) + b.

    Parameters
    ----------
    in_features, out_features : n and m of the original layer.
    rank : r, the inner width.
    bias : whether the second factor carries the original bias.
    """

    transform_kind = "lowrank"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        _check_rank(rank, min(in_features, out_features), f"{in_features}→{out_features} linear")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        super().__init__(
            nn.Linear(in_features, rank, bias=False, **kw),  # C = Σ_r^½ V_rᵀ (r, n)
            nn.Linear(rank, out_features, bias=bias, **kw),  # B = U_r Σ_r^½ (m, r)
        )

    @property
    def first(self) -> nn.Linear:
        """The n → r factor C (weight (r, n), no bias)."""
        return cast(nn.Linear, self._modules["0"])

    @property
    def second(self) -> nn.Linear:
        """The r → m factor B (weight (m, r), original bias)."""
        return cast(nn.Linear, self._modules["1"])

    @property
    def in_features(self) -> int:
        return int(self.first.in_features)

    @property
    def out_features(self) -> int:
        return int(self.second.out_features)

    @property
    def rank(self) -> int:
        return int(self.first.out_features)

    def dense_weight(self) -> torch.Tensor:
        """The product B C (m, n) the two factors implement (effective weights, detached)."""
        return (self.second.weight @ self.first.weight).detach()

    def spec(self) -> dict[str, Any]:
        return {
            "type": "linear",
            "in_features": self.in_features,
            "out_features": self.out_features,
            "rank": self.rank,
            "bias": self.second.bias is not None,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> LowRankLinear:
        return cls(spec["in_features"], spec["out_features"], spec["rank"], bias=spec["bias"])

    @classmethod
    def from_linear(cls, layer: nn.Linear, rank: int) -> LowRankLinear:
        """Factorise ``layer`` at ``rank`` by truncated SVD; the bias is copied unchanged."""
        w = layer.weight
        new = cls(
            layer.in_features,
            layer.out_features,
            rank,
            bias=layer.bias is not None,
            device=w.device,
            dtype=w.dtype,
        )
        left, right = svd_factors(weight_matrix(layer), rank)
        with torch.no_grad():
            new.first.weight.copy_(right)
            new.second.weight.copy_(left)
            if layer.bias is not None and new.second.bias is not None:
                new.second.bias.copy_(layer.bias.detach())
        return new


class LowRankConv2d(nn.Sequential):
    """``Conv2d(in → r, k×k, original geometry, no bias)`` then ``Conv2d(r → out, 1×1, bias)``.

    Only ``groups=1`` convolutions are supported.
    """

    transform_kind = "lowrank"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        rank: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        kh, kw_ = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        _check_rank(
            rank, min(out_channels, in_channels * kh * kw_), f"{in_channels}→{out_channels} conv"
        )
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        super().__init__(
            nn.Conv2d(
                in_channels,
                rank,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                bias=False,
                padding_mode=padding_mode,  # type: ignore[arg-type]
                **kw,
            ),  # C reshaped (r, in, kh, kw)
            nn.Conv2d(rank, out_channels, 1, bias=bias, **kw),  # B reshaped (out, r, 1, 1)
        )

    @property
    def first(self) -> nn.Conv2d:
        """The k×k conv with r filters (weight (r, in, kh, kw), no bias)."""
        return cast(nn.Conv2d, self._modules["0"])

    @property
    def second(self) -> nn.Conv2d:
        """The 1×1 conv r → out (weight (out, r, 1, 1), original bias)."""
        return cast(nn.Conv2d, self._modules["1"])

    @property
    def in_channels(self) -> int:
        return int(self.first.in_channels)

    @property
    def out_channels(self) -> int:
        return int(self.second.out_channels)

    @property
    def rank(self) -> int:
        return int(self.first.out_channels)

    def dense_weight(self) -> torch.Tensor:
        """The equivalent single conv weight (out, in, kh, kw) (effective weights, detached)."""
        first = self.first.weight  # (r, in, kh, kw)
        b = self.second.weight.reshape(self.out_channels, self.rank)  # (out, r)
        return (
            (b @ first.reshape(self.rank, -1)).reshape(self.out_channels, *first.shape[1:]).detach()
        )

    def spec(self) -> dict[str, Any]:
        c = self.first
        return {
            "type": "conv2d",
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "rank": self.rank,
            "kernel_size": list(c.kernel_size),
            "stride": list(c.stride),
            "padding": c.padding if isinstance(c.padding, str) else list(c.padding),
            "dilation": list(c.dilation),
            "padding_mode": c.padding_mode,
            "bias": self.second.bias is not None,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> LowRankConv2d:
        pad = spec["padding"]
        return cls(
            spec["in_channels"],
            spec["out_channels"],
            spec["rank"],
            tuple(spec["kernel_size"]),  # type: ignore[arg-type]
            stride=tuple(spec["stride"]),  # type: ignore[arg-type]
            padding=pad if isinstance(pad, str) else tuple(pad),  # type: ignore[arg-type]
            dilation=tuple(spec["dilation"]),  # type: ignore[arg-type]
            bias=spec["bias"],
            padding_mode=spec["padding_mode"],
        )

    @classmethod
    def from_conv(cls, layer: nn.Conv2d, rank: int) -> LowRankConv2d:
        """Factorise ``layer`` at ``rank`` through its (out, in·kh·kw) matrix; bias copied."""
        if layer.groups != 1:
            raise SparsenetError(
                f"cannot factorise a Conv2d with groups={layer.groups}; only groups=1 is supported"
            )
        w = layer.weight
        new = cls(
            layer.in_channels,
            layer.out_channels,
            rank,
            layer.kernel_size,  # type: ignore[arg-type]
            stride=layer.stride,  # type: ignore[arg-type]
            padding=layer.padding,  # type: ignore[arg-type]
            dilation=layer.dilation,  # type: ignore[arg-type]
            bias=layer.bias is not None,
            padding_mode=layer.padding_mode,
            device=w.device,
            dtype=w.dtype,
        )
        left, right = svd_factors(weight_matrix(layer), rank)  # (out, r), (r, in·kh·kw)
        with torch.no_grad():
            new.first.weight.copy_(right.reshape(new.first.weight.shape))
            new.second.weight.copy_(left.reshape(new.second.weight.shape))
            if layer.bias is not None and new.second.bias is not None:
                new.second.bias.copy_(layer.bias.detach())
        return new


LowRankLayer = LowRankLinear | LowRankConv2d


def is_lowrank(module: nn.Module) -> bool:
    """True for a :class:`LowRankLinear` or :class:`LowRankConv2d`."""
    return isinstance(module, (LowRankLinear, LowRankConv2d))


def factorize_layer(layer: nn.Module, rank: int) -> LowRankLinear | LowRankConv2d:
    """The low-rank replacement of one ``nn.Linear`` or ``nn.Conv2d`` (groups=1) at ``rank``."""
    if isinstance(layer, nn.Linear):
        return LowRankLinear.from_linear(layer, rank)
    if isinstance(layer, nn.Conv2d):
        return LowRankConv2d.from_conv(layer, rank)
    raise SparsenetError(
        f"cannot factorise a {type(layer).__name__}; expected nn.Linear or nn.Conv2d"
    )


def _check_rank(rank: int, max_rank: int, what: str) -> None:
    if not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= max_rank:
        raise SparsenetError(
            f"bad rank {rank!r} for a {what}; expected an integer in 1..{max_rank}"
        )


@register_transform("lowrank")
def _rebuild(model: nn.Module, entry: dict[str, Any]) -> None:
    """Swap the dense layer named in ``entry`` for an (unfilled) low-rank layer of its spec."""
    args = entry["args"]
    builders = {"linear": LowRankLinear.from_spec, "conv2d": LowRankConv2d.from_spec}
    if args.get("type") not in builders:
        raise CheckpointError(
            f"lowrank transform on {entry['module']!r}: unknown layer type {args.get('type')!r}; "
            f"expected one of {sorted(builders)}"
        )
    parent_name, _, attr = entry["module"].rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if not hasattr(parent, attr):
        raise CheckpointError(f"lowrank transform: the model has no layer {entry['module']!r}")
    old = getattr(parent, attr)
    new: nn.Module = builders[args["type"]](args)
    p = next(old.parameters(), None)
    if p is not None:
        new.to(device=p.device, dtype=p.dtype)
    setattr(parent, attr, new)
