"""Deep sparse model: lasso sparse coding, OMP and online dictionary learning.

The review's second half (He et al. 2014's Deep Sparse Coding builds on these parts):
``sparse_encode`` solves ½||x − cD||² + α||c||₁ per sample (scikit-learn's convention,
atoms as rows of D) with batched FISTA, coordinate descent or OMP in torch;
``DictionaryLearner`` learns D online (Mairal et al. 2009); ``SparseCoder`` codes over a
fixed D. Both estimators follow scikit-learn's API.
"""

from ._validation import InvalidInputError
from .deepsc import DeepSC, SCLayer
from .dictionary import (
    OnlineState,
    dictionary_objective,
    init_dictionary,
    online_step,
    update_atoms,
)
from .drlim import DrLIM, drlim_loss, sample_pairs
from .encode import METHODS, duality_gap, lasso_objective, sparse_encode
from .estimators import DictionaryLearner, SparseCoder
from .patches import ZCAWhitener, extract_patches, normalize_patches, patch_grid
from .pooling import local_max_pool, pooled_grid, pyramid_max_pool, pyramid_size, split_polarity

__all__ = [
    "DictionaryLearner",
    "InvalidInputError",
    "METHODS",
    "OnlineState",
    "SparseCoder",
    "dictionary_objective",
    "duality_gap",
    "init_dictionary",
    "lasso_objective",
    "online_step",
    "sparse_encode",
    "update_atoms",
    # DeepSC (He et al. 2014): patches, pooling, DrLIM, the stacked estimator
    "DeepSC",
    "DrLIM",
    "SCLayer",
    "ZCAWhitener",
    "drlim_loss",
    "extract_patches",
    "local_max_pool",
    "normalize_patches",
    "patch_grid",
    "pooled_grid",
    "pyramid_max_pool",
    "pyramid_size",
    "sample_pairs",
    "split_polarity",
]
