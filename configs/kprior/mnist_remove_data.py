"""K-priors for a network trained by minibatch SGD through the trainer: MNIST remove-data (forget every 8).

    JAXLAB_DATA_DIR=/path/to/datasets python -m jaxlab.main --config=configs/kprior/mnist_remove_data.py \
        --workdir=workdirs/kprior_mnist_remove_data   # the 4 IDX(.gz) files in its mnist/ (or --config.data.dir=...)

The official USPS remove-data task on MNIST: the base LeNet-5 without BatchNorm (`lenet`) is trained on a fixed random
20% of the MNIST train split (12,000 points), all ten digits; then D- = every 8 of it (1,193 points) is
removed, and the adapted models are tested on the test digits other than 8 (9,026). Methods (each a
`train_and_evaluate` run, Adam lr 1e-3 cosine, batch 128, 1,000 steps, L2 delta = 1): K-prior (K(w) - sum_{D-} l
from w*: the trainer trains on the retained memory M_r with its true labels, the memory term on M = M_r + D- with
targets S - y, soft labels of w* minus the true labels, weighted |M| / |M_r|), Replay (M_r with its true labels,
from w*), batch (retraining on the 10,807 retained points from scratch), at memory 100 / 20 / 5 / 2% of the
retained data (class-balanced top-lambda; every memory also holds D-; 2% = 216 points is the smallest that fills a
batch of 128), 3 seeds. See jaxlab/kprior/minibatch.py (the objective and its scaling) and
jaxlab/experiments/kprior_deep.py.
Produces results.json, results.md and accuracy_vs_memory.png in the workdir. Measured: 58 min wall for the 3 seeds
(30 trainer runs, 60-170 s each) on 2 CPU cores shared with other jobs. Results in benchmarks/README.md (K-priors,
MNIST deep networks). Here the K-prior fails below full memory: on D- its objective is linear in the
log-probabilities and unbounded below for a deep network. It gives 61.8 +- 3.2% at 5% memory, against Replay's
97.9 +- 0.0%.
"""

import os

from jaxlab.experiments import config_module

# The same data, network, optimiser and memory rule as the add-data experiment beside this file.
_add_data = config_module(os.path.join(os.path.dirname(__file__), "mnist_add_data.py"))


def get_config():
    config = _add_data.get_config()
    k = config.kprior
    k.tasks = ("remove_data",)
    k.methods = ("kprior", "replay", "batch")
    k.memory_fractions = (1.0, 0.2, 0.05, 0.02)
    k.remove_digit = 8
    return config
