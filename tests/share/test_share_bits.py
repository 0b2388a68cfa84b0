import pytest

from sparsenet.errors import SpecError
from sparsenet.models import LeNet5, LeNet300
from sparsenet.share import parse_bits_spec, resolve_bits


def test_parse():
    assert parse_bits_spec("conv=8,fc=5") == {"conv": 8, "fc": 5}
    assert parse_bits_spec(" fc3 = 6 ,") == {"fc3": 6}


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("", "empty"),
        ("fc", "NAME=BITS"),
        ("fc=", "NAME=BITS"),
        ("=3", "NAME=BITS"),
        ("fc=x", "'x'"),
        ("fc=2.5", "'2.5'"),
        ("fc=0", "fc=0"),
        ("fc=16", "fc=16"),
        ("fc=3,fc=4", "twice"),
    ],
)
def test_parse_errors(spec, needle):
    with pytest.raises(SpecError, match=needle):
        parse_bits_spec(spec)


def test_resolve_by_type_and_name():
    m = LeNet5()
    assert resolve_bits(m, "conv=8,fc=5") == {"conv1": 8, "conv2": 8, "fc1": 5, "fc2": 5}
    assert resolve_bits(m, "conv=8,fc=5,fc2=6,conv1=3") == {
        "conv1": 3,
        "conv2": 8,
        "fc1": 5,
        "fc2": 6,
    }
    assert resolve_bits(LeNet300(), "fc3=6") == {"fc3": 6}
    assert resolve_bits(LeNet300(), {"fc": 4, "fc1": 2}) == {"fc1": 2, "fc2": 4, "fc3": 4}


def test_resolve_errors():
    with pytest.raises(SpecError, match="'fc9'"):
        resolve_bits(LeNet300(), "fc9=3")
    with pytest.raises(SpecError, match="'relu1'"):
        resolve_bits(LeNet300(), "relu1=3")  # not a Linear/Conv layer
    with pytest.raises(SpecError, match="selects no layer"):
        resolve_bits(LeNet300(), "conv=8")
    with pytest.raises(SpecError):
        resolve_bits(LeNet300(), {"fc": 0})
    with pytest.raises(SpecError):
        resolve_bits(LeNet300(), {"fc": True})
    with pytest.raises(SpecError):
        resolve_bits(LeNet300(), [5])  # type: ignore[arg-type]


def test_resolve_int_means_every_tensor():
    assert resolve_bits(LeNet5(), 4) == {"conv1": 4, "conv2": 4, "fc1": 4, "fc2": 4}
    assert resolve_bits(LeNet5(), "6") == {"conv1": 6, "conv2": 6, "fc1": 6, "fc2": 6}
