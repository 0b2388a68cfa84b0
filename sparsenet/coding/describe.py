"""What ``sparsenet info`` and ``sparsenet inspect`` print about a ``.snn`` file, without
decoding its weights.

Both start from :func:`~sparsenet.coding.header.read_header`, which checks the frame, the
CRCs, the JSON header, the section table, every entry and the decode limit, and decodes
nothing. :func:`describe_snn` (``info``) then builds the recorded architecture on the
``meta`` device (shapes, no storage) and takes every non-zero count from the header, so a
file whose header claims 10^10 weights is described in the memory of its header.
:func:`inspect_snn` (``inspect``) computes the size table from the header and the section
lengths; only its entropy bounds need the symbol histograms, for which it decodes the gap
and index symbol streams one layer at a time (see
:func:`~sparsenet.coding.accounting.header_size_report`). Neither materialises a weight.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from .accounting import header_size_report
from .header import TENSOR_DTYPES, SnnHeader, read_header

__all__ = ["SnnDescription", "describe_snn", "header_nonzeros", "inspect_snn"]


@dataclass(frozen=True)
class SnnDescription:
    """A ``.snn`` file described from its header (see :func:`describe_snn`).

    Attributes
    ----------
    header : SnnHeader
        The checked header and its sections as stored.
    model : nn.Module
        The recorded architecture with its module swaps, on the ``meta`` device: shapes,
        types and ``arch`` but no storage. Not runnable; load the file for that.
    summary : dict
        :func:`sparsenet.summary.model_summary` of the model the file holds, with the
        non-zero counts from :func:`header_nonzeros`.
    """

    header: SnnHeader
    model: nn.Module
    summary: dict[str, Any]


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


def describe_snn(path: str | os.PathLike[str]) -> SnnDescription:
    """Layers, shapes, non-zeros and transforms of a ``.snn`` file from its header alone.

    Parameters
    ----------
    path : str or PathLike
        A ``.snn`` file.

    Returns
    -------
    SnnDescription
        ``summary`` has the layout of :func:`sparsenet.summary.model_summary` and equals
        it for the loaded model (``sparsenet.load(path)``).

    Raises
    ------
    CorruptFileError
        Any failed header check (:func:`~sparsenet.coding.header.read_header`), no
        recorded architecture, or stored shapes that differ from it; the decode limit
        applies to what the header declares, although nothing is decoded.
    """
    from ..inference import snn_architecture
    from ..summary import model_summary

    hdr = read_header(path)
    model = snn_architecture(hdr.header, hdr.shapes(), hdr.source)
    return SnnDescription(hdr, model, model_summary(model, nonzero=header_nonzeros(hdr)))


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
