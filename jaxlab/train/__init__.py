"""Data-parallel training, study-agnostic: state, steps, optimisers, checkpoints, metrics, the loop and its one
extension point (jaxlab.train.extension).

The light modules load on import; the loop (orbax, tqdm) loads on first use of `train_and_evaluate` or
`evaluate`, so the studies' maths can import `jaxlab.train.step` without the runner.
"""

import importlib

from jaxlab.train.extension import Extension, ExtensionFactory, RunInfo, loss_term
from jaxlab.train.optim import create_learning_rate_schedule, create_optimizer, weight_decay_mask
from jaxlab.train.preemption import Preempted
from jaxlab.train.state import TrainState, create_train_state
from jaxlab.train.step import cross_entropy, example_keys, head_logits, make_eval_step, make_train_step
from jaxlab.train.validation import validate

_LOOP = ("evaluate", "train_and_evaluate")

__all__ = [
    "Extension", "ExtensionFactory", "Preempted", "RunInfo", "TrainState",
    "create_learning_rate_schedule", "create_optimizer", "create_train_state", "cross_entropy", "evaluate",
    "example_keys", "head_logits", "loss_term", "make_eval_step", "make_train_step", "train_and_evaluate",
    "validate", "weight_decay_mask",
]


def __getattr__(name: str):
    if name in _LOOP:
        return getattr(importlib.import_module("jaxlab.train.loop"), name)
    raise AttributeError(f"module 'jaxlab.train' has no attribute {name!r}")
