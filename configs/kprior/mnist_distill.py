"""K-priors for a change of network through the trainer: MNIST knowledge distillation into a narrower LeNet.

    JAXLAB_DATA_DIR=/path/to/datasets python -m jaxlab.main --config=configs/kprior/mnist_distill.py \
        --workdir=workdirs/kprior_mnist_distill   # the 4 IDX(.gz) files in its mnist/ (or --config.data.dir=...)

The teacher, LeNet-5 without BatchNorm (`lenet`, conv widths 6 and 16, 61,706 params), is trained on a fixed random
20% of the MNIST train split (12,000 points); the student is the same network with half the conv channels
(kprior.student_width = 3: conv widths 3 and 8, 35,820 params), every student run of a seed starting from the same
fresh init. Methods (each a `train_and_evaluate` run, Adam lr 1e-3 cosine, batch 128, 1,000 steps, L2 delta = 1):
K-prior (the paper's change of model: distillation on the memory, sum_M l(softmax(f_teacher), f_student) +
delta/2 ||theta||^2, no weight-space term; the trainer trains on M with its true labels and the memory term has
targets S - y, the teacher's soft labels minus the true labels), Replay (M with its true labels), batch (the
student trained on all 12,000 points), at memory 100 / 20 / 5 / 2% of the data (class-balanced top-lambda of the
teacher; 2% = 240 points is the smallest that fills a batch of 128; 100% is knowledge distillation on all of D),
3 seeds; tested on all 10,000 test digits. See jaxlab/kprior/minibatch.py (the objective and its scaling) and
jaxlab/experiments/kprior_deep.py.
Produces results.json, results.md and accuracy_vs_memory.png in the workdir. Measured: 47.5 min wall for the 3 seeds
(30 trainer runs, 60-170 s each) on 2 CPU cores shared with two other jobs; results in benchmarks/README.md
(K-priors, MNIST deep networks): at 2% memory K-prior 92.7 +- 0.9% against Replay 74.8 +- 5.9%.
"""

import os

from jaxlab.experiments import config_module

# The same data, teacher, optimiser and memory rule as the add-data experiment beside this file.
_add_data = config_module(os.path.join(os.path.dirname(__file__), "mnist_add_data.py"))


def get_config():
    config = _add_data.get_config()
    k = config.kprior
    k.tasks = ("change_model",)
    k.methods = ("kprior", "replay", "batch")
    k.memory_fractions = (1.0, 0.2, 0.05, 0.02)
    k.student_width = 3
    return config
