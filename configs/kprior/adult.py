"""K-priors on UCI Adult (LIBSVM a7a), linear softmax GLM: the paper's Adult figure.

    JAXLAB_DATA_DIR=/path/to/datasets python -m jaxlab.main --config=configs/kprior/adult.py \
        --workdir=workdirs/kprior_adult     # a7a + a7a_test in its a7a/ (or --config.data.dir=/path/to/a7a)

All four tasks (add_data, remove_data, change_regulariser 50 -> 5, change_model degree 2 -> 1) x K-prior,
Replay and Batch (= full retraining, also Replay with 100% memory) x memory 100, 50, 20, 10, 7, 5, 2% x 3 seeds,
with the official code's settings: bias + 123 features, 2-output softmax, zero init, delta 5, a random 1% subset
(161 points, drawn from the seed) for add / change tasks, all 16,100 points for remove_data (the 100
highest-lambda points removed; no randomness there: the 3 seeds agree). Solver: damped Newton with the GLM's
IRLS Hessian (`jaxlab.kprior.glm_hessian`; <= 1000 steps, stops at ||grad|| <= 1e-6 of the objective /
(N_new + |M|) or at float32's rounding floor, usually in under 10 steps), float32; the degree-2 base model of
change_model (15,500 params, too many for a dense Hessian) with L-BFGS. The official code runs 1000 fixed-step
L-BFGS steps; `--config.kprior.solver=lbfgs` gives optax L-BFGS (zoom line search, history 100), same accuracies
to within a few points at 2% memory on Replay (benchmarks/README.md).
Produces results.json (task, method, memory_fraction, seed, test_accuracy, grad_error) and accuracy_vs_memory.png.
Cost: about 45 s on 2 CPU cores, mostly compilation (benchmarks/README.md, "K-priors", and benchmarks/kprior.py,
which times it against L-BFGS in the same process); the note reports ~19 CPU-minutes for the official code.
"""

from jaxlab.experiments import base_config


def get_config():
    config = base_config("kprior_adaptation")
    config.data.source = "svmlight"
    config.data.name = "a7a"
    config.model.name = "glm"
    config.model.polynomial_degree = 1
    k = config.kprior
    k.protocol = "adult"
    k.delta = 5.0
    k.change_regulariser_deltas = (50.0, 5.0)
    k.change_model_degree = 2
    k.subset_fraction = 0.01
    k.add_fraction = 0.1
    k.remove_count = 100
    k.solver = "newton"
    k.steps = 1000
    k.history = 100
    k.tol = 1e-6
    k.vectorize_fractions = True
    return config
