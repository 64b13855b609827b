"""K-priors for continual learning through the trainer: split-MNIST, 5 tasks (0/1, 2/3, 4/5, 6/7, 8/9).

    JAXLAB_DATA_DIR=/path/to/datasets python -m jaxlab.main --config=configs/kprior/split_mnist.py \
        --workdir=workdirs/kprior_split_mnist   # the 4 IDX(.gz) files in its mnist/ (or --config.data.dir=...)

Two scenarios, each its own task in results.json: `continual`, domain-incremental, single head: label = digit mod
2 (first or second digit of the task's pair), one LeNet-5 without BatchNorm (`lenet`, 2 outputs) for all tasks;
`continual_multihead`, task-incremental: label = digit, 10 outputs, each task its own 2-class head (the task is
known at train and test time: training.head_size = 2). Reported for both: the mean over the 5 tasks of the test
accuracy on each task's digits, after the last task. A fixed random 20% of the train split (about 2,400 points per task); every run (each task of each
chain, retraining) is a `train_and_evaluate` run with Adam lr 1e-3 cosine, batch 128, 300 steps, L2 delta = 1.
K-prior (from the last model, memory grown by a class-balanced top-lambda selection of each finished task, soft
labels of the last model), Replay (same memory rule, true labels), fine-tuning, batch (all 5 tasks from scratch),
at memory 100 / 10 / 1% of each task, 3 seeds: 30 trainer runs per seed and scenario.
See jaxlab/experiments/kprior_deep.py.
Produces results.json and accuracy_vs_memory.png in the workdir. Measured cost: see benchmarks/README.md
(K-priors, MNIST deep networks).
"""

import os

from jaxlab.experiments import config_module

# The same data, network, optimiser and memory rule as the add-data experiment beside this file.
_add_data = config_module(os.path.join(os.path.dirname(__file__), "mnist_add_data.py"))


def get_config():
    config = _add_data.get_config()
    config.training.num_train_steps = 300  # every run: each task of each chain, retraining
    k = config.kprior
    k.tasks = ("continual", "continual_multihead")
    k.memory_fractions = (1.0, 0.1, 0.01)
    return config
