"""Deep sparse model: lasso sparse coding, OMP and online dictionary learning.

The review's second half (He et al. 2014's Deep Sparse Coding builds on these parts):
``sparse_encode`` solves ½||x − cD||² + α||c||₁ per sample (scikit-learn's convention,
atoms as rows of D) with batched FISTA, coordinate descent or OMP in torch.
"""

from ._validation import InvalidInputError
from .encode import METHODS, duality_gap, lasso_objective, sparse_encode

__all__ = [
    "InvalidInputError",
    "METHODS",
    "duality_gap",
    "lasso_objective",
    "sparse_encode",
]
