"""Weight sharing: per-layer 1-D k-means on the non-zero weights, a codebook parametrisation.

The review's "cluster & quantization" branch (Deep Compression): each selected layer's
n non-zero weights are replaced by k = 2**weight_bits shared values, storage n·b → n·log2(k) + k·b,
and fine-tuning moves each centroid by the sum of its cluster's gradients::

    from sparsenet.share import share_weights, quantization_report, bake
    share_weights(model, weight_bits="conv=8,fc=5", init="optimal")
    finetune(model, data.train, epochs=1)    # Adam on the centroids (and biases)
    print(quantization_report(model)["total"])
    bake(model)                                              # plain weights again
"""

from .bits import parse_bits_spec, resolve_bits, shareable_layers
from .codebook import SharedWeight, bake, index_dtype, shared_layers
from .kmeans import INITS, KMeans1D, init_centroids, sse
from .report import (
    format_report,
    plot_histograms,
    quantization_report,
    reference_weight,
    snapshot_codebooks,
    storage_bits,
)
from .sharing import finetune, share_tensor, share_weights

__all__ = [
    "INITS",
    "KMeans1D",
    "SharedWeight",
    "bake",
    "finetune",
    "format_report",
    "index_dtype",
    "init_centroids",
    "parse_bits_spec",
    "plot_histograms",
    "quantization_report",
    "reference_weight",
    "resolve_bits",
    "share_tensor",
    "share_weights",
    "shareable_layers",
    "shared_layers",
    "snapshot_codebooks",
    "sse",
    "storage_bits",
]
