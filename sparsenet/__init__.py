"""sparsenet: sparse neural networks on PyTorch.

Weight sparseness (norms, pruning, low rank, weight sharing, entropy coding), neural
sparseness (activation penalties, truncated activations) and deep sparse coding, after
"A Review on Sparse Neural Network" (2017).
"""

from .bn import fold_bn, recalibrate_bn
from .checkpoint import save_model
from .coding import save_snn
from .data import Dataset, digits, fashion_mnist, idx_dir, load_dataset, mnist, read_idx
from .errors import CheckpointError, CorruptFileError, DataError, SparsenetError, SpecError
from .loading import load, load_model
from .lowrank import factorize
from .models import LeNet5, LeNet300, build_model, model_for_dataset
from .pipeline import compress
from .regularize import ActivationPenalty, WeightPenalty, replace_activations
from .share import share_weights
from .sparse_coding import DeepSC, DictionaryLearner, SparseCoder, sparse_encode
from .summary import model_summary
from .training import (
    Callback,
    TrainConfig,
    TrainState,
    default_config,
    evaluate,
    fit,
    logits,
    predict,
    seed_everything,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "compress",
    # data
    "Dataset",
    "digits",
    "fashion_mnist",
    "idx_dir",
    "load_dataset",
    "mnist",
    "read_idx",
    # errors
    "CheckpointError",
    "CorruptFileError",
    "DataError",
    "SparsenetError",
    "SpecError",
    # lowrank
    "factorize",
    # BatchNorm
    "fold_bn",
    "recalibrate_bn",
    # models
    "LeNet5",
    "LeNet300",
    "build_model",
    "model_for_dataset",
    # training
    "Callback",
    "TrainConfig",
    "TrainState",
    "default_config",
    "evaluate",
    "fit",
    "logits",
    "predict",
    "seed_everything",
    # regularize
    "WeightPenalty",
    "ActivationPenalty",
    "replace_activations",
    # files
    "load_model",  # deprecated: load(path, with_metadata=True)
    "save_model",
    "model_summary",
    # weight sharing
    "share_weights",
    # deep sparse models
    "DeepSC",
    "DictionaryLearner",
    "SparseCoder",
    "sparse_encode",
    # compressed models (.snn)
    "load",
    "save_snn",
]
