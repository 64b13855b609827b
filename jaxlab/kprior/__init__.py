"""Knowledge-adaptation priors (Khan & Swaroop, NeurIPS 2021): adapt a trained model to new data,
removed data, a new regulariser or a new architecture from a small memory of past inputs. The maths only:
the experiments that run them are `jaxlab.experiments.kprior_adaptation` and `jaxlab.experiments.kprior_deep`.

`prior`: exponential-family losses, K(w; w*, M) (`kprior_loss`, `KPrior`, `make_kprior`).
`memory`: lambda scores and class-balanced memory selection.
`objectives`: the adaptation objectives, Replay, continual learning, and the padded-memory
`adaptation_objective` (an `AdaptationProblem`) with its GLM IRLS Hessian `glm_hessian`.
`solvers`: full-batch `minimize` (L-BFGS, damped Newton) and `adam`.
`minibatch`: the minibatch K-prior / Replay as a loss term of the data-parallel trainer (`MinibatchPrior`,
`deep_prior_loss`, `minibatch_prior_extension`; `residual_prior` for remove-data and a change of model, whose data
stream is the memory).
`gradients`: gradient reconstruction error against full retraining.
"""

from jaxlab.kprior.gradients import GradientError, gradient_error
from jaxlab.kprior.memory import METHODS, class_quotas, memory_scores, select_memory
from jaxlab.kprior.minibatch import (
    MinibatchPrior,
    deep_prior_loss,
    memory_indices,
    minibatch_prior,
    minibatch_prior_extension,
    minibatch_prior_loss,
    no_memory,
    replay_prior,
    residual_prior,
)
from jaxlab.kprior.objectives import (
    AdaptationProblem,
    adaptation_objective,
    add_data,
    change_model_prior,
    change_regulariser,
    continual_learning,
    glm_hessian,
    linear,
    polynomial_projection,
    remove_data,
    replay,
)
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
from jaxlab.kprior.solvers import SolveInfo, adam, minimize

__all__ = [
    "LOSSES", "METHODS", "SIGMOID", "SOFTMAX", "SQUARED", "AdaptationProblem", "ExpFamilyLoss", "GradientError",
    "KPrior", "MinibatchPrior", "SolveInfo", "adam", "adaptation_objective", "add_data", "change_model_prior",
    "change_regulariser", "class_quotas", "continual_learning", "data_loss", "deep_prior_loss", "glm_hessian",
    "gradient_error", "kprior_loss", "linear", "make_kprior", "memory_indices", "memory_scores", "minibatch_prior",
    "minibatch_prior_extension", "minibatch_prior_loss", "minimize", "no_memory", "polynomial_projection",
    "predictions", "regularised_loss", "remove_data", "replay", "replay_prior", "residual_prior", "select_memory",
    "sigmoid_cross_entropy", "softmax_cross_entropy", "squared_error", "weight_penalty",
]
