"""Input and parameter checks of :class:`~.deepsc.DeepSC`, as a mixin.

Images or feature tables in, channels-last maps out; the per-layer configuration from the
constructor arguments (one value for all layers or one per layer); the patch/pooling
geometry walked before anything is learnt; scikit-learn's ``validate_data`` with images
allowed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import validate_data

from ._checks import InvalidInputError, as_tensor, check_int, check_positive
from .linear import CLASSIFIERS
from .patches import patch_grid
from .pooling import FEATURE_NORMS, pooled_grid

__all__ = ["DeepSCChecks", "ENCODE_METHODS"]

ENCODE_METHODS = ("fista", "cd")


def _per_layer(value: Any, n_layers: int, name: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != n_layers:
            raise InvalidInputError(
                f"{name}={value!r}: expected one value per layer ({n_layers}), got {len(value)}"
            )
        return list(value)
    return [value] * n_layers



def _layer_levels(value: Any, layer: int, name: str) -> list[Any]:
    """Levels of ``layer`` from ``value``: levels for all layers, or one sequence per layer."""
    value = list(value or ())
    if not any(isinstance(v, (list, tuple)) for v in value):
        return value
    if not all(isinstance(v, (list, tuple)) for v in value) or layer >= len(value):
        raise InvalidInputError(
            f"{name}={value!r}: expected levels (e.g. (1, 2, 4)) or one sequence of levels "
            f"per layer (e.g. ((1, 2, 4), (1, 2)))"
        )
    return list(value[layer])


class DeepSCChecks:
    """Checks shared by DeepSC's ``fit_features``, ``fit`` and ``transform``."""

    # constructor arguments of DeepSC that the checks read
    n_components: Any
    patch_size: Any
    patch_stride: Any
    alpha: Any
    whiten: Any
    norm_eps: float
    encode_iter: int
    encode_method: str
    encode_tol: float
    batch_size: int
    classifier: str
    pool_size: int
    pool_stride: int
    pyramid: Any
    pyramid_overlap: Any
    feature_norm: str | None

    def _levels(self, gh: int, gw: int, layer: int = 0) -> tuple[list[int], list[int]]:
        """Layer ``layer``'s plain and overlapping pyramid levels that fit its ``gh × gw``
        code grid (finer ones are skipped; at least the 1×1 level).

        ``pyramid`` and ``pyramid_overlap`` are either levels for every layer, e.g. (1, 2, 4),
        or one such sequence per layer, e.g. ((1, 2, 4, 8), (1, 2)).
        """
        g = min(gh, gw)
        levels = [int(lv) for lv in _layer_levels(self.pyramid, layer, "pyramid") if lv <= g]
        overlap = [int(lv) for lv in _layer_levels(self.pyramid_overlap, layer, "pyramid_overlap")
                   if lv == 1 or lv + 1 <= g]
        return (levels or ([] if overlap else [1])), overlap

    def _images(self, X: Any) -> torch.Tensor:
        """``X`` as a channels-last map (N, H, W, C).

        (N, C, H, W) and (N, H, W) are images; a 2-D ``X`` (N, F) is a table of feature
        vectors, taken as 1×1 images with F channels (so ``patch_size=1`` sparse-codes each
        row, which is how scikit-learn's estimator checks exercise DeepSC).
        """
        x = as_tensor(X, "X", (2, 3, 4))
        if x.ndim == 2:
            return x[:, None, None, :]
        return x.unsqueeze(-1) if x.ndim == 3 else x.permute(0, 2, 3, 1)

    def _config(self) -> list[dict[str, Any]]:
        k = self.n_components
        atoms = k if isinstance(k, (list, tuple)) else [k]
        n = len(atoms)
        if n == 0:
            raise InvalidInputError("n_components: expected at least one layer")
        cfg = []
        for i, (k, size, stride, alpha, whiten) in enumerate(
            zip(
                atoms,
                _per_layer(self.patch_size, n, "patch_size"),
                _per_layer(self.patch_stride, n, "patch_stride"),
                _per_layer(self.alpha, n, "alpha"),
                _per_layer(self.whiten, n, "whiten"),
                strict=True,
            )
        ):
            cfg.append(
                dict(
                    n_atoms=check_int(k, f"n_components[{i}]"),
                    size=check_int(size, f"patch_size[{i}]"),
                    stride=check_int(stride, f"patch_stride[{i}]"),
                    alpha=check_positive(alpha, "alpha"),
                    whiten=bool(whiten),
                )
            )
        check_positive(self.norm_eps, "norm_eps")
        check_int(self.encode_iter, "encode_iter")
        if self.encode_method not in ENCODE_METHODS:
            raise InvalidInputError(
                f"encode_method={self.encode_method!r}: expected one of {ENCODE_METHODS}"
            )
        if self.encode_method == "cd":
            check_positive(self.encode_tol, "encode_tol")
        check_int(self.batch_size, "batch_size")
        for i in range(n):  # levels for all layers, or one sequence per layer
            _layer_levels(self.pyramid, i, "pyramid")
            _layer_levels(self.pyramid_overlap, i, "pyramid_overlap")
        if self.feature_norm not in FEATURE_NORMS:
            raise InvalidInputError(
                f"feature_norm={self.feature_norm!r}: expected one of {FEATURE_NORMS}"
            )
        if self.classifier not in CLASSIFIERS:
            raise InvalidInputError(
                f"classifier={self.classifier!r}: expected one of {CLASSIFIERS}"
            )
        return cfg

    def _check_geometry(self, cfg: list[dict[str, Any]], h: int, w: int) -> None:
        """Walk the grids (patches, then pooling between layers) before learning anything,
        so an image too small for the layer sizes fails at once, naming the layer."""
        for i, c in enumerate(cfg):
            if c["size"] > h or c["size"] > w:
                raise InvalidInputError(
                    f"patch_size[{i}]={c['size']}: larger than the {h}×{w} input of layer {i + 1}; "
                    f"expected <= {min(h, w)}"
                )
            h, w = patch_grid(h, w, c["size"], c["stride"])
            if i < len(cfg) - 1:
                h, w = pooled_grid(h, w, self.pool_size, self.pool_stride)

    def _validate(self, X: Any, y: Any = None, reset: bool = True) -> Any:
        """scikit-learn's input checks (sparse, complex, object, empty, 1-D, feature count)
        with images allowed: returns float32 ``X`` (and ``y`` as a 1-D array when given)."""
        kw: dict[str, Any] = dict(
            allow_nd=True,
            dtype=np.float32,
            ensure_min_samples=2 if reset else 1,
            ensure_min_features=2 if reset else 1,
        )
        try:
            if y is None:
                return validate_data(self, X, reset=reset, **kw)
            return validate_data(self, X, y, reset=reset, **kw)
        except ValueError as exc:
            if "got 1D array" not in str(exc):
                raise
            # name the argument, keep scikit-learn's "Reshape your data" advice
            raise InvalidInputError(
                f"X: expected feature vectors (N, F) or images (N, [C,] H, W); {exc}"
            ) from None
