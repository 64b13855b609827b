"""Small configs and datasets shared by the tests (no files outside the repo needed)."""

import numpy as np

from jaxlab import data
from jaxlab.config import base_config


def tiny_config(**overrides):
    """Digits, a small model, a few steps: seconds on 2 CPU cores."""
    config = base_config()
    config.data.source = "digits"
    config.model.name = "mlp"
    config.model.hidden_sizes = (32,)
    config.training.batch_size = 64
    config.training.num_train_steps = 6
    config.optimizer.learning_rate = 0.05
    config.eval_batch_size = 64
    config.log_every_steps = 2
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def blobs_dataset(num_train=96, num_test=37, num_classes=3, shape=(4, 4, 1), seed=0):
    """Gaussian blobs per class as an in-memory dataset (sizes chosen to be awkward)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, *shape)).astype(np.float32)

    def split(n):
        y = np.arange(n) % num_classes
        x = centres[y] + 0.3 * rng.normal(size=(n, *shape)).astype(np.float32)
        return x.astype(np.float32), y.astype(np.int32)

    return data.from_arrays(*split(num_train), *split(num_test), name="blobs")
