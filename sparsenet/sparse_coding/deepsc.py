"""Deep Sparse Coding (He et al., 2014) as a scikit-learn-style classifier.

Each layer ``l`` maps an input map ``(N, h, w, c)`` (the images, then the previous layer's
reduced pooled codes) through::

    patches (size, stride) → per-patch normalisation → [ZCA] → sparse codes Y_l (N, gh, gw, K_l)
      ├── spatial-pyramid max pooling (1×1, 2×2, 4×4) → this layer's part of the features
      └── local p×p max pooling → Z_l (N, gh', gw', K_l) → [DrLIM: Z_l Wᵀ] → input of layer l+1

The features of all layers are concatenated, standardised and fed to a linear classifier
(logistic regression or a linear SVM).

Encoding and pooling of a layer run as one compiled call per chunk of images
(:meth:`SCLayer.encode_pool`, :mod:`.layer_kernel`): the code maps Y_l are never held.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ..distributed import map_rows
from ..progress import log, progress
from ._checks import InvalidInputError, check_int, check_positive
from ._renamed import RenamedParamsMixin, apply_renamed, param_defaults
from .deepsc_checks import DeepSCChecks
from .drlim import DrLIM
from .linear import fit_in_place, make_classifier
from .patches import ZCAWhitener, extract_patches, normalize_patches
from .persist import PersistMixin, persistable
from .pooling import normalize_features
from .sclayer import SCLayer, learn_dictionary
from .threads import limit_threads

__all__ = ["DeepSC", "SCLayer", "make_classifier"]


@persistable
class DeepSC(
    DeepSCChecks, RenamedParamsMixin, PersistMixin, ClassifierMixin, TransformerMixin,
    BaseEstimator,
):
    """Deep Sparse Coding features and a linear classifier.

    Parameters
    ----------
    n_components : atoms per layer; its length is the number of layers ``L`` (was
        ``n_atoms``, still accepted with a DeprecationWarning until the next release)
    patch_size, patch_stride : per layer (or one value for all)
    alpha : lasso penalty per layer, on normalised (and whitened) patches
    whiten : ZCA-whiten each layer's patches (per layer or one value)
    norm_eps : patch-normalisation regulariser, relative to the mean patch variance
    pool_size, pool_stride : local max pooling between layers (p × p, every stride cells)
    drlim : reduce the pooled codes with DrLIM before the next layer
    drlim_components : DrLIM output dimension per layer (layers 1..L−1); before the rename
        this was ``n_components``, so an old-style call (with ``n_atoms``) that passes an
        integer ``n_components`` has it moved here, with a DeprecationWarning
    drlim_iter : Adam steps of each DrLIM fit
    pyramid : spatial-pyramid levels pooled from every layer's codes, or one sequence of
        levels per layer (levels finer than a layer's grid are skipped for that layer)
    pyramid_overlap : extra pyramid levels of half-overlapping cells (``l × l`` cells of
        2/(l+1) of the grid, :func:`.pooling.pyramid_cells`), after ``pyramid``; () for none
    polarity : pool positive and negative parts of the codes separately (doubles features)
    feature_norm : per image and layer, normalise the pooled features before the classifier:
        None, ``"sqrt"`` (signed square root), ``"l2"`` or ``"sqrt+l2"``
        (:func:`.pooling.normalize_features`)
    classifier : ``"logreg"`` (scikit-learn's multinomial ``LogisticRegression``, lbfgs, on
        float32 features), ``"softmax"`` (:class:`SoftmaxRegression`, float32 L-BFGS in
        torch, the classifier before) or ``"svc"`` (LinearSVC); see :func:`make_classifier`
    C : inverse regularisation of the classifier
    encode_iter : FISTA iterations per encoding (``"cd"``: at most this many sweeps)
    encode_method : ``"fista"`` (the encoder the results were measured with: ``encode_iter``
        FISTA steps, an approximate lasso) or ``"cd"`` (the exact lasso by coordinate
        descent, to a duality gap ≤ ``encode_tol · ||x||²``); both run in
        :mod:`.layer_kernel`
    encode_tol : duality-gap tolerance of ``encode_method="cd"``
    dict_images : images used to learn dictionaries, whiteners and DrLIM (a random subset)
    dict_patches : patches per layer for dictionary learning
    dict_epochs : passes of online dictionary learning over those patches
    dict_tol : duality-gap tolerance (relative to ||x||²) of the codes while learning
    batch_size : images per chunk in :meth:`transform`
    random_state : seed
    verbose : progress bars and timings
    n_jobs : threads for numba, torch and BLAS during ``fit``/``transform`` (None: leave
        the pools as they are; -1: all cores), set by :func:`.threads.limit_threads`

    Attributes
    ----------
    layers_ : list of SCLayer
    classifier_ : fitted sklearn Pipeline (StandardScaler, classifier)
    classes_ : ndarray of labels
    timings_ : dict of seconds spent in dictionary learning, feature extraction, classifier
    n_features_out_ : feature dimension fed to the classifier
    layer_features_ : list of int, how many of those features each layer contributes (in order)
    input_shape_ : (H, W, C) of the fitted images (a 2-D X of F features: (1, 1, F))
    n_features_in_ : ``X.shape[1]`` at fit, checked by scikit-learn's ``validate_data``
    """

    _renamed_params: ClassVar[dict[str, str]] = {"n_atoms": "n_components"}

    def __init__(
        self,
        n_components: Sequence[int] = (64, 128),
        patch_size: int | Sequence[int] = (5, 2),
        patch_stride: int | Sequence[int] = (1, 1),
        alpha: float | Sequence[float] = 0.5,
        whiten: bool | Sequence[bool] = True,
        norm_eps: float = 0.1,
        pool_size: int = 4,
        pool_stride: int = 2,
        drlim: bool = True,
        drlim_components: int = 64,
        drlim_iter: int = 150,
        pyramid: Sequence[int] | Sequence[Sequence[int]] = (1, 2, 4),
        pyramid_overlap: Sequence[int] | Sequence[Sequence[int]] = (),
        polarity: bool = True,
        feature_norm: str | None = None,
        classifier: str = "logreg",
        C: float = 0.01,
        encode_iter: int = 5,
        encode_method: str = "fista",
        encode_tol: float = 1e-4,
        dict_images: int = 3000,
        dict_patches: int = 30000,
        dict_epochs: int = 1,
        dict_tol: float = 0.1,
        batch_size: int = 500,
        random_state: int = 0,
        verbose: bool = False,
        n_jobs: int | None = None,
        **deprecated: Any,
    ) -> None:
        self.n_components = n_components
        self.patch_size = patch_size
        self.patch_stride = patch_stride
        self.alpha = alpha
        self.whiten = whiten
        self.norm_eps = norm_eps
        self.pool_size = pool_size
        self.pool_stride = pool_stride
        self.drlim = drlim
        self.drlim_components = drlim_components
        self.drlim_iter = drlim_iter
        self.pyramid = pyramid
        self.pyramid_overlap = pyramid_overlap
        self.polarity = polarity
        self.feature_norm = feature_norm
        self.classifier = classifier
        self.C = C
        self.encode_iter = encode_iter
        self.encode_method = encode_method
        self.encode_tol = encode_tol
        self.dict_images = dict_images
        self.dict_patches = dict_patches
        self.dict_epochs = dict_epochs
        self.dict_tol = dict_tol
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs
        if deprecated:
            apply_renamed(self, deprecated)

    def _map_renamed(self, given: dict[str, Any]) -> dict[str, Any]:
        """``n_atoms`` → ``n_components``; in such an old-style call (or file) an integer
        ``n_components`` is the old DrLIM dimension and moves to ``drlim_components``."""
        out = {}
        if "n_atoms" in given:
            old_drlim = getattr(self, "n_components", None)
            if isinstance(old_drlim, (int, np.integer)) and not isinstance(old_drlim, bool):
                warnings.warn(
                    "DeepSC: with the deprecated 'n_atoms', 'n_components' is read as the DrLIM "
                    "dimension, now 'drlim_components'",
                    DeprecationWarning,
                    stacklevel=4,
                )
                out["drlim_components"] = int(old_drlim)
                self.n_components = param_defaults(type(self))["n_components"]
            out["n_components"] = given["n_atoms"]
        return out

    # ----------------------------------------------------------------- fitting
    def fit_features(self, X: Any) -> DeepSC:
        """Learn every layer (whitener, dictionary, DrLIM) on a random subset of ``X``.

        ``X`` : images, shape (N, C, H, W) or (N, H, W), or feature vectors (N, F).
        """
        with limit_threads(self.n_jobs):
            return self._fit_features(X)

    def _fit_features(self, X: Any) -> DeepSC:
        cfg = self._config()
        x = self._images(self._validate(X))
        self._check_geometry(cfg, x.shape[1], x.shape[2])
        self.input_shape_ = tuple(x.shape[1:])  # (H, W, C)
        gen = torch.Generator().manual_seed(int(self.random_state))
        sub = torch.randperm(len(x), generator=gen)[: check_int(self.dict_images, "dict_images")]
        maps = x[sub]  # (n, h, w, c)
        self.layers_: list[SCLayer] = []
        t0 = time.perf_counter()
        for i, c in enumerate(cfg):
            last = i == len(cfg) - 1
            raw = extract_patches(maps.permute(0, 3, 1, 2), c["size"], c["stride"])
            raw = raw.reshape(-1, raw.shape[-1])
            pick = torch.randperm(len(raw), generator=gen)[: self.dict_patches]
            sample = raw[pick]  # (m, P)
            centred = sample - sample.mean(1, keepdim=True)
            eps = float(self.norm_eps) * float(centred.pow(2).mean())
            sample = normalize_patches(sample, eps)
            whitener = ZCAWhitener().fit(sample) if c["whiten"] else None
            if whitener is not None:
                sample = whitener.transform(sample)
            log(
                f"layer {i + 1}: {c['n_atoms']} atoms on {len(sample)} patches of "
                f"{sample.shape[1]} values",
                quiet=not self.verbose,
            )
            atoms = learn_dictionary(
                sample,
                c["n_atoms"],
                c["alpha"],
                self.dict_epochs,
                self.random_state + i,
                check_positive(self.dict_tol, "dict_tol"),
            )
            layer = SCLayer(c["size"], c["stride"], eps, whitener, atoms, c["alpha"])
            self.layers_.append(layer)
            if last:
                break
            parts = [  # under torchrun each rank pools its shard of each chunk's images
                map_rows(lambda rows: self._pooled(layer, rows), maps[j : j + self.batch_size])  # noqa: B023
                for j in range(0, len(maps), self.batch_size)
            ]
            maps = torch.cat(parts)  # (n, gh', gw', K')
            if self.drlim:
                layer.reducer = DrLIM(
                    n_components=min(self.drlim_components, maps.shape[-1]),
                    n_iter=self.drlim_iter,
                    random_state=self.random_state + i,
                ).fit(maps)
                maps = layer.reducer.transform(maps)
        self.timings_ = {"dictionary_s": time.perf_counter() - t0}
        return self

    def _pooled(self, layer: SCLayer, maps: torch.Tensor) -> torch.Tensor:
        """The local max-pooled codes (B, gh', gw', K') of ``layer`` on ``maps``."""
        return self._encode_pool(layer, maps, None, True)[1]  # type: ignore[return-value]

    def _encode_pool(
        self, layer: SCLayer, maps: torch.Tensor, levels: Sequence[int] | None, pool: bool,
        overlap: Sequence[int] = (),
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``layer.encode_pool`` with this model's encoder, polarity and local pooling."""
        return layer.encode_pool(
            maps,
            method=self.encode_method,
            max_iter=self.encode_iter,
            tol=float(self.encode_tol) if self.encode_method == "cd" else 0.0,
            polarity=self.polarity,
            levels=levels,
            overlap=overlap,
            pool=(self.pool_size, self.pool_stride) if pool else None,
        )

    def fit(self, X: Any, y: Any) -> DeepSC:
        """Learn the layers on a subset of ``X``, then the classifier on all of ``X``'s features."""
        if y is None:
            raise InvalidInputError(
                "y: DeepSC requires y to be passed, but the target y is None; expected labels"
            )
        try:
            X, labels = self._validate(X, y)
        except ValueError as exc:
            if "inconsistent numbers of samples" not in str(exc):
                raise
            raise InvalidInputError(f"y: {exc}; expected one label per sample of X") from None
        check_classification_targets(labels)
        with limit_threads(self.n_jobs):
            self._fit_features(X)
            feats = self._transform(X)
            t0 = time.perf_counter()
            self.classifier_ = fit_in_place(self._make_classifier(), feats, labels)
        self.timings_["classifier_s"] = time.perf_counter() - t0
        self.classes_ = self.classifier_.classes_
        return self

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = ["float32"]  # features are float32
        return tags

    def _make_classifier(self) -> Pipeline:
        return make_classifier(self.classifier, self.C, self.random_state)

    # ----------------------------------------------------------------- inference
    def transform(self, X: Any) -> np.ndarray:
        """DeepSC features of images ``X`` (N, C, H, W): (N, n_features_out_), float32.

        Streams over chunks of ``batch_size`` images (one compiled call per layer and
        chunk, :mod:`.layer_kernel`), writing each chunk's features into the output, so
        memory is the output plus one chunk's maps.
        """
        with limit_threads(self.n_jobs):
            return self._transform(X)

    def _transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "layers_")
        x = self._images(self._validate(X, reset=False))
        if tuple(x.shape[1:]) != self.input_shape_:
            raise InvalidInputError(
                f"X: images of shape (H, W, C) = {tuple(x.shape[1:])}, expected "
                f"{self.input_shape_} as in fit"
            )
        t0, c0 = time.perf_counter(), time.process_time()
        per_layer = [0.0] * len(self.layers_)
        out: np.ndarray | None = None
        bs = check_int(self.batch_size, "batch_size")
        starts = range(0, len(x), bs)
        for j in progress(starts, "DeepSC features", total=len(starts), quiet=not self.verbose):
            # (b, F); under torchrun each rank computes its shard of the chunk's images
            chunk = map_rows(lambda rows: self._features(rows, per_layer), x[j : j + bs])
            if out is None:
                out = np.empty((len(x), chunk.shape[1]), dtype=np.float32)
            out[j : j + len(chunk)] = chunk.numpy()
        assert out is not None  # X has at least one sample (validated)
        self.n_features_out_ = out.shape[1]
        t = getattr(self, "timings_", {})
        t["transform_s"] = t.get("transform_s", 0.0) + time.perf_counter() - t0
        t["transform_cpu_s"] = t.get("transform_cpu_s", 0.0) + time.process_time() - c0
        old = t.get("transform_layer_s", [0.0] * len(per_layer))
        t["transform_layer_s"] = [a + b for a, b in zip(old, per_layer, strict=True)]
        self.timings_ = t
        return out

    def _features(self, maps: torch.Tensor, seconds: list[float]) -> torch.Tensor:
        """(B, H, W, C) images → (B, F) pyramid features of every layer, concatenated.

        Adds each layer's wall time to ``seconds[i]``.
        """
        parts = []
        for i in range(len(self.layers_)):
            t0 = time.perf_counter()
            feats, next_maps = self.layer_step(i, maps)
            parts.append(feats)
            if next_maps is not None:
                maps = next_maps
            seconds[i] += time.perf_counter() - t0
        self.layer_features_ = [part.shape[1] for part in parts]
        return torch.cat(parts, dim=1)

    def layer_step(self, i: int, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run fitted layer ``i`` on its input map (B, h, w, c).

        Returns
        -------
        features : Tensor (B, F_i), the pyramid-pooled codes of this layer (``feature_norm``-ed)
        next_maps : Tensor (B, h', w', c'), the locally pooled (and DrLIM-reduced) codes that
            layer ``i + 1`` takes; None for the last layer (``layers_[i].codes`` computes it)
        """
        layer = self.layers_[i]
        last = i == len(self.layers_) - 1
        gh = (maps.shape[1] - layer.size) // layer.stride + 1
        gw = (maps.shape[2] - layer.size) // layer.stride + 1
        levels, overlap = self._levels(gh, gw, i)
        feats, pooled = self._encode_pool(layer, maps, levels, not last, overlap)
        assert feats is not None
        feats = normalize_features(feats, self.feature_norm)
        if pooled is not None and layer.reducer is not None:
            pooled = layer.reducer.transform(pooled)  # (B, gh', gw', d)
        return feats, pooled

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels for images ``X``."""
        check_is_fitted(self, "classifier_")
        return self.classifier_.predict(self.transform(X))

    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores (n, n_classes); for two classes, (n,) scores of ``classes_[1]``."""
        check_is_fitted(self, "classifier_")
        scores = self.classifier_.decision_function(self.transform(X))
        if scores.ndim == 2 and scores.shape[1] == 2:  # scikit-learn's binary convention
            return scores[:, 1] - scores[:, 0]
        return scores

    def first_layer_atoms(self) -> np.ndarray:
        """First-layer atoms as images (K, C, s, s), un-whitened for display."""
        from .deepsc_report import layer_atoms

        return layer_atoms(self, 0)
