"""Property test over recipe TOML (issue 17): random keys, types, values and stage orders.

Every input gives a clean RecipeError or a valid Recipe; the valid ones with small values
run on digits (a few examples in the fast suite, more under -m slow) and fail, if at all,
only with a SparsenetError.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsenet.errors import SparsenetError
from sparsenet.pipeline.recipe import SCHEMA, STAGE_KINDS, Recipe, RecipeError, parse_recipe

_KEYS = sorted({k for table in SCHEMA.values() for k in table}) + ["bogus", "Seed", ""]
_TOP = ["name", "seed", "model", "data", "lr", "description", "bogus"]

scalars = st.one_of(
    st.booleans(), st.integers(-(2**70), 2**70), st.integers(0, 3),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1),
    st.text(max_size=8), st.sampled_from(["conv=8,fc=5", "auto", "magnitude", "linear", "fc1"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=3)),
    max_leaves=6)
stage_tables = st.dictionaries(st.sampled_from(_KEYS), values, max_size=4)
stages = st.lists(
    st.dictionaries(st.sampled_from(list(STAGE_KINDS) + ["bogus"]), stage_tables,
                    min_size=0, max_size=2),
    max_size=5)
recipes = st.fixed_dictionaries({"stages": stages},
                                optional={k: values for k in _TOP})


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return '"' + v.encode("unicode_escape").decode().replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f'"{k}" = {_toml_value(x)}' for k, x in v.items()) + " }"


def to_toml(d):
    lines = [f'"{k}" = {_toml_value(v)}' for k, v in d.items() if k != "stages"]
    for entry in d["stages"]:
        lines.append("[[stages]]")
        lines += [f'"{k}" = {_toml_value(v)}' for k, v in entry.items()]
    return "\n".join(lines) + "\n"


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(recipes)
def test_random_recipes_validate_cleanly(d):
    try:
        r = parse_recipe(to_toml(d))
    except RecipeError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(r, Recipe)
    assert 0 <= r.seed <= 2**32 - 1
    assert parse_recipe(to_toml(r.to_dict())).to_dict() == r.to_dict()  # normal form


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_a_recipe_error(blob):
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        parse_recipe(text)
    except RecipeError:
        pass


small_stage = st.one_of(
    st.fixed_dictionaries({"prune": st.fixed_dictionaries(
        {"sparsity": st.floats(0.05, 0.95)},
        optional={"method": st.sampled_from(["magnitude", "random"]),
                  "iterations": st.integers(1, 2)})}),
    st.fixed_dictionaries({"share": st.fixed_dictionaries(
        {"weight_bits": st.integers(1, 6)}, optional={"init": st.sampled_from(["linear", "density"])})}),
    st.fixed_dictionaries({"factorize": st.fixed_dictionaries({"rank": st.integers(1, 8)})}),
    st.fixed_dictionaries({"regularize": st.fixed_dictionaries(
        {"l1": st.floats(0, 1e-3), "epochs": st.integers(0, 1)})}),
    st.fixed_dictionaries({"encode": st.fixed_dictionaries(
        {}, optional={"coder": st.sampled_from(["huffman", "ans"])})}),
)


def _runs_on_digits(stage_list, tmp_path, pretrained):
    from sparsenet.pipeline import compress

    try:
        compress(str(pretrained), "digits", {"seed": 1, "stages": stage_list},
                 run_dir=tmp_path / f"r{abs(hash(str(stage_list)))}", quiet=True, report=False)
    except SparsenetError as exc:  # e.g. an encode stage not last: refused up front
        assert "\n" not in str(exc)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, digits_data):
    from hostile_helpers import digits_checkpoint

    return digits_checkpoint(tmp_path_factory.mktemp("fuzz") / "d.pt", digits_data)


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(small_stage, min_size=1, max_size=3))
def test_valid_small_recipes_run_on_digits(tmp_path_factory, pretrained, stage_list):
    _runs_on_digits(stage_list, tmp_path_factory.mktemp("run"), pretrained)


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(small_stage, min_size=1, max_size=4))
def test_valid_small_recipes_run_on_digits_many(tmp_path_factory, pretrained, stage_list):
    _runs_on_digits(stage_list, tmp_path_factory.mktemp("run"), pretrained)
