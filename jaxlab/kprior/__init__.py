"""Knowledge-adaptation priors (Khan & Swaroop, NeurIPS 2021): adapt a trained model to new data,
removed data, a new regulariser or a new architecture from a small memory of past inputs.

`prior`: exponential-family losses, K(w; w*, M) (`kprior_loss`, `KPrior`, `make_kprior`).
`memory`: lambda scores and class-balanced memory selection. `tasks`: the adaptation
objectives, Replay, continual learning and an L-BFGS solver. `gradients`: gradient
reconstruction error against full retraining. `deep`: the minibatch K-prior / Replay as an extra loss of the
data-parallel trainer, and the deep-network experiment (add data, split-MNIST continual learning).
"""

from jaxlab.kprior.deep import (
    deep_prior_inputs,
    deep_prior_loss,
    make_extra_loss,
    memory_indices,
    no_memory,
    replay_prior,
)
from jaxlab.kprior.gradients import GradientError, gradient_error
from jaxlab.kprior.memory import METHODS, class_quotas, memory_scores, select_memory
from jaxlab.kprior.prior import (
    LOSSES,
    SIGMOID,
    SOFTMAX,
    SQUARED,
    ExpFamilyLoss,
    KPrior,
    data_loss,
    kprior_loss,
    make_kprior,
    predictions,
    regularised_loss,
    sigmoid_cross_entropy,
    softmax_cross_entropy,
    squared_error,
    weight_penalty,
)
from jaxlab.kprior.tasks import (
    add_data,
    change_model_prior,
    change_regulariser,
    continual_learning,
    minimize,
    polynomial_projection,
    remove_data,
    replay,
)

__all__ = [
    "LOSSES", "METHODS", "SIGMOID", "SOFTMAX", "SQUARED", "ExpFamilyLoss", "GradientError", "KPrior", "add_data",
    "change_model_prior", "change_regulariser", "class_quotas", "continual_learning", "data_loss", "deep_prior_inputs",
    "deep_prior_loss", "gradient_error", "kprior_loss", "make_extra_loss", "make_kprior", "memory_indices", "memory_scores",
    "minimize", "no_memory", "polynomial_projection", "predictions", "regularised_loss", "remove_data",
    "replay", "replay_prior", "select_memory", "sigmoid_cross_entropy",
    "softmax_cross_entropy", "squared_error", "weight_penalty",
]
