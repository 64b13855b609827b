"""K-priors on USPS odd-vs-even, linear softmax GLM: the paper's USPS linear figure.

    JAXLAB_DATA_DIR=/path/to/datasets python -m jaxlab.main --config=configs/kprior/usps_linear.py \
        --workdir=workdirs/kprior_usps_linear   # ESL zip.train.gz + zip.test.gz in its usps/ (or --config.data.dir=...)

All four tasks x K-prior, Replay, Batch (= full retraining) x memory 100 .. 2% x 3 seeds, official settings:
label = digit mod 2, bias + 256 pixel features, delta 50, change_regulariser 50 -> 5, change_model degree 2 -> 1
(33,153 features for the base model), add_data: base = digits 0-8, new = the 9s; remove_data: remove the 8s, test
on the other digits. The USPS scaling: the ESL copy's pixels are in [-1, 1]; they are mapped to [0, 1]
(kprior.usps_range; torchvision's ToTensor range, the closest to the official code, whose own scaling is unknown:
its USPS path cannot run as released). Nothing here is random (the data splits are fixed, GLM init is zero), so the 3
seeds agree (unless kprior.memory_selection="random"); dedupe_seeds=True solves each task once. Solver: optax L-BFGS
(zoom line search, <= 300 steps as the official code's 300 fixed-step L-BFGS steps) in float64: in float32 the
K-prior solves over small memories stall (their value, dominated by weight terms such as -delta <w*, w> / |M|,
rounds too coarsely for the line search near the optimum: 300 steps at ||grad|| ~1e-5 against 35-46 steps to 1e-6
in float64, same accuracies; benchmarks/README.md, "K-priors").
Produces results.json and accuracy_vs_memory.png. Cost, measured on 2 CPU cores shared with other jobs (load 13-17):
add_data 7.5 min, remove_data 3 min, change_regulariser 3.5 min, change_model 13.5 min (781 s of it the degree-2 base
model on 7,291 x 33,153 float64 features, ~2 GB); 28 min in all.
"""

from jaxlab.experiments import base_config


def get_config():
    config = base_config("kprior_adaptation")
    config.data.source = "usps"
    config.model.name = "glm"
    config.model.polynomial_degree = 1
    k = config.kprior
    k.protocol = "usps_odd_even"
    k.delta = 50.0
    k.change_regulariser_deltas = (50.0, 5.0)
    k.change_model_degree = 2
    k.add_digit = 9
    k.remove_digit = 8
    k.usps_range = (0.0, 1.0)
    k.solver = "lbfgs"
    k.float64 = True          # float32 L-BFGS stalls on the K-prior objectives (see the docstring)
    k.steps = 300
    k.history = 100
    k.tol = 1e-6
    k.vectorize_fractions = True
    k.dedupe_seeds = True  # the degree-2 base model (~1 GB of features) once, not 3 times
    return config
