"""The K-prior paper's adaptation experiments (Khan & Swaroop, NeurIPS 2021), full batch and vectorised.

    python -m jaxlab.main --config=configs/kprior/adult.py --workdir=workdirs/kprior_adult

Fragment: config.kprior. For each task in config.kprior.tasks (add_data, remove_data, change_regulariser,
change_model), each seed and each memory fraction, a base model w* is trained on the past data D, a memory M of
`fraction` of D is chosen (class-balanced top-lambda, `jaxlab.kprior.memory`), and the model is adapted by each
method:

    kprior   the task's K-prior objective (jaxlab.kprior.objectives): soft labels of w* on M
    replay   the same memory points with their TRUE labels (+ new data, - removed data)
    batch    full retraining on all the data the task says (D u D+, D \\ D-, new delta, new model).
             This is also Replay with 100% memory (the same objective); it does not depend on the
             fraction, is solved once per seed and recorded under every fraction.

Protocols (config.kprior.protocol; the official code's settings, Khan & Swaroop 2021):

    adult          binary labels as loaded. add_data / change_* use a random subset of
                   `subset_fraction` of the train split drawn from the seed (the official code:
                   1%); add_data: its first (1 - add_fraction) is D, the rest D+. remove_data uses
                   the whole train split and removes the `remove_count` highest-lambda points
                   (class-balanced).
    usps_odd_even  label = digit mod 2. add_data: D = digits != add_digit, D+ = add_digit;
                   remove_data: D- = remove_digit, tested on the other digits; the others use all.

Memory: |M| = max(#classes, int(fraction |D|)) points. For remove_data the memory is D- plus
int(fraction |D \\ D-|) points of the retained data (the official USPS rule; for Adult the official
code takes int(fraction N) + 100 top-lambda points of all D, which include D-: nearly the same).
Replay uses M \\ D-.

Vectorisation (config.kprior.vectorize_fractions): every problem is an `AdaptationProblem` (the memory as 0/1
weights over padded rows, `jaxlab.kprior.adaptation_objective`).
  True  (GLMs): the memory is a 0/1 weight per past point (a fixed-size padded memory, |D| wide),
        so every (seed, fraction) problem has the same shapes: one compiled solver, vmapped over
        seeds x fractions; the past inputs are shared by all fractions of a seed (in_axes=None),
        only the masks are batched. Cost: every fraction pays for |D| points (cheap for GLMs).
  False (MLPs): per fraction, the memory points are gathered (padded across seeds with weight 0)
        and the solver is vmapped over seeds only: small fractions cost little, one compile
        per fraction.
Base models are vmapped over seeds. With config.kprior.dedupe_seeds, where the seed cannot change the problem
(`seed_dependent`: e.g. USPS GLMs, Adult remove_data) one seed is solved and its records copied to the others
(spread 0). Off by default: on Adult remove_data the 3 identical seeds vmapped took 42 s against 62-123 s for the
single seed (float32 L-BFGS iteration counts depend on rounding, which depends on the batch shape).
The solvers: `jaxlab.kprior.minimize` (optax L-BFGS with zoom line search, or damped Newton with the IRLS
Hessian `glm_hessian`) for GLMs, full-batch Adam (`jaxlab.kprior.adam`) for networks; config.kprior.base_solver
may differ for the base models. Its default '' is kprior.solver, except that a base GLM too wide for Newton's dense
Hessian (over NEWTON_MAX_PARAMS, e.g. the degree-2 base of change_model) is solved with L-BFGS; an
explicit newton there is a ConfigError before compiling. Objectives are divided by (N_new + |M|) as in the
official code (a rescaling, same minimiser).

Precision: float32 unless config.kprior.float64 (x64 enabled for the run and restored after). In
float32, L-BFGS may not reach a tight tol on K-prior objectives over small memories: their value is
dominated by weight terms (e.g. -delta <w*, w> / |M| for a change of regulariser) whose rounding hides
the last decreases from the line search, which then fails step after step until `steps` (measured on
USPS change_regulariser: 300 steps, ||grad|| stuck at 1e-5 to 4e-5, against 35-46 steps to 1e-6 in
float64, same accuracies). Remedies: float64, or newton (gradients only; its dense Hessian costs
N d^2 C^2 per step, so it pays on small problems).

grad_error: at the method's solution w, ||grad J_method(w) - grad J_retrain(w)|| divided by
||grad J_retrain(w0)|| with w0 the adaptation's starting point (w*, or the fresh init for a change
of model). Relative to the gradient at w itself it would be ~1 by construction (grad J_method(w)
~ 0 at its own minimiser); this normalisation reads as "the fraction of the retraining gradient
left unexplained", 0 for exact recovery. grad_error_abs is the numerator.

Outputs in workdir: results.json (list of records: task, method, memory_fraction, seed,
test_accuracy, grad_error, grad_error_abs, memory_size, solver_steps: the steps the solve took,
kprior.steps when it stopped at the cap) and accuracy_vs_memory.png (`jaxlab.experiments.reports`).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxlab.data import all_examples, load_dataset
from jaxlab.errors import ConfigError, require
from jaxlab.experiments.reports import plot_accuracy_vs_memory
from jaxlab.kprior import (
    AdaptationProblem,
    adam,
    adaptation_objective,
    glm_hessian,
    gradient_error,
    linear,
    memory_scores,
    minimize,
    polynomial_projection,
    select_memory,
)
from jaxlab.models.glm import polynomial_features
from jaxlab.models.mlp import MLP
from jaxlab.train import validate as validate_training
from jaxlab.train.metrics import write_json

TASKS = ("add_data", "remove_data", "change_regulariser", "change_model")
METHODS = ("kprior", "replay", "batch")
PROTOCOLS = ("adult", "usps_odd_even")
SOLVERS = ("lbfgs", "newton", "adam")
SELECTIONS = ("lambda", "random")
NEWTON_MAX_PARAMS = 4096  # newton forms a dense (params x params) Hessian per vmapped problem
MODELS = ("glm", "mlp")
NUM_CLASSES = 2  # the experiments are binary


def extend_config(config) -> None:
    """config.kprior: the sweep (tasks x methods x memory fractions x seeds), the protocol and the solvers."""
    config.kprior = ml_collections.ConfigDict(dict(
        protocol="adult",         # adult (random subset, top-lambda removal) | usps_odd_even (digit splits)
        tasks=TASKS,
        methods=METHODS,          # batch = full retraining (= Replay with 100% memory)
        memory_fractions=(1.0, 0.5, 0.2, 0.1, 0.07, 0.05, 0.02),  # of the past data
        seeds=(0, 1, 2),
        memory_selection="lambda",  # lambda (class-balanced top h'(f)) | random (class-balanced)
        delta=5.0,                # L2 strength of the base model (and of the K-prior's weight term)
        change_regulariser_deltas=(50.0, 5.0),  # change_regulariser: delta old -> new
        change_model_degree=2,    # change_model, GLM: base degree -> model.polynomial_degree
        change_model_hidden_sizes=(100, 100),   # change_model, MLP: base widths -> model.hidden_sizes
        subset_fraction=0.01,     # adult: random subset of the train split for add_data / change_*
        add_fraction=0.1,         # adult add_data: the last 10% of the subset is the new data
        remove_count=100,         # adult remove_data: the highest-lambda points removed (class-balanced)
        add_digit=9,              # usps_odd_even add_data: new data = this digit
        remove_digit=8,           # usps_odd_even remove_data: removed (and left out of the test set)
        usps_range=(0.0, 1.0),    # usps source: ESL pixels [-1, 1] mapped to this range
        solver="lbfgs",           # lbfgs | newton (GLMs) | adam (networks)
        base_solver="",           # the base models' solver ("" = solver; lbfgs where a GLM is too wide for newton)
        steps=1000,               # max L-BFGS / Newton steps, or Adam steps
        tol=1e-6,                 # L-BFGS / Newton: stop at ||grad|| <= tol (objective / (N_new + |M|))
        history=100,              # L-BFGS memory
        learning_rate=0.005,      # Adam
        vectorize_fractions=True,  # True: padded 0/1 memory, vmapped over seeds x fractions (GLMs)
        float64=False,            # x64 for the whole experiment
        dedupe_seeds=False,       # solve seed-independent problems once and copy the records
    ))


class Solver(NamedTuple):
    """Hashable solver settings (a static jit argument)."""

    name: str
    steps: int
    tol: float
    history: int
    learning_rate: float


# ------------------------------------------------------------------------------------ validation


def check_kprior_config(config) -> None:
    """ConfigError naming the field for any invalid config.kprior value (before loading or compiling)."""
    k = config.kprior
    require(k.protocol in PROTOCOLS, "kprior.protocol", f"{k.protocol!r} is not one of {PROTOCOLS}")
    require(config.model.name in MODELS, "model.name",
            f"the K-prior experiments run {MODELS}, got {config.model.name!r}")
    require(len(k.tasks) > 0 and all(t in TASKS for t in k.tasks), "kprior.tasks",
            f"must be a non-empty subset of {TASKS}, got {tuple(k.tasks)}")
    require(len(set(k.tasks)) == len(k.tasks), "kprior.tasks", "has duplicates")
    require(len(k.methods) > 0 and all(m in METHODS for m in k.methods), "kprior.methods",
            f"must be a non-empty subset of {METHODS}, got {tuple(k.methods)}")
    require(len(k.memory_fractions) > 0 and all(0 < f <= 1 for f in k.memory_fractions), "kprior.memory_fractions",
            f"must be fractions in (0, 1], got {tuple(k.memory_fractions)}")
    require(len(set(k.memory_fractions)) == len(k.memory_fractions), "kprior.memory_fractions", "has duplicates")
    require(len(k.seeds) > 0 and all(isinstance(s, int) and s >= 0 for s in k.seeds), "kprior.seeds",
            f"must be non-negative ints, got {tuple(k.seeds)}")
    require(len(set(k.seeds)) == len(k.seeds), "kprior.seeds", "has duplicates")
    require(k.delta > 0, "kprior.delta", f"must be positive, got {k.delta}")
    require(len(k.change_regulariser_deltas) == 2 and all(d > 0 for d in k.change_regulariser_deltas),
            "kprior.change_regulariser_deltas", f"must be (old, new) > 0, got {tuple(k.change_regulariser_deltas)}")
    require(k.solver in SOLVERS, "kprior.solver", f"{k.solver!r} is not one of {SOLVERS}")
    require(config.model.name == "mlp" or k.solver != "adam", "kprior.solver",
            "adam is for networks; use lbfgs or newton for a GLM")
    require(config.model.name == "glm" or k.solver == "adam", "kprior.solver",
            "networks are trained with adam (lbfgs/newton are for convex GLM objectives)")
    base_solver = k.base_solver or k.solver
    require(k.base_solver in ("", *SOLVERS) and (base_solver == "adam") == (config.model.name == "mlp"),
            "kprior.base_solver", f"must be '' (= kprior.solver) or a solver for {config.model.name!r} ("
            f"{'adam' if config.model.name == 'mlp' else 'lbfgs, newton'}), got {k.base_solver!r}")
    require(k.steps > 0, "kprior.steps", f"must be positive, got {k.steps}")
    require(k.tol >= 0, "kprior.tol", f"must be >= 0, got {k.tol}")
    require(k.history > 0, "kprior.history", f"must be positive, got {k.history}")
    require(k.learning_rate > 0, "kprior.learning_rate", f"must be positive, got {k.learning_rate}")
    require(0 < k.subset_fraction <= 1, "kprior.subset_fraction", f"must be in (0, 1], got {k.subset_fraction}")
    require(0 < k.add_fraction < 1, "kprior.add_fraction", f"must be in (0, 1), got {k.add_fraction}")
    require(k.remove_count > 0, "kprior.remove_count", f"must be positive, got {k.remove_count}")
    require(k.memory_selection in SELECTIONS, "kprior.memory_selection",
            f"{k.memory_selection!r} is not one of {SELECTIONS}")
    require(config.model.polynomial_degree >= 1, "model.polynomial_degree", "must be >= 1")
    require(k.change_model_degree > config.model.polynomial_degree or config.model.name != "glm",
            "kprior.change_model_degree",
            f"the base GLM's degree ({k.change_model_degree}) must exceed the new model's "
            f"(model.polynomial_degree={config.model.polynomial_degree})")
    require(all(h > 0 for h in k.change_model_hidden_sizes) and len(k.change_model_hidden_sizes) > 0,
            "kprior.change_model_hidden_sizes", "must be positive layer widths")
    require(len(k.usps_range) == 2 and k.usps_range[0] < k.usps_range[1], "kprior.usps_range",
            f"must be (low, high) with low < high, got {tuple(k.usps_range)}")


def validate(config, *, num_devices: int, process_count: int = 1) -> None:
    """config.kprior's values, then the trainer's shared fields and the data source's (jaxlab.train.validate)."""
    check_kprior_config(config)
    validate_training(config, num_devices=num_devices, process_count=process_count)


# ------------------------------------------------------------------------------------ solving, vmapped


def _solve_one(start, problem: AdaptationProblem, apply_fn, kind: str, solver: Solver):
    """(solution, steps taken)."""
    scale = problem.num_new + jnp.sum(problem.memory_weight * (1 - problem.memory_removed))
    if solver.name == "adam":
        return (adam(lambda w: adaptation_objective(w, problem, apply_fn, kind) / scale, start, solver.steps,
                     solver.learning_rate), jnp.asarray(solver.steps))
    hessian = glm_hessian if apply_fn is linear and solver.name == "newton" else None
    solution, info = minimize(adaptation_objective, start, problem, apply_fn, kind, method=solver.name,
                              tol=solver.tol, max_steps=solver.steps, history=solver.history, scale=scale,
                              hessian=hessian, with_info=True)
    return solution, info.steps


def _grad_error_one(solution, start, problem, reference, apply_fn, kind: str):
    objective = functools.partial(adaptation_objective, problem=problem, apply_fn=apply_fn, kind=kind)
    retrain = functools.partial(adaptation_objective, problem=reference, apply_fn=apply_fn, kind="replay")
    absolute = gradient_error(objective, retrain, solution).absolute
    return absolute, absolute / optax.tree.norm(jax.grad(retrain)(start))


def _accuracy_one(params, apply_fn, inputs, labels):
    return jnp.mean(jnp.argmax(apply_fn(params, inputs), axis=-1) == labels)


@functools.partial(jax.jit, static_argnames=("apply_fn", "kind", "solver", "batched"))
def _solve_grid(starts, problems: AdaptationProblem, reference: AdaptationProblem, test_inputs, test_labels,
                apply_fn, kind, solver, batched):
    """vmap over seeds (axis 0 of every leaf) and then over fractions (the fields named in `batched`).

    Returns (params, test accuracy, grad error abs, grad error rel, solver steps), each (seeds, fractions, ...).
    """
    def one(start, problem, reference):
        solution, steps = _solve_one(start, problem, apply_fn, kind, solver)
        absolute, relative = _grad_error_one(solution, start, problem, reference, apply_fn, kind)
        return solution, _accuracy_one(solution, apply_fn, test_inputs, test_labels), absolute, relative, steps

    over_fractions = jax.vmap(one, in_axes=(None, problems.axes(batched), None))
    return jax.vmap(over_fractions)(starts, problems, reference)


@functools.partial(jax.jit, static_argnames=("apply_fn", "solver"))
def _solve_seeds(starts, problems: AdaptationProblem, test_inputs, test_labels, apply_fn, solver):
    """Retraining (replay on all of the data) vmapped over seeds: (params, accuracy, solver steps)."""
    def one(start, problem):
        solution, steps = _solve_one(start, problem, apply_fn, "replay", solver)
        return solution, _accuracy_one(solution, apply_fn, test_inputs, test_labels), steps

    return jax.vmap(one)(starts, problems)


# ------------------------------------------------------------------------------------ models


@functools.lru_cache(maxsize=None)
def _mlp_apply(hidden_sizes: tuple[int, ...], num_classes: int) -> Callable:
    return MLP(num_classes, hidden_sizes).apply  # cached: the same object (static jit argument) every time


class Model(NamedTuple):
    apply: Callable
    inputs: Callable[[np.ndarray], np.ndarray]      # raw (N, ...) -> model inputs
    init: Callable[[int, int], Any]                 # (seed, input width) -> params (numpy)


def glm_model(degree: int, num_classes: int, dtype) -> Model:
    """The GLM `linear` on polynomial features of the given degree, zero init."""
    def inputs(x):
        x = np.asarray(x, dtype).reshape(len(x), -1)
        return np.asarray(polynomial_features(jnp.asarray(x), degree))

    width = lambda d: math.comb(d + degree, degree)  # noqa: E731
    return Model(linear, inputs, lambda seed, d: np.zeros((width(d), num_classes), dtype))


def mlp_model(hidden_sizes, num_classes: int, dtype) -> Model:
    """A ReLU MLP (`jaxlab.models.mlp.MLP`) on flattened inputs, Flax's default init drawn with numpy."""
    sizes = tuple(int(h) for h in hidden_sizes)

    def init(seed, d):
        """Flax Dense default init (lecun normal kernels, zero biases) drawn with numpy."""
        rng = np.random.default_rng([seed, len(sizes)])
        widths = (d, *sizes, num_classes)
        return {"params": {f"Dense_{i}": {"kernel": (rng.normal(size=(a, b)) / np.sqrt(a)).astype(dtype),
                                          "bias": np.zeros(b, dtype)}
                           for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))}}

    return Model(_mlp_apply(sizes, num_classes), lambda x: np.asarray(x, dtype).reshape(len(x), -1), init)


# ------------------------------------------------------------------------------------ data


def _arrays(dataset, config, dtype):
    """(x_train, y_train, x_test, y_test, digit_train, digit_test) as numpy; labels binary."""
    train, test = all_examples(dataset.train), all_examples(dataset.test)
    pixels = train["image"].dtype == np.uint8
    x_train, x_test = (np.asarray(s["image"], np.float64).reshape(len(s["label"]), -1) for s in (train, test))
    if pixels:  # uint8 images -> [0, 1]
        x_train, x_test = x_train / 255.0, x_test / 255.0
    k = config.kprior
    if k.protocol == "usps_odd_even":
        if config.data.source == "usps":  # ESL pixels in [-1, 1] -> usps_range
            low, high = k.usps_range
            x_train, x_test = (low + (x + 1.0) * (high - low) / 2.0 for x in (x_train, x_test))
        digits = train["label"], test["label"]
        labels = digits[0] % 2, digits[1] % 2
    else:
        digits = None, None
        labels = train["label"], test["label"]
    return (x_train.astype(dtype), np.asarray(labels[0]), x_test.astype(dtype), np.asarray(labels[1]), *digits)


def _split(task: str, seed: int, arrays, config) -> dict:
    """Past data D, new data D+ (add_data), removed candidates and the test set, for one seed (numpy)."""
    x, y, x_test, y_test, digit, digit_test = arrays
    k = config.kprior
    split = {"x_test": x_test, "y_test": y_test}
    if k.protocol == "adult":
        if task != "remove_data":
            order = np.random.default_rng(seed).permutation(len(x))[:max(2, int(len(x) * k.subset_fraction))]
            x, y = x[order], y[order]
        if task == "add_data":
            n_base = int(len(x) * (1 - k.add_fraction))
            split.update(x_new=x[n_base:], y_new=y[n_base:])
            x, y = x[:n_base], y[:n_base]
    else:
        if task == "add_data":
            split.update(x_new=x[digit == k.add_digit], y_new=y[digit == k.add_digit])
            x, y = x[digit != k.add_digit], y[digit != k.add_digit]
        if task == "remove_data":
            split["removed"] = digit == k.remove_digit
            keep = digit_test != k.remove_digit
            split.update(x_test=x_test[keep], y_test=y_test[keep])
    split.update(x=x, y=y)
    return split


def _memory(labels, scores, removed, fraction: float, num_classes: int, selection: str, seed: int) -> np.ndarray:
    """Sorted memory indices into the past data: D- plus a class-balanced selection of the rest."""
    retained = np.flatnonzero(~removed)
    size = max(num_classes, int(fraction * len(retained)))
    chosen = retained[select_memory(labels[retained], size, selection, scores=scores[retained],
                                    num_classes=num_classes, seed=seed)]
    return np.union1d(chosen, np.flatnonzero(removed))


def _stack(trees):
    return jax.tree.map(lambda *leaves: np.stack(leaves), *trees)


def _one_hot(labels, num_classes, dtype):
    return np.eye(num_classes, dtype=dtype)[labels]


# ------------------------------------------------------------------------------------ one task


def seed_dependent(task: str, config) -> bool:
    """Whether the seed changes the problem: the random subset (adult, except remove_data), a random memory,
    or a network's initialisation. Otherwise every seed is the same problem: solved once, records copied."""
    k = config.kprior
    return ((k.protocol == "adult" and task != "remove_data") or k.memory_selection == "random"
            or config.model.name != "glm")


def _check_newton_sizes(config, width: int) -> None:
    """ConfigError (after loading, before compiling) when newton would form a Hessian over NEWTON_MAX_PARAMS wide."""
    k = config.kprior
    if config.model.name != "glm":
        return
    new = 2 * math.comb(width + config.model.polynomial_degree, config.model.polynomial_degree)
    base = 2 * math.comb(width + k.change_model_degree, k.change_model_degree) if "change_model" in k.tasks else new
    for field, name, params in (("kprior.solver", k.solver, new), ("kprior.base_solver", k.base_solver, base)):
        require(name != "newton" or params <= NEWTON_MAX_PARAMS, field,
                f"newton needs a dense {params} x {params} Hessian per problem (more than NEWTON_MAX_PARAMS="
                f"{NEWTON_MAX_PARAMS} params"
                + (f"; the degree-{k.change_model_degree} base model of change_model"
                   if params == base and base != new else "") + "): use lbfgs")


def _steps_note(steps, solver: Solver) -> str:
    """'newton steps <= 7' (and how many solves stopped at the cap: not converged to kprior.tol)."""
    steps = np.asarray(steps)
    capped = int(np.sum(steps >= solver.steps))
    return (f"{solver.name} steps <= {int(steps.max())}"
            + (f" ({capped} of {steps.size} stopped at kprior.steps={solver.steps})"
               if capped and solver.name != "adam" else ""))


def _run_task(task: str, arrays, config, dtype, solvers: tuple[Solver, Solver], log) -> list[dict]:
    """solvers: (the adaptation and Batch solver, the base models' solver)."""
    k = config.kprior
    if not seed_dependent(task, config) and len(k.seeds) > 1 and k.dedupe_seeds:
        log(f"{task}: the seed changes nothing here (fixed split, zero init, lambda memory): "
            f"solved for seed {k.seeds[0]}, records copied to seeds {tuple(k.seeds[1:])}")
        records = _run_task_seeds(task, arrays, config, (k.seeds[0],), dtype, solvers, log)
        return [dict(r, seed=int(seed)) for seed in k.seeds for r in records]
    return _run_task_seeds(task, arrays, config, tuple(k.seeds), dtype, solvers, log)


def _run_task_seeds(task: str, arrays, config, seeds, dtype, solvers, log) -> list[dict]:
    k = config.kprior
    solver, base_solver = solvers
    fractions = tuple(float(f) for f in k.memory_fractions)
    num_classes = NUM_CLASSES
    glm = config.model.name == "glm"
    if glm:
        new_model = glm_model(config.model.polynomial_degree, num_classes, dtype)
        base_model = glm_model(k.change_model_degree, num_classes, dtype) if task == "change_model" else new_model
    else:
        new_model = mlp_model(config.model.hidden_sizes, num_classes, dtype)
        base_model = (mlp_model(k.change_model_hidden_sizes, num_classes, dtype) if task == "change_model"
                      else new_model)
    delta = k.change_regulariser_deltas[0] if task == "change_regulariser" else k.delta
    new_delta = k.change_regulariser_deltas[1] if task == "change_regulariser" else delta
    per_seed = lambda value: np.broadcast_to(np.asarray(value, dtype), (len(seeds),))  # noqa: E731

    # --- splits and base models (vmapped over seeds)
    start_time = time.perf_counter()
    splits = [_split(task, seed, arrays, config) for seed in seeds]
    n_past, width = splits[0]["x"].shape
    base_inputs = np.stack([base_model.inputs(s["x"]) for s in splits])
    targets = np.stack([_one_hot(s["y"], num_classes, dtype) for s in splits])
    no_removed = np.zeros((len(seeds), n_past), dtype)
    base_problems = AdaptationProblem(
        memory_inputs=base_inputs, memory_targets=targets, memory_soft=targets,
        memory_weight=np.ones((len(seeds), n_past), dtype), memory_removed=no_removed,
        delta=per_seed(delta), new_delta=per_seed(delta), num_new=per_seed(0))
    base_starts = _stack([base_model.init(seed, width) for seed in seeds])
    test_inputs = new_model.inputs(splits[0]["x_test"])
    test_labels = splits[0]["y_test"]
    cheap_base_test = base_model is new_model  # the base model of a change of model: no test pass (degree-2 features)
    base_test = test_inputs if cheap_base_test else base_model.inputs(splits[0]["x_test"][:1])
    if not k.base_solver and base_solver.name == "newton" and base_starts[0].size > NEWTON_MAX_PARAMS:
        base_solver = base_solver._replace(name="lbfgs")
        log(f"{task}: the base model has {base_starts[0].size} params, too many for newton's dense Hessian "
            f"(NEWTON_MAX_PARAMS={NEWTON_MAX_PARAMS}): solved with lbfgs")
    w_star, base_accuracy, base_steps = _solve_seeds(base_starts, base_problems, base_test,
                                                     test_labels[:len(base_test)], base_model.apply, base_solver)
    base_outputs = jax.vmap(base_model.apply)(w_star, base_inputs)
    soft = np.asarray(jax.nn.softmax(base_outputs), dtype)
    scores = [memory_scores(o) for o in np.asarray(base_outputs)]
    log(f"{task}: base models ({len(seeds)} seeds, {n_past} past points"
        + (f", test accuracy {np.mean(base_accuracy):.4f}" if cheap_base_test else "")
        + f") {time.perf_counter() - start_time:.1f}s, {_steps_note(base_steps, base_solver)}")
    del base_inputs, base_problems

    # --- removed points, memories, the adaptation problems
    removed = []
    for s, score in zip(splits, scores):
        if task != "remove_data":
            removed.append(np.zeros(n_past, bool))
        elif "removed" in s:
            removed.append(s["removed"])
        else:  # adult: the remove_count highest-lambda points, class-balanced
            flags = np.zeros(n_past, bool)
            flags[select_memory(s["y"], k.remove_count, "lambda", scores=score, num_classes=num_classes)] = True
            removed.append(flags)
    memories = [[_memory(s["y"], score, r, f, num_classes, k.memory_selection, seed) for f in fractions]
                for s, score, r, seed in zip(splits, scores, removed, seeds)]
    inputs = np.stack([new_model.inputs(s["x"]) for s in splits])
    removed = np.stack(removed).astype(dtype)
    new_data = {}
    if task == "add_data":
        new_data = dict(new_inputs=np.stack([new_model.inputs(s["x_new"]) for s in splits]),
                        new_targets=np.stack([_one_hot(s["y_new"], num_classes, dtype) for s in splits]))
    reference = AdaptationProblem(
        memory_inputs=inputs, memory_targets=targets, memory_soft=soft,
        memory_weight=np.ones((len(seeds), n_past), dtype), memory_removed=removed,
        delta=per_seed(delta), new_delta=per_seed(new_delta),
        num_new=per_seed(len(splits[0]["y_new"]) if task == "add_data" else 0), **new_data)
    if task == "change_model":
        starts = _stack([new_model.init(seed + 1000, width) for seed in seeds])
        anchor = None
        if glm:
            anchor = np.asarray(jax.vmap(polynomial_projection(width, config.model.polynomial_degree))(w_star))
    else:
        starts, anchor = w_star, w_star

    # --- batch: exact retraining, once per seed
    records = []
    method_results = {}
    if "batch" in k.methods:
        tic = time.perf_counter()
        _, accuracy, steps = _solve_seeds(starts, reference, test_inputs, test_labels, new_model.apply, solver)
        method_results["batch"] = (np.repeat(np.asarray(accuracy)[:, None], len(fractions), 1),
                                   np.zeros((len(seeds), len(fractions))), np.zeros((len(seeds), len(fractions))),
                                   np.repeat(np.asarray(steps)[:, None], len(fractions), 1))
        log(f"{task}: batch ({len(seeds)} seeds) {time.perf_counter() - tic:.1f}s, "
            f"accuracy {np.mean(accuracy):.4f}, {_steps_note(steps, solver)}")

    # --- kprior / replay over seeds x fractions
    sizes = np.array([[len(m) for m in per_seed_memories] for per_seed_memories in memories])
    for method in (m for m in ("kprior", "replay") if m in k.methods):
        tic = time.perf_counter()
        outputs = []
        if k.vectorize_fractions:  # padded memory: 0/1 weights over all past points, vmapped over fractions
            weights = np.zeros((len(seeds), len(fractions), n_past), dtype)
            for i, per_seed_memories in enumerate(memories):
                for j, memory in enumerate(per_seed_memories):
                    weights[i, j, memory] = 1
            problems = reference._replace(memory_weight=weights, anchor=anchor)
            outputs.append(_solve_grid(starts, problems, reference, test_inputs, test_labels, new_model.apply,
                                       method, solver, ("memory_weight",))[1:])
        else:  # gathered memory per fraction, padded across seeds with weight 0, vmapped over seeds
            for j in range(len(fractions)):
                size = sizes[:, j].max()
                index = np.zeros((len(seeds), 1, size), np.int64)
                weight = np.zeros((len(seeds), 1, size), dtype)
                for i in range(len(seeds)):
                    index[i, 0, :sizes[i, j]] = memories[i][j]
                    weight[i, 0, :sizes[i, j]] = 1
                take = lambda a: np.take_along_axis(a[:, None], index.reshape(  # noqa: E731
                    index.shape + (1,) * (a.ndim - 2)), axis=2)
                problems = reference._replace(memory_inputs=take(inputs), memory_targets=take(targets),
                                              memory_soft=take(soft), memory_removed=take(removed),
                                              memory_weight=weight, anchor=anchor)
                batched = tuple(name for name in AdaptationProblem._fields if name.startswith("memory_"))
                outputs.append(jax.block_until_ready(_solve_grid(  # blocks: the log line means the solve is done
                    starts, problems, reference, test_inputs, test_labels, new_model.apply, method, solver,
                    batched)[1:]))
                log(f"{task}: {method} fraction {fractions[j]} ({size} points) done, "
                    f"{time.perf_counter() - tic:.1f}s since the first fraction started")
        accuracy, absolute, relative, steps = (np.concatenate([np.asarray(o[i]) for o in outputs], axis=1)
                                               for i in range(4))
        method_results[method] = (accuracy, relative, absolute, steps)
        if not np.all(np.isfinite(relative)):  # a diverged solve (newton rejects non-finite steps, the others may not)
            log(f"WARNING {task}: {method} has non-finite gradient errors at fractions "
                f"{sorted({fractions[j] for j in np.flatnonzero(~np.isfinite(relative).all(0))})}: check kprior.solver")
        log(f"{task}: {method} ({len(seeds)} seeds x {len(fractions)} fractions) {time.perf_counter() - tic:.1f}s, "
            f"{_steps_note(steps, solver)}, accuracy by fraction "
            + " ".join(f"{f:g}:{a:.3f}" for f, a in zip(fractions, accuracy.mean(0))))

    for method in (m for m in METHODS if m in method_results):
        accuracy, relative, absolute, steps = method_results[method]
        for i, seed in enumerate(seeds):
            for j, fraction in enumerate(fractions):
                records.append(dict(task=task, method=method, memory_fraction=fraction, seed=int(seed),
                                    test_accuracy=float(accuracy[i, j]), grad_error=float(relative[i, j]),
                                    grad_error_abs=float(absolute[i, j]), solver_steps=int(steps[i, j]),
                                    memory_size=int(n_past if method == "batch" else sizes[i, j])))
    return records


# ------------------------------------------------------------------------------------ entry point


def run(config, workdir: str, dataset=None) -> dict:
    """Every task x method x memory fraction x seed of config.kprior; writes results.json and the plot.

    `dataset`: a `jaxlab.data.Dataset` to use instead of `load_dataset(config.data)` (tests, notebooks); then
    config.data is not checked.
    """
    if dataset is None:  # the shared checks, data paths included (a given dataset needs no data config)
        validate(config, num_devices=jax.local_device_count())
    else:
        check_kprior_config(config)
    os.makedirs(workdir, exist_ok=True)
    k = config.kprior
    name = f"{config.data.name or config.data.source} {config.model.name}"

    def log(message):
        print(f"[kprior {name}] {message}", flush=True)

    start = time.perf_counter()
    with jax.enable_x64(bool(k.float64)):
        dtype = np.float64 if k.float64 else np.float32
        if dataset is None:
            dataset = load_dataset(config.data)
        arrays = _arrays(dataset, config, dtype)
        if len(np.unique(arrays[1])) != NUM_CLASSES:
            raise ConfigError("kprior.protocol", f"the experiments are binary; {dataset.name} has "
                                                 f"{len(np.unique(arrays[1]))} classes under {k.protocol!r}")
        _check_newton_sizes(config, arrays[0].shape[1])
        solver = Solver(k.solver, int(k.steps), float(k.tol), int(k.history), float(k.learning_rate))
        solvers = (solver, solver._replace(name=k.base_solver or k.solver))
        records = []
        for task in k.tasks:
            records += _run_task(task, arrays, config, dtype, solvers, log)
            write_json(os.path.join(workdir, "results.json"), records)
    wall = time.perf_counter() - start
    plot = os.path.join(workdir, "accuracy_vs_memory.png")
    plot_accuracy_vs_memory(records, plot, title=name)
    log(f"done in {wall:.1f}s: {len(records)} records -> {workdir}/results.json, {plot}")
    return {"results": os.path.join(workdir, "results.json"), "plot": plot, "wall_time_s": wall,
            "num_records": len(records)}


def load_results(path: str) -> list[dict]:
    with open(path) as f:
        return json.load(f)
