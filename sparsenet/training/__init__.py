"""Training and evaluation: ``fit`` with callbacks, deterministic seeds and resumable checkpoints.

The extension point is :class:`Callback`. Pruning (re-masking), regularisation (extra loss
terms), weight sharing (centroid fine-tuning) and low-rank fine-tuning plug into the same
loop through it instead of copying the loop::

    class L1(Callback):
        def penalty(self, state):
            return 1e-5 * sum(p.abs().sum() for p in state.model.parameters())

    fit(model, data.train, TrainConfig(epochs=5), callbacks=[L1()], val=data.test)

Modules: :mod:`.config` (``TrainConfig``, losses, optimizers, schedules, per-model
defaults), :mod:`.callbacks` (``Callback``, ``TrainState``), :mod:`.loop` (``fit``,
``seed_everything``), :mod:`.scoring` (``evaluate(model, (x, y))``, ``predict`` → labels,
``logits``, ``sharded_evaluate``), :mod:`.resume` (training checkpoints).
"""

from .callbacks import Callback, TrainState
from .config import LOSSES, LossFn, TrainConfig, default_config, loss_function
from .loop import fit, seed_everything
from .scoring import evaluate, logits, predict, sharded_evaluate

__all__ = [
    "TrainConfig",
    "TrainState",
    "Callback",
    "fit",
    "evaluate",
    "predict",
    "logits",
    "sharded_evaluate",
    "seed_everything",
    "default_config",
    "loss_function",
    "LOSSES",
    "LossFn",
]
