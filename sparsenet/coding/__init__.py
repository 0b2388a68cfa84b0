"""Entropy coding and the compressed model file (the review's "Huffman" branch).

Canonical length-limited Huffman and ANS coders over integer symbol arrays, Deep
Compression's sparse index storage, the checked ``.snn`` container, and Deep Compression
style size accounting. This package reads and writes bytes only: it never builds a model
(:func:`sparsenet.load` does, through :mod:`sparsenet.inference`).
"""

from . import ans, huffman
from .accounting import format_report, header_size_report, size_report
from .container import CorruptFileError, SnnFile, is_snn_header, read_snn
from .describe import header_nonzeros, inspect_snn
from .header import SnnHeader, read_header
from .save import encode_model, save_snn

__all__ = [
    "ans",
    "huffman",
    "save_snn",
    "read_snn",
    "read_header",
    "header_nonzeros",
    "inspect_snn",
    "encode_model",
    "size_report",
    "header_size_report",
    "format_report",
    "is_snn_header",
    "SnnFile",
    "SnnHeader",
    "CorruptFileError",
]

