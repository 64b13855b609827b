"""K-priors on USPS odd-vs-even with a ReLU MLP: the paper's USPS MLP figure.

    python -m jaxlab.main --config=configs/kprior/usps_mlp.py --workdir=workdirs/kprior_usps_mlp \
        --config.data.dir=/path/to/usps     # ESL zip.train.gz + zip.test.gz; defaults to ../shared/data/usps

Tasks: add_data (base digits 0-8, new: the 9s), remove_data (the 8s; tested on the other digits),
change_regularizer delta 5 -> 10, change_model 256-100-100-2 -> 256-100-2 (distillation on the memory, fresh
init); base net 256-100-2, delta 50 (official settings), full-batch Adam lr 0.005, 1000 steps, objective divided
by (N_new + |M|). K-prior, Replay, Batch (= full retraining) x memory 100 .. 2% x 3 seeds (the seed draws the
initialisation). Pixels: ESL [-1, 1] mapped to [0, 1] (see usps_linear.py). The memory is gathered per fraction
(vectorize_fractions=False: small memories cost little) and the seeds are vmapped.
Produces results.json and accuracy_vs_memory.png. Cost: every 1000-step Adam solve on all 7,291 points (each base
model, each Batch) took 47-160 s on 2 CPU cores shared with other jobs (load 13-27); a memory costs in proportion
to its size. Measured: 1 seed x memory 10% and 2% x all four tasks, 1,416 s (24 min; benchmarks/README.md,
"K-priors", results/kprior_usps_mlp.json):
    --config.kprior.seeds="(0,)" --config.kprior.memory_fractions="(0.1,0.02)"
The full sweep (3 seeds x 7 fractions: ~18 full-data solves' worth per task) would take ~1-3 hours at those
rates (an estimate, not run): run it on an accelerator.
"""

import os

from jaxlab.config import base_config

_SHARED = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"))


def get_config():
    config = base_config()
    config.experiment = "kprior_adaptation"
    config.data.source = "usps"
    config.data.dir = os.path.join(_SHARED, "usps") if os.path.isdir(os.path.join(_SHARED, "usps")) else ""
    config.model.name = "mlp"
    config.model.hidden_sizes = (100,)
    k = config.kprior
    k.protocol = "usps_odd_even"
    k.delta = 50.0
    k.change_regularizer_deltas = (5.0, 10.0)
    k.change_model_hidden_sizes = (100, 100)
    k.add_digit = 9
    k.remove_digit = 8
    k.usps_range = (0.0, 1.0)
    k.solver = "adam"
    k.learning_rate = 0.005
    k.steps = 1000
    k.vectorize_fractions = False
    return config
