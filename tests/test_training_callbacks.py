"""``fit`` ends its callbacks (``on_train_end``) also when training fails or is interrupted."""

import sys

import pytest

from sparsenet.models import model_for_dataset
from sparsenet.regularize import ActivationPenalty
from sparsenet.training import Callback, TrainConfig, fit

CFG = TrainConfig(epochs=2, batch_size=64, lr=0.05, quiet=True, seed=1)


def _model(data):
    return model_for_dataset("lenet300", data.input_shape, data.num_classes, seed=0)


def _hooked(model):
    return [name for name, m in model.named_modules() if m._forward_hooks]


class Boom(Callback):
    """Raises ``exc`` from ``penalty`` at step 3 (mid-epoch), after checking hooks exist."""

    def __init__(self, exc):
        self.exc = exc
        self.ended = False
        self.hooks_seen = []

    def penalty(self, state):
        if state.step == 3:
            self.hooks_seen = _hooked(state.model)
            raise self.exc
        return None

    def on_train_end(self, state):
        self.ended = True


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_interrupted_fit_removes_activation_hooks(digits_data, exc):
    model = _model(digits_data)
    act = ActivationPenalty("l1", 1e-4, layers=["fc1", "fc2"])
    boom = Boom(exc)
    with pytest.raises(type(exc)):
        fit(model, digits_data.train, CFG, callbacks=[act, boom])
    assert len(boom.hooks_seen) == 2  # the penalty's hooks were live when the step raised
    assert boom.ended
    assert _hooked(model) == []
    assert all(not m._forward_hooks for m in model.modules())


def test_failing_on_train_begin_still_ends_earlier_callbacks(digits_data):
    model = _model(digits_data)
    act = ActivationPenalty("log1p", 1e-4)

    class BadBegin(Callback):
        ended = False

        def on_train_begin(self, state):
            raise ValueError("no")

        def on_train_end(self, state):
            BadBegin.ended = True

    never = Boom(RuntimeError("unused"))
    with pytest.raises(ValueError):
        fit(model, digits_data.train, CFG, callbacks=[act, BadBegin(), never])
    assert _hooked(model) == []
    assert BadBegin.ended  # its begin started, so it ends (it may have half set up)
    assert not never.ended  # its begin never ran


def test_every_on_train_end_runs_and_errors_are_not_lost(digits_data):
    small = digits_data.subset(64)
    calls = []

    class BadEnd(Callback):
        def on_train_end(self, state):
            calls.append("bad")
            raise OSError("cleanup failed")

    class Spy(Callback):
        def on_train_end(self, state):
            calls.append("spy")

    # A clean fit: every callback ends, then the first on_train_end error is raised.
    with pytest.raises(OSError, match="cleanup failed"):
        fit(_model(digits_data), small.train, CFG, callbacks=[BadEnd(), Spy()])
    assert calls == ["bad", "spy"]

    # A failed fit: the training error propagates, the cleanup error is noted on it.
    calls.clear()
    with pytest.raises(RuntimeError, match="boom") as info:
        fit(_model(digits_data), digits_data.train, CFG,
            callbacks=[Boom(RuntimeError("boom")), BadEnd(), Spy()])
    assert calls == ["bad", "spy"]
    if sys.version_info >= (3, 11):
        assert any("cleanup failed" in n for n in info.value.__notes__)
