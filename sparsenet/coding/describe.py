"""What ``sparsenet inspect`` prints about a ``.snn`` file, and the non-zero counts that
``sparsenet info`` takes, without decoding its weights (bytes only: no model is built here;
:func:`sparsenet.inference.describe_snn` builds the ``meta``-device architecture for
``info``).

Both start from :func:`~sparsenet.coding.header.read_header`, which checks the frame, the
CRCs, the JSON header, the section table, every entry and the decode limit, and decodes
nothing. :func:`inspect_snn` (``inspect``) computes the size table from the header and the section
lengths; only its entropy bounds need the symbol histograms, for which it decodes the gap
and index symbol streams one layer at a time (see
:func:`~sparsenet.coding.accounting.header_size_report`). Neither materialises a weight.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .accounting import header_size_report
from .header import TENSOR_DTYPES, SnnHeader, read_header

__all__ = ["header_nonzeros", "inspect_snn"]


def header_nonzeros(hdr: SnnHeader) -> dict[str, int]:
    """Non-zero count of every stored tensor, by state-dict key, without decoding.

    Coded weight tensors take the header's ``nnz``, which loading checks against the
    decoded streams (so for a file that loads, it is the count of the loaded weight).
    Raw tensors (biases, norms, weights of other dtypes) are counted in their stored bytes
    through a read-only view.

    Parameters
    ----------
    hdr : SnnHeader
        From :func:`~sparsenet.coding.header.read_header`.

    Returns
    -------
    dict
        ``{"fc1.weight": 4016, "fc1.bias": 300, ...}``.
    """
    out = {m["name"]: int(m["nnz"]) for m in hdr.layers}
    for t in hdr.tensors:
        arr = np.frombuffer(hdr.sections[t["section"]], dtype=TENSOR_DTYPES[t["dtype"]][1])
        out[t["name"]] = int(np.count_nonzero(arr))
    return out


def inspect_snn(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The size report (:func:`~sparsenet.coding.accounting.size_report` layout) of a file.

    Parameters
    ----------
    path : str or PathLike
        A ``.snn`` file.

    Returns
    -------
    dict
        ``coder``, ``arch``, ``layers`` (rows), ``total``, ``file`` (``path``) and
        ``metadata`` (the header's). Only the gap and index symbol streams are decoded,
        one layer at a time, for the entropy bounds
        (:func:`~sparsenet.coding.accounting.header_size_report`).

    Raises
    ------
    CorruptFileError
        Any failed header check, or a symbol stream that does not decode to what the
        header declares.
    """
    hdr = read_header(path)
    report = header_size_report(hdr)
    report["file"] = os.fspath(path)
    report["metadata"] = hdr.metadata
    return report
