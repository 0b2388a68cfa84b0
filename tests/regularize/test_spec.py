import pytest

from sparsenet.errors import SpecError
from sparsenet.regularize import parse_act_penalty, parse_activation, parse_weight_penalty
from sparsenet.regularize.spec import ActivationSpec, ActPenaltySpec, WeightPenaltySpec


def test_valid_specs():
    assert parse_weight_penalty("1e-5") == WeightPenaltySpec(1e-5, None)
    assert parse_weight_penalty(" 0 @ fc1, fc2") == WeightPenaltySpec(0.0, ("fc1", "fc2"))
    assert parse_act_penalty("log1p:1e-4@fc1,fc2") == ActPenaltySpec(
        "log1p", 1e-4, None, ("fc1", "fc2")
    )
    assert parse_act_penalty("L1:0.5") == ActPenaltySpec("l1", 0.5, None, None)
    assert parse_act_penalty("kl:1e-3") == ActPenaltySpec("kl", 1e-3, 0.05, None)
    assert parse_act_penalty("kl:1e-3:0.1@relu1") == ActPenaltySpec("kl", 1e-3, 0.1, ("relu1",))
    assert parse_activation("truncated-sigmoid:0.1") == ActivationSpec("truncated-sigmoid", 0.1)
    assert parse_activation("shifted-relu:2@fc1") == ActivationSpec("shifted-relu", 2.0, ("fc1",))


@pytest.mark.parametrize(
    "fn,text,fragment",
    [
        (parse_weight_penalty, "abc", "'abc' is not a number"),
        (parse_weight_penalty, "-1e-5", "out of range"),
        (parse_weight_penalty, "1e-5@", "empty layer name"),
        (parse_weight_penalty, "inf", "out of range"),
        (parse_act_penalty, "log1p", "wrong number"),
        (parse_act_penalty, "log2:1e-4", "unknown KIND"),
        (parse_act_penalty, "log1p:1e-4:0.1", "wrong number"),
        (parse_act_penalty, "kl:1e-3:1.5", "out of range"),
        (parse_act_penalty, "kl:1e-3:0", "RHO must be > 0"),
        (parse_act_penalty, "l1:x@fc1", "'x' is not a number"),
        (parse_activation, "truncated-sigmoid", "exactly one ':'"),
        (parse_activation, "truncated-sigmoid:1.0", "out of range"),
        (parse_activation, "swish:0.1", "unknown KIND"),
        (parse_activation, "shifted-relu:0.1@fc1,", "empty layer name"),
    ],
)
def test_malformed_specs_name_value_and_form(fn, text, fragment):
    with pytest.raises(SpecError) as err:
        fn(text)
    msg = str(err.value)
    assert fragment in msg and repr(text) in msg and "expected" in msg and "\n" not in msg
