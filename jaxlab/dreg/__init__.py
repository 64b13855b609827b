"""DReg, distinctive regularisation (Yuan et al., "Contrastive Weight Regularization for Large Minibatch SGD", 2020).

One Dense or Conv layer is replicated, y = c (x * W1 + x * W2) + b, and a penalty
lambda * p(W1, W2) (default cos(vec W1, vec W2)^2) pushes the copies apart:

    model = replicate_model(base, input_shape)            # default: the final classifier
    extra_loss = dreg_extra_loss(model.path, "squared_cosine", 1e-2)
    # train `model` with extra_loss (make_train_step / train_and_evaluate), then export:
    plain_params = fold_back(params, model.path, model.combine)

replicate.py holds the transform and the design choices (why independent init, why a penalty on
W1 - W2 is a no-op under sum, the matched single-layer control B1); penalty.py the penalties and
coefficient schedules; training.py the config.dreg wiring train_and_evaluate uses; study.py the
controlled large-batch study (experiment "dreg_study").
"""

from jaxlab.dreg.penalty import (
    PENALTIES, SCHEDULES, coefficient_schedule, cosine, dreg_extra_loss, dreg_penalty, hinge_cosine,
    negative_squared_distance, penalty_function, per_unit_squared_cosine, squared_cosine,
)
from jaxlab.dreg.replicate import (
    COMBINES, INITS, Matched, Replicated, fold_back, linear_layers, matched_scales, path_keys, replicate_model,
    replicate_params, replicated_kernels, target_layer,
)
from jaxlab.dreg.training import FOLDED_FILE, DRegSetup, add_losses, from_config, save_plain_variables

__all__ = [
    "COMBINES", "DRegSetup", "FOLDED_FILE", "INITS", "Matched", "PENALTIES", "SCHEDULES", "Replicated",
    "add_losses", "coefficient_schedule", "cosine", "dreg_extra_loss", "dreg_penalty", "fold_back",
    "from_config", "hinge_cosine", "linear_layers", "matched_scales", "negative_squared_distance", "path_keys",
    "penalty_function", "per_unit_squared_cosine", "replicate_model", "replicate_params", "replicated_kernels",
    "save_plain_variables", "squared_cosine", "target_layer",
]
