"""The one vocabulary of layers: which tensors of a model are compressible, and their names.

Every stage (prune, share, the ``.snn`` encoder, low rank, the report, the summary) asks
this module which weight tensors a model has, so ``fc1`` means the same tensor everywhere.

A *compressible tensor* is the weight of

* ``nn.Linear`` (kind ``fc``),
* ``nn.Conv1d/2d/3d`` with any ``groups`` (depthwise included) and ``nn.ConvTranspose1d/2d/3d``
  (kind ``conv``; a transposed convolution's weight is ``(in, out/groups, *k)``, see
  :meth:`LayerTensor.out_major`),
* ``nn.Embedding`` / ``nn.EmbeddingBag`` (kind ``embedding``),
* ``nn.MultiheadAttention``: ``in_proj_weight`` (or ``q_proj_weight``, ``k_proj_weight``,
  ``v_proj_weight`` when ``kdim``/``vdim`` differ) and ``out_proj.weight`` (kind
  ``attention``; ``out_proj`` is an ``nn.Linear`` but is found once, as attention).

Names are backward compatible: a module's ``weight`` is named by the module's path
(``"fc1"``, ``"attn.out_proj"``), any other tensor by ``path.tensor``
(``"attn.in_proj_weight"``). :attr:`LayerTensor.key` is the state-dict key of the model
without parametrisations (``"fc1.weight"``), as in ``.snn`` headers.

Specs select tensors by *group* (``fc``, ``conv``, ``embedding``, ``attention``, ``all``),
by exact name or key, or by an ``fnmatch`` glob over names and keys (``blocks.*.attn.*``).
In a table (``{"conv": 8, "fc": 5, "fc3": 6}``) the most specific key wins: an exact
name, then the last matching glob, then the tensor's kind, then the kind it falls back to
(:data:`FALLBACK`: attention and embedding take the ``fc`` value unless given their own),
then ``all``. Bit widths have one range everywhere, :data:`MIN_BITS`..:data:`MAX_BITS`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd
from torch.nn.utils import parametrize

from .errors import SpecError

__all__ = [
    "KINDS",
    "GROUPS",
    "FALLBACK",
    "MIN_BITS",
    "MAX_BITS",
    "LayerTensor",
    "layer_kind",
    "compressible_tensors",
    "out_major",
    "is_inside_parametrization",
    "is_parametrized",
    "tensor_name",
    "name_of_key",
    "bias_key",
    "match",
    "select",
    "lookup",
    "resolve_table",
    "parse_bits_spec",
    "parse_sparsity_spec",
    "check_bits",
    "check_fraction",
]

KINDS: tuple[str, ...] = ("fc", "conv", "embedding", "attention")
GROUPS: tuple[str, ...] = (*KINDS, "all")
FALLBACK: dict[str, str] = {"attention": "fc", "embedding": "fc"}
# One range for every bit width (shared-weight indices and sparse-index gaps): the
# codebook's int16 indices hold at most 2**15 clusters, and every coder handles 2**15 + 1
# symbols.
MIN_BITS, MAX_BITS = 1, 15

_MHA_TENSORS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
_BIAS_OF = {"weight": "bias", "in_proj_weight": "in_proj_bias"}

V = TypeVar("V")


@dataclass(frozen=True)
class LayerTensor:
    """One compressible tensor: ``module.<tensor>``, reachable as ``name`` in the model.

    Attributes
    ----------
    name : ``"fc1"`` for a module's ``weight``, ``"attn.in_proj_weight"`` for another tensor.
    module_path : the module's path (``""`` for the model itself).
    tensor : the attribute name on the module (``"weight"``, ``"in_proj_weight"``).
    kind : one of :data:`KINDS` (or ``"other"`` for a tensor named outside the vocabulary,
        such as a bias given to the pruner).
    module : the module holding it (identity survives parametrisation).
    """

    name: str
    module_path: str
    tensor: str
    kind: str
    module: nn.Module = field(compare=False, repr=False)

    @property
    def key(self) -> str:
        """``"<module path>.<tensor>"``: the state-dict key without parametrisations."""
        return f"{self.module_path}.{self.tensor}" if self.module_path else self.tensor

    @property
    def value(self) -> torch.Tensor:
        """The effective tensor (through any parametrisation)."""
        return getattr(self.module, self.tensor)  # type: ignore[no-any-return]

    @property
    def parametrized(self) -> bool:
        """True when a parametrisation (mask, codebook...) sits on this tensor."""
        return is_parametrized(self.module, self.tensor)

    @property
    def bias(self) -> torch.Tensor | None:
        """The bias that goes with this weight (``bias``, ``in_proj_bias``), if any."""
        b = getattr(self.module, _BIAS_OF.get(self.tensor, ""), None)
        return b if isinstance(b, torch.Tensor) else None

    @property
    def transposed(self) -> bool:
        """True for a transposed convolution, whose weight is ``(in, out/groups, *k)``."""
        return isinstance(self.module, _ConvTransposeNd)

    def out_major(self, value: torch.Tensor | None = None) -> torch.Tensor:
        """This weight (or ``value``) with output units first, see :func:`out_major`."""
        return out_major(self.module, self.value if value is None else value)


def out_major(module: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """``weight`` of ``module`` with output units first: ``(out, in/groups, *k)``.

    Only a transposed convolution changes: ``(in, out/g, *k)`` → ``(out, in/g, *k)``
    (group by group, so row ``o`` is output channel ``o``). A Linear, a convolution and an
    attention projection are stored that way already; an embedding's rows are its tokens.
    """
    if not isinstance(module, _ConvTransposeNd):
        return weight
    g = int(module.groups)
    cin, cout_g, *k = weight.shape
    w = weight.reshape(g, cin // g, cout_g, *k)  # (g, in/g, out/g, *k)
    return w.transpose(1, 2).reshape(g * cout_g, cin // g, *k)  # (out, in/g, *k)


def is_inside_parametrization(name: str) -> bool:
    """True for a module path inside a ``parametrizations`` container."""
    return name.startswith("parametrizations.") or ".parametrizations." in name


def is_parametrized(module: nn.Module, tensor: str | None = None) -> bool:
    """``torch.nn.utils.parametrize.is_parametrized``: any tensor, or ``tensor``."""
    return parametrize.is_parametrized(module, tensor)


def layer_kind(module: nn.Module) -> str | None:
    """The kind of a module's ``weight`` on its own (``fc``, ``conv``, ``embedding``), else None.

    An ``nn.MultiheadAttention`` has no ``weight``; its tensors, and its ``out_proj``, are
    kind ``attention`` in :func:`compressible_tensors`, which knows the parent.
    """
    if isinstance(module, (_ConvNd,)):
        return "conv"
    if isinstance(module, nn.Linear):
        return "fc"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding"
    return None


def tensor_name(module_path: str, tensor: str) -> str:
    """The vocabulary name: the module path for ``weight``, else ``path.tensor``."""
    if tensor == "weight" and module_path:
        return module_path
    return f"{module_path}.{tensor}" if module_path else tensor


def name_of_key(key: str) -> str:
    """``"fc1.weight"`` → ``"fc1"``; ``"attn.in_proj_weight"`` stays."""
    path, _, tensor = key.rpartition(".")
    return tensor_name(path, tensor)


def bias_key(key: str) -> str | None:
    """The state-dict key of the bias going with weight ``key`` (``fc1.bias``), or None."""
    path, _, tensor = key.rpartition(".")
    b = _BIAS_OF.get(tensor)
    if b is None:
        return None
    return f"{path}.{b}" if path else b


def compressible_tensors(model: nn.Module) -> list[LayerTensor]:
    """Every compressible tensor of ``model`` (see the module docstring), in module order.

    Modules inside parametrisation containers are skipped; a tensor is listed once even
    when its module is reachable under several names.
    """
    out: list[LayerTensor] = []
    attention_out: set[int] = set()
    for path, m in model.named_modules():
        if is_inside_parametrization(path):
            continue
        if isinstance(m, nn.MultiheadAttention):
            for t in _MHA_TENSORS:
                if getattr(m, t, None) is not None:
                    out.append(LayerTensor(tensor_name(path, t), path, t, "attention", m))
            attention_out.add(id(m.out_proj))
            continue
        kind = layer_kind(m)
        if kind is None or not isinstance(getattr(m, "weight", None), torch.Tensor):
            continue
        if id(m) in attention_out:
            kind = "attention"
        out.append(LayerTensor(tensor_name(path, "weight"), path, "weight", kind, m))
    return out


def _tensors(model_or_tensors: nn.Module | Iterable[LayerTensor]) -> list[LayerTensor]:
    if isinstance(model_or_tensors, nn.Module):
        return compressible_tensors(model_or_tensors)
    return list(model_or_tensors)


def _is_glob(key: str) -> bool:
    return any(c in key for c in "*?[")


def match(tensors: Iterable[LayerTensor], key: str) -> list[LayerTensor]:
    """The tensors one spec key selects: a group, an exact name or key, or a glob."""
    ts = list(tensors)
    if key == "all":
        return ts
    if key in KINDS:
        return [t for t in ts if t.kind == key]
    exact = [t for t in ts if key in (t.name, t.key)]
    if exact or not _is_glob(key):
        return exact
    return [t for t in ts if fnmatch.fnmatchcase(t.name, key) or fnmatch.fnmatchcase(t.key, key)]


def _unknown(key: str, ts: list[LayerTensor], what: str) -> SpecError:
    names = [t.name for t in ts]
    return SpecError(
        f"{what}: {key!r} matches no compressible tensor; expected a group in "
        f"{list(GROUPS)}, a name in {names or '(none)'} or a glob such as 'blocks.*'"
    )


def select(
    model_or_tensors: nn.Module | Iterable[LayerTensor],
    spec: str | Iterable[str] | None = None,
    what: str = "layers",
) -> list[LayerTensor]:
    """The tensors selected by ``spec``, in module order, each once.

    Parameters
    ----------
    model_or_tensors : a model (its :func:`compressible_tensors`) or a list of them.
    spec : ``None`` (all), one key, a comma-separated string or a list of keys; each key is
        a group (``fc``, ``conv``, ``embedding``, ``attention``, ``all``), an exact name
        (``fc1``) or key (``fc1.weight``), or an fnmatch glob (``blocks.*.attn.*``).
    what : how errors name the spec.

    Raises
    ------
    SpecError : a key (other than a group) selects nothing.
    """
    ts = _tensors(model_or_tensors)
    if spec is None:
        return ts
    keys = [k.strip() for k in spec.split(",")] if isinstance(spec, str) else list(spec)
    chosen: set[str] = set()
    for key in keys:
        found = match(ts, key)
        if not found and key not in GROUPS:
            raise _unknown(key, ts, what)
        chosen.update(t.name for t in found)
    return [t for t in ts if t.name in chosen]


def lookup(t: LayerTensor, table: Mapping[str, V], fallback: Mapping[str, str] = FALLBACK) -> V | None:
    """The value of ``table`` for tensor ``t``: exact name/key > last matching glob > kind >
    fallback kind > ``all``; ``None`` when no key covers it."""
    for k in (t.name, t.key):
        if k in table:
            return table[k]
    globs = [k for k in table if _is_glob(k) and k not in GROUPS]
    for k in reversed(globs):
        if fnmatch.fnmatchcase(t.name, k) or fnmatch.fnmatchcase(t.key, k):
            return table[k]
    kind: str | None = t.kind
    while kind is not None:
        if kind in table:
            return table[kind]
        kind = fallback.get(kind)
    return table.get("all")


def resolve_table(
    model_or_tensors: nn.Module | Iterable[LayerTensor],
    table: Mapping[str, V],
    fallback: Mapping[str, str] = FALLBACK,
    what: str = "spec",
) -> dict[str, V]:
    """``{tensor name: value}`` for every tensor some key of ``table`` covers (:func:`lookup`).

    Raises
    ------
    SpecError : a key that is not a group selects no tensor.
    """
    ts = _tensors(model_or_tensors)
    for key in table:
        if key not in GROUPS and not match(ts, key):
            raise _unknown(key, ts, what)
    out: dict[str, V] = {}
    for t in ts:
        v = lookup(t, table, fallback)
        if v is not None:
            out[t.name] = v
    return out


def check_bits(value: Any, key: str = "bits", what: str = "bits spec") -> int:
    """``value`` as an int in :data:`MIN_BITS`..:data:`MAX_BITS`, else :class:`SpecError`."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
        raise SpecError(
            f"bad {what}: {key}={value!r}; expected an integer in {MIN_BITS}..{MAX_BITS}"
        )
    return value


def check_fraction(value: Any, key: str = "sparsity", what: str = "sparsity spec") -> float:
    """``value`` as a float in [0, 1], else :class:`SpecError`."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise SpecError(f"bad {what}: {key}={value!r}; expected a fraction in [0, 1]")
    return float(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_table(spec: Any, check: Any, what: str, example: str, form: str) -> dict[str, Any]:
    if isinstance(spec, Mapping):
        if not spec:
            raise SpecError(f"empty {what}; expected e.g. {example}")
        return {str(k): check(v, str(k), what) for k, v in spec.items()}
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return {"all": check(spec, "all", what)}
    if not isinstance(spec, str):
        raise SpecError(f"bad {what} {spec!r}; expected a string like {example!r}, a number or a table")
    out: dict[str, Any] = {}
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if len(parts) == 1 and "=" not in parts[0] and _is_number(parts[0]):
        return {"all": check(parts[0], "all", what)}
    for part in parts:
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not key or not value:
            raise SpecError(f"bad {what} {spec!r}: {part!r} is not of the form {form}")
        if key in out:
            raise SpecError(f"bad {what} {spec!r}: {key!r} given twice")
        out[key] = check(value, key, what)
    if not out:
        raise SpecError(f"empty {what} {spec!r}; expected e.g. {example}")
    return out


def parse_bits_spec(spec: str | int | Mapping[str, Any], what: str = "bits spec") -> dict[str, int]:
    """Bits per tensor: ``"conv=8,fc=5,fc3=6,blocks.*.attn.*=4"``, an int or ``"5"`` (``all``),
    or a mapping of the same. Keys are groups, names or globs (:func:`lookup`).

    Raises
    ------
    SpecError : an empty spec, a part without ``=``, a repeated key, or bits outside
        :data:`MIN_BITS`..:data:`MAX_BITS`.
    """
    return _parse_table(spec, check_bits, what, "conv=8,fc=5", "NAME=BITS")


def parse_sparsity_spec(
    spec: str | float | Mapping[str, Any], what: str = "sparsity spec"
) -> dict[str, float]:
    """Fractions to prune: ``0.9`` or ``"0.9"`` (``all``), ``"fc1=0.92,conv=0.5"``, or a mapping;
    each in [0, 1]. Keys are groups, names or globs (:func:`lookup`)."""
    return _parse_table(spec, check_fraction, what, "fc=0.9,conv=0.6", "NAME=FRACTION")
