"""Sparse deep models by regularisation: weight norms, activation penalties, sparse activations.

The review's "Norm" branches (J~ = J + λR(W) on weights, λR(z) on activations) as training
callbacks, its truncated activation y = Tr[σ(x)] and a thresholded ReLU as checkpointable
module swaps, and the metrics that measure what they achieve::

    from sparsenet.regularize import WeightPenalty, ActivationPenalty, replace_activations
    replace_activations(model, "truncated-sigmoid:0.1")
    fit(model, data.train, cfg, callbacks=[WeightPenalty("l1", 1e-5),
                                           ActivationPenalty("log1p", 1e-4, ["fc1", "fc2"])])
    activation_sparsity(model, data.x_test)
"""

from .activations import (
    ACTIVATIONS,
    ShiftedReLU,
    TruncatedSigmoid,
    activation_from_spec,
    replace_activations,
)
from .metrics import activation_sparsity, format_activation_sparsity, hoyer, weight_sparsity
from .penalties import (
    ActivationPenalty,
    WeightPenalty,
    elastic_net,
    group_lasso,
    kl_sparsity,
    l1_activation,
    l1_norm,
    l2_half,
    log1p_penalty,
)
from .sites import activation_sites, weight_layers
from .spec import (
    callbacks_from_specs,
    parse_act_penalty,
    parse_activation,
    parse_weight_penalty,
)

__all__ = [
    # penalties (training callbacks) and their closed forms
    "WeightPenalty",
    "ActivationPenalty",
    "l1_norm",
    "l2_half",
    "elastic_net",
    "group_lasso",
    "log1p_penalty",
    "l1_activation",
    "kl_sparsity",
    # sparse activations
    "TruncatedSigmoid",
    "ShiftedReLU",
    "ACTIVATIONS",
    "activation_from_spec",
    "replace_activations",
    # metrics
    "hoyer",
    "weight_sparsity",
    "activation_sparsity",
    "format_activation_sparsity",
    # where penalties and metrics look
    "weight_layers",
    "activation_sites",
    # spec strings
    "parse_weight_penalty",
    "parse_act_penalty",
    "parse_activation",
    "callbacks_from_specs",
]
