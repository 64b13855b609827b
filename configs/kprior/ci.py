"""Tiny K-prior run for CI and smoke tests: every task and method, 3 memory sizes, 2 seeds, few solver steps.

    python -m jaxlab.main --config=configs/kprior/ci.py --workdir=/tmp/kprior_ci \
        --config.data.dir=/path/to/folder   # a SMALL svmlight pair tiny + tiny_test there (or in its tiny/)

The Adult protocol (adult.py) for a few dozen features: every task and method, memory 100/50/10%, 2 seeds, a 50%
subset, exact Newton solves (dense Hessian: keep the degree-2 feature count small; for a7a use adult.py).
tests/test_kprior_experiments.py runs it on a generated svmlight pair (600 / 300 points, 12 binary features)
written to a temporary folder: ~25 s on 2 CPU cores, nearly all of it compilation.
Produces results.json and accuracy_vs_memory.png.
"""

from jaxlab.experiments import base_config


def get_config():
    config = base_config("kprior_adaptation")
    config.data.source = "svmlight"
    config.data.name = "tiny"
    config.model.name = "glm"
    config.model.polynomial_degree = 1
    k = config.kprior
    k.protocol = "adult"
    k.memory_fractions = (1.0, 0.5, 0.1)
    k.seeds = (0, 1)
    k.delta = 5.0
    k.change_regulariser_deltas = (50.0, 5.0)
    k.change_model_degree = 2
    k.subset_fraction = 0.5
    k.remove_count = 10
    k.solver = "newton"
    k.steps = 30
    k.tol = 1e-6
    return config
