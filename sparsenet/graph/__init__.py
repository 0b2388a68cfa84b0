"""The architecture record of a file for any traceable module, without pickle.

:func:`record_model` turns a model into JSON (a module tree of whitelisted torch.nn layers
plus its torch.fx graph, see :mod:`.record`); :func:`build_graph_module` turns the JSON
back into a ``torch.fx.GraphModule`` whose modules, functions and methods all come from the
whitelists in :mod:`.leaves` and :mod:`.ops`. ``.snn`` headers and ``.pt`` checkpoints store
it as ``arch = {"graph": record}`` for models outside the registry.
"""

from .build import SwapSlot, build_graph_module, check_slots_filled, is_graph_arch
from .leaves import LEAF_TYPES
from .ops import ATTRIBUTES, FUNCTIONS, METHODS
from .record import RECORD_FORMAT, RECORD_VERSION, RecordError, check_recordable, record_model

__all__ = [
    "ATTRIBUTES",
    "FUNCTIONS",
    "LEAF_TYPES",
    "METHODS",
    "RECORD_FORMAT",
    "RECORD_VERSION",
    "RecordError",
    "SwapSlot",
    "build_graph_module",
    "check_recordable",
    "check_slots_filled",
    "is_graph_arch",
    "record_model",
]
