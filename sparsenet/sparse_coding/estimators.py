"""scikit-learn estimators over the torch solvers: ``SparseCoder`` and ``DictionaryLearner``.

Both follow scikit-learn's contract (``__init__`` stores arguments, ``fit`` returns self,
fitted state ends in ``_``, ``get_params``/``set_params`` from ``BaseEstimator``) and pass
``sklearn.utils.estimator_checks.check_estimator`` except for the checks listed in
``tests/sparse_coding/test_estimators.py`` with the reason for each. numpy input gives numpy
output; torch tensors are accepted too and give tensors back.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ..distributed import map_rows
from ._renamed import RenamedParamsMixin, apply_renamed
from ._validation import InvalidInputError, as_tensor_2d, check_alpha, check_positive_int
from .dictionary import OnlineState, init_dictionary, online_step
from .encode import METHODS, sparse_encode
from .persist import PersistMixin, persistable

__all__ = ["SparseCoder", "DictionaryLearner"]


def _check_method(method: Any) -> str:
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {METHODS}, got {method!r}")
    return str(method)


@persistable
class SparseCoder(RenamedParamsMixin, PersistMixin, TransformerMixin, BaseEstimator):
    """Sparse codes over a fixed dictionary: ``½||x − cD||² + α||c||₁`` per sample.

    Parameters
    ----------
    dictionary : array (n_atoms, n_features)
        Atoms as rows.
    alpha : float
        Lasso weight (for ``method="omp"``: squared-residual tolerance).
    method : {"fista", "cd", "omp"}
    max_iter, tol, n_nonzero_coefs
        As in :func:`sparsenet.sparse_coding.sparse_encode`.
    positive_code : bool
        Non-negative codes (``sparse_encode``'s ``positive``; scikit-learn's name). The old
        name ``positive`` is accepted with a DeprecationWarning until the next release.

    Attributes
    ----------
    n_features_in_ : int
        Set by ``fit`` (the coder is stateless: ``transform`` works without ``fit``).
    """

    _renamed_params: ClassVar[dict[str, str]] = {"positive": "positive_code"}

    def __init__(
        self,
        dictionary: Any = None,
        *,
        alpha: float = 1.0,
        method: str = "fista",
        max_iter: int = 1000,
        tol: float = 1e-6,
        positive_code: bool = False,
        n_nonzero_coefs: int | None = None,
        **deprecated: Any,
    ) -> None:
        self.dictionary = dictionary
        self.alpha = alpha
        self.method = method
        self.max_iter = max_iter
        self.tol = tol
        self.positive_code = positive_code
        self.n_nonzero_coefs = n_nonzero_coefs
        if deprecated:
            apply_renamed(self, deprecated)

    def _dictionary(self) -> np.ndarray:
        if self.dictionary is None:
            raise InvalidInputError("dictionary must be an array (n_atoms, n_features), got None")
        return as_tensor_2d(self.dictionary, "dictionary").cpu().numpy()

    def fit(self, X: Any, y: Any = None) -> SparseCoder:
        """Check X against the dictionary; the coder has nothing to learn. Returns self."""
        if not isinstance(X, torch.Tensor):
            X = validate_data(self, X, dtype=[np.float64, np.float32])
        self.n_features_in_ = int(X.shape[1])
        d = self._dictionary()
        if d.shape[1] != X.shape[1]:
            raise InvalidInputError(f"X has {X.shape[1]} features but dictionary has {d.shape[1]}")
        return self

    def transform(self, X: Any) -> Any:
        """Codes, shape (n_samples, n_atoms), same kind and float dtype as X."""
        d = self._dictionary()
        if not isinstance(X, torch.Tensor):
            X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return sparse_encode(
            X,
            d,
            self.alpha,
            _check_method(self.method),
            max_iter=self.max_iter,
            tol=self.tol,
            positive=self.positive_code,
            n_nonzero_coefs=self.n_nonzero_coefs,
        )

    @property
    def n_components_(self) -> int:
        return int(self._dictionary().shape[0])

    @property
    def _n_features_out(self) -> int:
        return self.n_components_

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


@persistable
class DictionaryLearner(RenamedParamsMixin, PersistMixin, TransformerMixin, BaseEstimator):
    """Online dictionary learning (Mairal et al. 2009) with torch sparse coding.

    Parameters
    ----------
    n_components : int
        Dictionary size (scikit-learn's name; the old ``n_atoms`` is accepted with a
        DeprecationWarning until the next release).
    alpha : float
        Lasso weight used while learning.
    batch_size : int
        Mini-batch size η (scikit-learn's default, 256). On CPU the coding step (numba
        coordinate descent, one sample at a time) costs the same per sample at any batch
        size, and smaller batches mean more dictionary updates per pass; the batched torch
        solvers (GPU, ``method="fista"``) are cheaper per sample in larger batches.
    max_iter : int
        Passes (epochs) over the data in ``fit``.
    method : {"cd", "fista"}
        Lasso solver for the codes (also used by ``transform``).
    tol : float
        Duality-gap tolerance of the coding step (relative to ``||x||²``); codes used to
        update the statistics need not be exact (1e-3 and 1e-4 give the same dictionaries
        to 1e-5 in objective on 8×8 patches).
    transform_alpha : float, optional
        Lasso weight for ``transform`` (default: ``alpha``).
    positive_code : bool
        Non-negative codes.
    dict_init : array (n_components, n_features), optional
        Starting dictionary (rows are rescaled to norm ≤ 1); default: random samples.
    shuffle : bool
        Shuffle the samples before each pass.
    resample_dead : bool
        Replace atoms that stopped being used with badly-reconstructed samples.
    random_state : int, RandomState or None

    Attributes
    ----------
    components_ : ndarray (n_components, n_features)
        The dictionary, atoms as rows, each of norm ≤ 1.
    n_features_in_ : int
    n_steps_ : int
        Mini-batches processed.
    n_iter_ : int
        Passes over the data in the last ``fit``.
    n_resampled_ : int
        Dead atoms replaced so far.
    """

    _renamed_params: ClassVar[dict[str, str]] = {"n_atoms": "n_components"}

    def __init__(
        self,
        n_components: int = 64,
        *,
        alpha: float = 1.0,
        batch_size: int = 256,
        max_iter: int = 10,
        method: str = "cd",
        tol: float = 1e-3,
        transform_alpha: float | None = None,
        positive_code: bool = False,
        dict_init: Any = None,
        shuffle: bool = True,
        resample_dead: bool = True,
        random_state: Any = None,
        **deprecated: Any,
    ) -> None:
        self.n_components = n_components
        self.alpha = alpha
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.method = method
        self.tol = tol
        self.transform_alpha = transform_alpha
        self.positive_code = positive_code
        self.dict_init = dict_init
        self.shuffle = shuffle
        self.resample_dead = resample_dead
        self.random_state = random_state
        if deprecated:
            apply_renamed(self, deprecated)

    # ---------------------------------------------------------------- helpers
    def _validate(self, X: Any, reset: bool) -> torch.Tensor:
        if isinstance(X, torch.Tensor):
            x = as_tensor_2d(X, "X")
            if reset:
                self.n_features_in_ = int(x.shape[1])
            elif x.shape[1] != self.n_features_in_:
                raise InvalidInputError(
                    f"X has {x.shape[1]} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input"
                )
            return x
        arr = validate_data(self, X, dtype=[np.float64, np.float32], reset=reset)
        return torch.from_numpy(np.ascontiguousarray(arr))

    def _start(self, x: torch.Tensor, rng: np.random.RandomState) -> OnlineState:
        n_atoms = check_positive_int(self.n_components, "n_components")
        if self.dict_init is not None:
            D = as_tensor_2d(self.dict_init, "dict_init", dtype=x.dtype, device=x.device)
            if tuple(D.shape) != (n_atoms, x.shape[1]):
                raise InvalidInputError(
                    f"dict_init must have shape (n_components, n_features)=({n_atoms}, "
                    f"{x.shape[1]}), got {tuple(D.shape)}"
                )
            D = D / D.norm(dim=1, keepdim=True).clamp(min=1.0)
        else:
            gen = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
            D = init_dictionary(x.cpu(), n_atoms, gen).to(x.device)
        return OnlineState.start(D)

    def _check_params(self) -> str:
        check_alpha(self.alpha)
        if self.transform_alpha is not None:
            check_alpha(self.transform_alpha, "transform_alpha")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.max_iter, "max_iter")
        method = _check_method(self.method)
        if method == "omp":
            raise InvalidInputError("method must be 'cd' or 'fista' for dictionary learning")
        return method

    def _step(self, x: torch.Tensor, method: str) -> None:
        online_step(
            self._state,
            x,
            float(self.alpha),
            method=method,
            tol=self.tol,
            positive_code=self.positive_code,
            resample=self.resample_dead,
        )

    def _publish(self) -> None:
        self.components_ = self._state.D.cpu().numpy().copy()
        self.n_steps_ = self._state.step
        self.n_resampled_ = self._state.n_resampled

    # ---------------------------------------------------------------- API
    def fit(self, X: Any, y: Any = None) -> DictionaryLearner:
        """Learn the dictionary from X (n_samples, n_features) in ``max_iter`` passes."""
        method = self._check_params()
        x = self._validate(X, reset=True)
        rng = check_random_state(self.random_state)
        self._state = self._start(x, rng)
        n, bs = x.shape[0], int(self.batch_size)
        for _ in range(int(self.max_iter)):
            order = rng.permutation(n) if self.shuffle else np.arange(n)
            for start in range(0, n, bs):
                self._step(x[torch.from_numpy(order[start : start + bs])], method)
        self.n_iter_ = int(self.max_iter)
        self._publish()
        return self

    def partial_fit(self, X: Any, y: Any = None) -> DictionaryLearner:
        """Update the dictionary with one mini-batch X (the first call initialises it)."""
        method = self._check_params()
        first = not hasattr(self, "_state")
        x = self._validate(X, reset=first)
        if first:
            self._state = self._start(x, check_random_state(self.random_state))
            self.n_iter_ = 0
        elif x.dtype != self._state.D.dtype:
            x = x.to(self._state.D.dtype)
        self._step(x, method)
        self._publish()
        return self

    def transform(self, X: Any) -> Any:
        """Codes of X over the learned atoms, shape (n_samples, n_atoms)."""
        check_is_fitted(self, "components_")
        x = self._validate(X, reset=False)
        alpha = self.alpha if self.transform_alpha is None else self.transform_alpha
        method = _check_method(self.method)
        codes = map_rows(  # each rank encodes its shard under torch.distributed
            lambda rows: sparse_encode(
                rows, self.components_, alpha, method, tol=self.tol, positive=self.positive_code
            ),
            x,
        )
        return codes if isinstance(X, torch.Tensor) else codes.cpu().numpy()

    @property
    def _n_features_out(self) -> int:
        return int(self.components_.shape[0])

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
