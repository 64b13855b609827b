"""K-priors on USPS odd-vs-even with a ReLU MLP: the paper's USPS MLP figure.

    JAXLAB_DATA_DIR=/path/to/datasets python -m jaxlab.main --config=configs/kprior/usps_mlp.py \
        --workdir=workdirs/kprior_usps_mlp   # ESL zip.train.gz + zip.test.gz in its usps/ (or --config.data.dir=...)

Tasks: add_data (base digits 0-8, new: the 9s), remove_data (the 8s; tested on the other digits),
change_regulariser delta 5 -> 10, change_model 256-100-100-2 -> 256-100-2 (distillation on the memory, fresh
init); base net 256-100-2, delta 50 (official settings), full-batch Adam lr 0.005, 1000 steps, objective divided
by (N_new + |M|). K-prior, Replay, Batch (= full retraining) x memory 100 .. 2% x 3 seeds (the seed draws the
initialisation). Pixels: ESL [-1, 1] mapped to [0, 1] (see usps_linear.py). The memory is gathered per fraction
(vectorize_fractions=False: small memories cost little) and the seeds are vmapped.
Produces results.json and accuracy_vs_memory.png. Measured: the full sweep (3 seeds x 7 fractions x 4 tasks, 252
records) in 6,207 s (103 min) on 2 CPU cores shared with 1-2 other jobs (benchmarks/README.md, "K-priors",
results/kprior_usps_mlp.json); change_model (the 256-100-100-2 base and the distillation solves) is 3/5 of it.
"""

from jaxlab.experiments import base_config


def get_config():
    config = base_config("kprior_adaptation")
    config.data.source = "usps"
    config.model.name = "mlp"
    config.model.hidden_sizes = (100,)
    k = config.kprior
    k.protocol = "usps_odd_even"
    k.delta = 50.0
    k.change_regulariser_deltas = (5.0, 10.0)
    k.change_model_hidden_sizes = (100, 100)
    k.add_digit = 9
    k.remove_digit = 8
    k.usps_range = (0.0, 1.0)
    k.solver = "adam"
    k.learning_rate = 0.005
    k.steps = 1000
    k.vectorize_fractions = False
    return config
