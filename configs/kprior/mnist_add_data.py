"""K-priors for a network trained by minibatch SGD through the trainer: MNIST add-data (a held-out digit arrives).

    JAXLAB_DATA_DIR=/path/to/datasets python -m jaxlab.main --config=configs/kprior/mnist_add_data.py \
        --workdir=workdirs/kprior_mnist_add_data   # the 4 IDX(.gz) files in its mnist/ (or --config.data.dir=...)

Base: LeNet-5 without BatchNorm (`lenet`: conv5x5(6)-pool-conv5x5(16)-pool-120-84-10, 61,706 params; f_w must
depend on the params alone) trained on a fixed random 20% of the MNIST train split (12,000 points) without the 9s
(about 10,800 points); new data: the ~1,200 9s of that subset; tested on all 10,000 test digits. Methods (each a
`train_and_evaluate` run, Adam lr 1e-3 cosine, batch 128, 1,000 steps, L2 delta = 1 as delta / (2 N) ||w||^2):
K-prior (memory term weighted |M| / N_new, soft labels of w*, class-balanced top-lambda memory), Replay (same
memory, true labels), fine-tuning (the 9s only, from w*), batch (retraining on all 12,000 from scratch), at memory
100 / 20 / 5 / 1% of the base data, 3 seeds (seed: initialisation, batch order, memory draws).
See jaxlab/kprior/minibatch.py (the objective and its scaling) and jaxlab/experiments/kprior_deep.py.
Produces results.json and accuracy_vs_memory.png in the workdir. Measured: 11 trainer runs per seed, about 40 min
per seed on 2 CPU cores shared with other jobs (1,000-step runs 125-230 s each); results in benchmarks/README.md
(K-priors, MNIST deep networks).
"""

from jaxlab.config import EVAL_FINAL_ONLY
from jaxlab.experiments import base_config


def get_config():
    config = base_config("kprior_deep")
    config.data.source = "mnist"
    config.data.seed = 0                 # the fixed training subset
    config.model.name = "lenet"
    config.training.batch_size = 128
    config.training.num_train_steps = 1000  # every run: base, adaptation, retraining
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 0.0  # the L2 is the objective's delta (kprior.delta)
    config.schedule.name = "cosine"
    config.eval_every_steps = EVAL_FINAL_ONLY  # evaluate once, after the last step
    config.checkpoint_every_steps = 10**9
    config.log_every_steps = 250
    config.keep_checkpoints = 1
    k = config.kprior
    k.tasks = ("add_data",)
    k.methods = ("kprior", "replay", "finetune", "batch")
    k.memory_fractions = (1.0, 0.2, 0.05, 0.01)
    k.seeds = (0, 1, 2)
    k.memory_selection = "lambda"
    k.delta = 1.0
    k.add_digit = 9
    k.subset_fraction = 0.2
    return config
