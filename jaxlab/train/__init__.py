"""Data-parallel training: state, steps, optimisers, checkpoints, metrics and the loop."""

from jaxlab.train.loop import NonFiniteLossError, evaluate, train_and_evaluate
from jaxlab.train.optim import create_learning_rate_schedule, create_optimizer, weight_decay_mask
from jaxlab.train.state import TrainState, create_train_state
from jaxlab.train.step import cross_entropy, example_keys, make_eval_step, make_train_step

__all__ = [
    "NonFiniteLossError", "TrainState", "create_learning_rate_schedule", "create_optimizer",
    "create_train_state", "cross_entropy", "evaluate", "example_keys", "make_eval_step",
    "make_train_step", "train_and_evaluate", "weight_decay_mask",
]
