"""Small configs and datasets shared by the tests (no files outside the repo needed)."""

import dataclasses
import os
import signal

import numpy as np

from jaxlab import data, parallel
from jaxlab.experiments import base_config


def tiny_config(experiment="train", **overrides):
    """Digits, a small model, a few steps: seconds on 2 CPU cores (`experiment`'s fragment added)."""
    config = base_config(experiment)
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


class SigtermAt:
    """A data source that sends this process SIGTERM when batch number `at` is fetched (counted over every run
    that reads it: a preemption in the middle of a grid of runs)."""

    def __init__(self, source, at):
        self.source, self.at, self.calls = source, at, 0

    def __len__(self):
        return len(self.source)

    def __getitems__(self, indices):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.source.__getitems__(indices)


def sigterm_at(dataset, at):
    """`dataset` whose training split sends SIGTERM at its `at`-th batch fetch (see SigtermAt)."""
    return dataclasses.replace(dataset, train=SigtermAt(dataset.train, at))


def sigterm_at_batch(monkeypatch, at):
    """Send this process SIGTERM when the trainer moves its `at`-th batch onto the devices (train and eval
    batches of every run counted, in the main thread: a preemption at a deterministic point of a grid)."""
    shard_batch, calls = parallel.shard_batch, []

    def counting(batch, mesh):
        calls.append(1)
        if len(calls) == at:
            os.kill(os.getpid(), signal.SIGTERM)
        return shard_batch(batch, mesh)

    monkeypatch.setattr(parallel, "shard_batch", counting)
    return calls


def blobs_dataset(num_train=96, num_test=37, num_classes=3, shape=(4, 4, 1), seed=0):
    """Gaussian blobs per class as an in-memory dataset (sizes chosen to be awkward)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, *shape)).astype(np.float32)

    def split(n):
        y = np.arange(n) % num_classes
        x = centres[y] + 0.3 * rng.normal(size=(n, *shape)).astype(np.float32)
        return x.astype(np.float32), y.astype(np.int32)

    return data.from_arrays(*split(num_train), *split(num_test), name="blobs")
