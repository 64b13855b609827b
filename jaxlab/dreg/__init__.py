"""DReg, distinctive regularisation (Yuan et al., "Contrastive Weight Regularization for Large Minibatch SGD", 2020).

One Dense or Conv layer is replicated, y = c (x * W1 + x * W2) + b, and a penalty
lambda * p(W1, W2) (default cos(vec W1, vec W2)^2) pushes the copies apart:

    model = replicate_model(base, input_shape)            # default: the final classifier
    loss = dreg_extra_loss(model.path, "squared_cosine", 1e-2)   # lambda * penalty(W1, W2)
    # train `model` with the loss added (make_train_step / train_and_evaluate), then export:
    plain_params = fold_back(params, model.path, model.combine)

replicate.py holds the transform and the design choices (why independent init, why a penalty on
W1 - W2 is a no-op under sum, the matched single-layer control B1); penalty.py the penalties and
coefficient schedules. The config.dreg wiring into the trainer is jaxlab.experiments.train (its
`dreg_extension`), the controlled large-batch study jaxlab.experiments.dreg_study.
"""

from jaxlab.dreg.penalty import (
    PENALTIES, SCHEDULES, coefficient_schedule, cosine, dreg_extra_loss, dreg_penalty, hinge_cosine,
    negative_squared_distance, penalty_function, per_unit_squared_cosine, squared_cosine,
)
from jaxlab.dreg.replicate import (
    COMBINES, INITS, Matched, Replicated, fold_back, linear_layers, matched_scales, path_keys, replicate_model,
    replicate_params, replicated_kernels, target_layer,
)

__all__ = [
    "COMBINES", "INITS", "Matched", "PENALTIES", "SCHEDULES", "Replicated", "coefficient_schedule", "cosine",
    "dreg_extra_loss", "dreg_penalty", "fold_back", "hinge_cosine", "linear_layers", "matched_scales",
    "negative_squared_distance", "path_keys", "penalty_function", "per_unit_squared_cosine", "replicate_model",
    "replicate_params", "replicated_kernels", "squared_cosine", "target_layer",
]
