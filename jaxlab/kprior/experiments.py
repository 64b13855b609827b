"""The K-prior paper's adaptation experiments (Khan & Swaroop, NeurIPS 2021), vectorised.

    run_kprior_experiment(config, workdir)   # experiment "kprior_adaptation" (configs/kprior/*.py)

For each task in config.kprior.tasks (add_data, remove_data, change_regularizer, change_model),
each seed and each memory fraction, a base model w* is trained on the past data D, a memory M of
`fraction` of D is chosen (class-balanced top-lambda, `jaxlab.kprior.memory`), and the model is
adapted by each method:

    kprior   the task's K-prior objective (jaxlab.kprior.tasks): soft labels of w* on M
    replay   the same memory points with their TRUE labels (+ new data, - removed data)
    batch    full retraining on all the data the task says (D u D+, D \\ D-, new delta, new model).
             This is also Replay with 100% memory (the same objective); it does not depend on the
             fraction, is solved once per seed and recorded under every fraction.

Protocols (config.kprior.protocol; the official code's settings, see /work/shared/notes/kpriors.md):

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

Vectorisation (config.kprior.vectorize_fractions):
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
The solvers: `kprior.minimize` (optax L-BFGS with zoom line search, or damped Newton with the IRLS
Hessian `glm_hessian`) for GLMs, full-batch Adam for networks; config.kprior.base_solver may differ for
the base models. Its default '' is kprior.solver, except that a base GLM too wide for Newton's dense
Hessian (over NEWTON_MAX_PARAMS, e.g. the degree-2 base of change_model) is solved with L-BFGS; an
explicit newton there is a ConfigError before compiling. Objectives are divided by (N_new + |M|) as in the
official code (a rescaling, same minimiser).

Precision: float32 unless config.kprior.float64 (x64 enabled for the run and restored after). In
float32, L-BFGS may not reach a tight tol on K-prior objectives over small memories: their value is
dominated by weight terms (e.g. -delta <w*, w> / |M| for a change of regulariser) whose rounding hides
the last decreases from the line search, which then fails step after step until `steps` (measured on
USPS change_regularizer: 300 steps, ||grad|| stuck at 1e-5 to 4e-5, against 35-46 steps to 1e-6 in
float64, same accuracies). Remedies: float64, or newton (gradients only; its dense Hessian costs
N d^2 C^2 per step, so it pays on small problems).

grad_error: at the method's solution w, ||grad J_method(w) - grad J_retrain(w)|| divided by
||grad J_retrain(w0)|| with w0 the adaptation's starting point (w*, or the fresh init for a change
of model). Relative to the gradient at w itself it would be ~1 by construction (grad J_method(w)
~ 0 at its own minimiser); this normalisation reads as "the fraction of the retraining gradient
left unexplained", 0 for exact recovery. grad_error_abs is the numerator.

Outputs in workdir: results.json (list of records: task, method, memory_fraction, seed,
test_accuracy, grad_error, grad_error_abs, memory_size, solver_steps: the steps the solve took,
kprior.steps when it stopped at the cap) and accuracy_vs_memory.png.
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
import numpy as np
import optax

from jaxlab.config import ConfigError, require
from jaxlab.kprior.gradients import gradient_error
from jaxlab.kprior.memory import METHODS as SELECTIONS
from jaxlab.kprior.memory import memory_scores, select_memory
from jaxlab.kprior.prior import SOFTMAX, weight_penalty
from jaxlab.kprior.tasks import minimize, polynomial_projection

TASKS = ("add_data", "remove_data", "change_regularizer", "change_model")
METHODS = ("kprior", "replay", "batch")
PROTOCOLS = ("adult", "usps_odd_even")
SOLVERS = ("lbfgs", "newton", "adam")
NEWTON_MAX_PARAMS = 4096  # newton forms a dense (params x params) Hessian per vmapped problem
MODELS = ("glm", "mlp")
RECORD_KEYS = ("task", "method", "memory_fraction", "seed", "test_accuracy", "grad_error")


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
    require(len(k.change_regularizer_deltas) == 2 and all(d > 0 for d in k.change_regularizer_deltas),
             "kprior.change_regularizer_deltas", f"must be (old, new) > 0, got {tuple(k.change_regularizer_deltas)}")
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
    require(k.memory_selection in ("lambda", "random"), "kprior.memory_selection",
             f"{k.memory_selection!r} is not 'lambda' or 'random'")
    require(config.model.polynomial_degree >= 1, "model.polynomial_degree", "must be >= 1")
    require(k.change_model_degree > config.model.polynomial_degree or config.model.name != "glm",
             "kprior.change_model_degree",
             f"the base GLM's degree ({k.change_model_degree}) must exceed the new model's "
             f"(model.polynomial_degree={config.model.polynomial_degree})")
    require(all(h > 0 for h in k.change_model_hidden_sizes) and len(k.change_model_hidden_sizes) > 0,
             "kprior.change_model_hidden_sizes", "must be positive layer widths")
    require(len(k.usps_range) == 2 and k.usps_range[0] < k.usps_range[1], "kprior.usps_range",
             f"must be (low, high) with low < high, got {tuple(k.usps_range)}")


# ------------------------------------------------------------------------------------ objectives

def adaptation_objective(params, data: dict, apply_fn: Callable, kind: str) -> jax.Array:
    """One adaptation objective with the memory given as weighted points (weights 0/1: a padded memory).

    With m_i the memory weights, r_i the removed-point flags, S_i the soft labels h(f_{w*}(x_i)):

      kprior  sum_i m_i l(S_i, f_w(x_i)) - sum_i m_i r_i l(y_i, f_w(x_i)) + delta/2 ||w - anchor||^2
              + (delta' - delta)/2 ||w||^2 [+ sum_{D+} l]          (no "anchor": delta/2 ||w||^2)
      replay  sum_i m_i (1 - r_i) l(y_i, f_w(x_i)) + delta'/2 ||w||^2 [+ sum_{D+} l]

    With m = 1 on the gathered memory these are `jaxlab.kprior.tasks`' add_data / remove_data /
    change_regulariser / change-of-model objectives and `replay` (tested); with m = 1 on all of D
    replay is exact retraining (Batch).
    """
    outputs = apply_fn(params, data["memory_inputs"])
    weight, removed = data["memory_weight"], data["memory_removed"]
    if kind == "kprior":
        value = jnp.sum(weight * SOFTMAX.loss(data["memory_soft"], outputs))
        value -= jnp.sum(weight * removed * SOFTMAX.loss(data["memory_targets"], outputs))
        value += weight_penalty(params, data["delta"], data.get("anchor"))
        value += weight_penalty(params, data["new_delta"] - data["delta"])
    else:
        value = jnp.sum(weight * (1 - removed) * SOFTMAX.loss(data["memory_targets"], outputs))
        value += weight_penalty(params, data["new_delta"])
    if "new_inputs" in data:
        value += jnp.sum(SOFTMAX.loss(data["new_targets"], apply_fn(params, data["new_inputs"])))
    return value


def glm_hessian(params, data: dict, apply_fn: Callable, kind: str) -> jax.Array:
    """The dense Hessian of `adaptation_objective` for the GLM `linear` (IRLS), a (d C, d C) matrix in
    row-major order of the (d, C) weights:

        H = sum_i kappa_i phi_i phi_i^T (x) (diag(p_i) - p_i p_i^T) + delta' I,   p_i = softmax(phi_i^T W)

    A softmax cross-entropy's curvature in the logits does not depend on its target (soft or hard: both sum
    to 1), so kappa_i = m_i (1 - r_i) for both kinds (the K-prior's soft term minus its unlearning term is
    replay's retained term) and 1 for each new point; both kinds' weight terms add up to delta'/2 ||w||^2
    plus a linear term. Costs (C - 1)^2 N d^2 per call, against jax.hessian's d C forward and backward
    passes.
    """
    if apply_fn is not linear:
        raise ValueError("glm_hessian is the Hessian of the GLM `linear`; use jax.hessian for other models")

    def curvature(features, kappa):
        """(C, C, d, d) blocks sum_i kappa_i A_i[c, c'] phi_i phi_i^T. A_i = diag(p_i) - p_i p_i^T is symmetric
        and its rows sum to 0, so only the (C-1)^2 leading blocks need a pass over the data (1 for C = 2)."""
        p = jax.nn.softmax(features @ params)[:, :-1]
        leading = kappa[:, None, None] * (jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :])
        blocks = jnp.einsum("ncka,nb->ckab", leading[..., None] * features[:, None, None, :], features)
        last_column = -jnp.sum(blocks, axis=1, keepdims=True)
        blocks = jnp.concatenate([blocks, last_column], axis=1)
        return jnp.concatenate([blocks, -jnp.sum(blocks, axis=0, keepdims=True)], axis=0)

    blocks = curvature(data["memory_inputs"], data["memory_weight"] * (1 - data["memory_removed"]))
    if "new_inputs" in data:
        blocks += curvature(data["new_inputs"], jnp.ones(len(data["new_inputs"]), params.dtype))
    size = params.size
    hessian = jnp.einsum("ckab->acbk", blocks).reshape(size, size)  # row-major (d, C) order: a C + c
    return hessian + data["new_delta"] * jnp.eye(size, dtype=params.dtype)


def _adam(value_fn, params, steps: int, learning_rate: float):
    optimiser = optax.adam(learning_rate)

    def step(carry, _):
        w, state = carry
        updates, state = optimiser.update(jax.grad(value_fn)(w), state, w)
        return (optax.apply_updates(w, updates), state), None

    return jax.lax.scan(step, (params, optimiser.init(params)), None, length=steps)[0][0]


def _solve_one(start, data, apply_fn, kind: str, solver: Solver):
    """(solution, steps taken)."""
    scale = data["num_new"] + jnp.sum(data["memory_weight"] * (1 - data["memory_removed"]))
    if solver.name == "adam":
        return (_adam(lambda w: adaptation_objective(w, data, apply_fn, kind) / scale, start, solver.steps,
                      solver.learning_rate), jnp.asarray(solver.steps))
    hessian = glm_hessian if apply_fn is linear and solver.name == "newton" else None
    solution, info = minimize(adaptation_objective, start, data, apply_fn, kind, method=solver.name, tol=solver.tol,
                              max_steps=solver.steps, history=solver.history, scale=scale, hessian=hessian,
                              with_info=True)
    return solution, info.steps


def _grad_error_one(solution, start, data, reference_data, apply_fn, kind: str):
    objective = functools.partial(adaptation_objective, data=data, apply_fn=apply_fn, kind=kind)
    reference = functools.partial(adaptation_objective, data=reference_data, apply_fn=apply_fn, kind="replay")
    absolute = gradient_error(objective, reference, solution).absolute
    return absolute, absolute / optax.tree.norm(jax.grad(reference)(start))


def _accuracy_one(params, apply_fn, inputs, labels):
    return jnp.mean(jnp.argmax(apply_fn(params, inputs), axis=-1) == labels)


def _axes(data: dict, batched: frozenset) -> dict:
    return {key: (0 if key in batched else None) for key in data}


@functools.partial(jax.jit, static_argnames=("apply_fn", "kind", "solver", "batched"))
def _solve_grid(starts, data, reference, test_inputs, test_labels, apply_fn, kind, solver, batched):
    """vmap over seeds (axis 0 of every leaf) and then over fractions (the leaves named in `batched`).

    Returns (params, test accuracy, grad error abs, grad error rel, solver steps), each (seeds, fractions, ...).
    """
    def one(start, data, reference):
        solution, steps = _solve_one(start, data, apply_fn, kind, solver)
        absolute, relative = _grad_error_one(solution, start, data, reference, apply_fn, kind)
        return solution, _accuracy_one(solution, apply_fn, test_inputs, test_labels), absolute, relative, steps

    over_fractions = jax.vmap(one, in_axes=(None, _axes(data, batched), None))
    return jax.vmap(over_fractions)(starts, data, reference)


@functools.partial(jax.jit, static_argnames=("apply_fn", "solver"))
def _solve_seeds(starts, data, test_inputs, test_labels, apply_fn, solver):
    """Retraining (replay on all of the data) vmapped over seeds: (params, accuracy, solver steps)."""
    def one(start, data):
        solution, steps = _solve_one(start, data, apply_fn, "replay", solver)
        return solution, _accuracy_one(solution, apply_fn, test_inputs, test_labels), steps

    return jax.vmap(one)(starts, data)


# ------------------------------------------------------------------------------------ models

def linear(params, features):
    """GLM logits phi(x)^T W (features precomputed: `polynomial_features`)."""
    return features @ params


@functools.lru_cache(maxsize=None)
def _mlp_apply(hidden_sizes: tuple[int, ...], num_classes: int) -> Callable:
    from jaxlab.models.mlp import MLP
    return MLP(num_classes, hidden_sizes).apply  # cached: the same object (static jit argument) every time


class _Model(NamedTuple):
    apply: Callable
    inputs: Callable[[np.ndarray], np.ndarray]      # raw (N, ...) -> model inputs
    init: Callable[[int, int], Any]                 # (seed, input width) -> params (numpy)
    projection: Callable | None = None              # change of GLM: P (w* -> new params)


def _glm(degree: int, num_classes: int, dtype) -> _Model:
    from jaxlab.models.glm import polynomial_features

    def inputs(x):
        x = np.asarray(x, dtype).reshape(len(x), -1)
        return np.asarray(polynomial_features(jnp.asarray(x), degree))

    width = lambda d: math.comb(d + degree, degree)  # noqa: E731
    return _Model(linear, inputs, lambda seed, d: np.zeros((width(d), num_classes), dtype))


def _mlp(hidden_sizes, num_classes: int, dtype) -> _Model:
    sizes = tuple(int(h) for h in hidden_sizes)

    def init(seed, d):
        """Flax Dense default init (lecun normal kernels, zero biases) drawn with numpy."""
        rng = np.random.default_rng([seed, len(sizes)])
        widths = (d, *sizes, num_classes)
        return {"params": {f"Dense_{i}": {"kernel": (rng.normal(size=(a, b)) / np.sqrt(a)).astype(dtype),
                                          "bias": np.zeros(b, dtype)}
                           for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))}}

    return _Model(_mlp_apply(sizes, num_classes), lambda x: np.asarray(x, dtype).reshape(len(x), -1), init)


# ------------------------------------------------------------------------------------ data

def _arrays(dataset, config, dtype):
    """(x_train, y_train, x_test, y_test, digit_train, digit_test) as numpy; labels binary."""
    train = dataset.train.__getitems__(np.arange(len(dataset.train)))
    test = dataset.test.__getitems__(np.arange(len(dataset.test)))
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
    num_classes = 2
    glm = config.model.name == "glm"
    if glm:
        new_model = _glm(config.model.polynomial_degree, num_classes, dtype)
        base_model = _glm(k.change_model_degree, num_classes, dtype) if task == "change_model" else new_model
    else:
        new_model = _mlp(config.model.hidden_sizes, num_classes, dtype)
        base_model = _mlp(k.change_model_hidden_sizes, num_classes, dtype) if task == "change_model" else new_model
    delta = k.change_regularizer_deltas[0] if task == "change_regularizer" else k.delta
    new_delta = k.change_regularizer_deltas[1] if task == "change_regularizer" else delta
    scalars = lambda n_new: dict(delta=np.asarray(delta, dtype), new_delta=np.asarray(new_delta, dtype),  # noqa
                                 num_new=np.asarray(n_new, dtype))

    # --- splits and base models (vmapped over seeds)
    start_time = time.perf_counter()
    splits = [_split(task, seed, arrays, config) for seed in seeds]
    n_past, width = splits[0]["x"].shape
    base_inputs = np.stack([base_model.inputs(s["x"]) for s in splits])
    targets = np.stack([_one_hot(s["y"], num_classes, dtype) for s in splits])
    no_removed = np.zeros((len(seeds), n_past), dtype)
    base_data = dict(memory_inputs=base_inputs, memory_targets=targets, memory_soft=targets,
                     memory_weight=np.ones((len(seeds), n_past), dtype), memory_removed=no_removed,
                     **{key: np.broadcast_to(v, (len(seeds),)) for key, v in scalars(0).items()})
    base_data["new_delta"] = base_data["delta"]
    base_starts = _stack([base_model.init(seed, width) for seed in seeds])
    test_inputs = new_model.inputs(splits[0]["x_test"])
    test_labels = splits[0]["y_test"]
    cheap_base_test = base_model is new_model  # the base model of a change of model: no test pass (degree-2 features)
    base_test = test_inputs if cheap_base_test else base_model.inputs(splits[0]["x_test"][:1])
    if not k.base_solver and base_solver.name == "newton" and base_starts[0].size > NEWTON_MAX_PARAMS:
        base_solver = base_solver._replace(name="lbfgs")
        log(f"{task}: the base model has {base_starts[0].size} params, too many for newton's dense Hessian "
            f"(NEWTON_MAX_PARAMS={NEWTON_MAX_PARAMS}): solved with lbfgs")
    w_star, base_accuracy, base_steps = _solve_seeds(base_starts, base_data, base_test, test_labels[:len(base_test)],
                                                     base_model.apply, base_solver)
    base_outputs = jax.vmap(base_model.apply)(w_star, base_inputs)
    soft = np.asarray(jax.nn.softmax(base_outputs), dtype)
    scores = [memory_scores(o) for o in np.asarray(base_outputs)]
    log(f"{task}: base models ({len(seeds)} seeds, {n_past} past points"
        + (f", test accuracy {np.mean(base_accuracy):.4f}" if cheap_base_test else "")
        + f") {time.perf_counter() - start_time:.1f}s, {_steps_note(base_steps, base_solver)}")
    del base_inputs

    # --- removed points, memories, the adaptation data
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
    common = scalars(len(splits[0]["y_new"]) if task == "add_data" else 0)
    if task == "add_data":
        common.update(new_inputs=np.stack([new_model.inputs(s["x_new"]) for s in splits]),
                      new_targets=np.stack([_one_hot(s["y_new"], num_classes, dtype) for s in splits]))
    seed_axis = {key: np.broadcast_to(v, (len(seeds), *np.shape(v))) if key in scalars(0) else v
                 for key, v in common.items()}
    reference = dict(memory_inputs=inputs, memory_targets=targets, memory_soft=soft,
                     memory_weight=np.ones((len(seeds), n_past), dtype), memory_removed=removed, **seed_axis)
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
    sizes = np.array([[len(m) for m in per_seed] for per_seed in memories])
    for method in (m for m in ("kprior", "replay") if m in k.methods):
        tic = time.perf_counter()
        outputs = []
        if k.vectorize_fractions:  # padded memory: 0/1 weights over all past points, vmapped over fractions
            weights = np.zeros((len(seeds), len(fractions), n_past), dtype)
            for i, per_seed in enumerate(memories):
                for j, memory in enumerate(per_seed):
                    weights[i, j, memory] = 1
            data = dict(reference, memory_weight=weights)
            if anchor is not None:
                data["anchor"] = anchor
            outputs.append(_solve_grid(starts, data, reference, test_inputs, test_labels, new_model.apply, method,
                                       solver, frozenset({"memory_weight"}))[1:])
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
                data = dict(reference, memory_inputs=take(inputs), memory_targets=take(targets),
                            memory_soft=take(soft), memory_removed=take(removed), memory_weight=weight)
                if anchor is not None:
                    data["anchor"] = anchor
                batched = frozenset(key for key in data if key.startswith("memory_"))
                outputs.append(jax.block_until_ready(_solve_grid(  # blocks: the log line means the solve is done
                    starts, data, reference, test_inputs, test_labels, new_model.apply, method, solver, batched)[1:]))
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


# ------------------------------------------------------------------------------------ summary and plot

def summarize(records: list[dict]) -> dict:
    """{(task, method, fraction): (mean, std, min, max) of test accuracy over seeds}."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["task"], r["method"], r["memory_fraction"]), []).append(r["test_accuracy"])
    return {key: (float(np.mean(v)), float(np.std(v)), float(np.min(v)), float(np.max(v)))
            for key, v in groups.items()}


def plot_accuracy_vs_memory(records: list[dict], path: str, title: str = "") -> None:
    """One panel per task: test accuracy vs memory size (% of past data, log axis), mean and min-max over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = summarize(records)
    tasks = [t for t in TASKS if any(r["task"] == t for r in records)]
    figure, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.4), squeeze=False)
    styles = {"kprior": ("K-prior", "tab:blue", "o"), "replay": ("Replay", "tab:orange", "s"),
              "batch": ("Batch", "black", None)}
    for axis, task in zip(axes[0], tasks):
        for method, (label, color, marker) in styles.items():
            keys = sorted((key for key in stats if key[0] == task and key[1] == method), key=lambda key: key[2])
            if not keys:
                continue
            x = np.array([100 * key[2] for key in keys])
            mean, _, low, high = (np.array([stats[key][i] for key in keys]) for i in range(4))
            axis.plot(x, 100 * mean, color=color, marker=marker, linestyle="--" if method == "batch" else "-",
                      label=label)
            axis.fill_between(x, 100 * low, 100 * high, color=color, alpha=0.2)
        axis.set_xscale("log")
        axis.set_title(task.replace("_", " "))
        axis.set_xlabel("memory size (% of past data)")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ------------------------------------------------------------------------------------ entry point

def run_kprior_experiment(config, workdir: str, dataset=None) -> dict:
    """Every task x method x memory fraction x seed of config.kprior; writes results.json and the plot.

    `dataset`: a `jaxlab.data.Dataset` to use instead of `load_dataset(config.data)` (tests, notebooks).
    """
    from jaxlab import config as config_lib
    from jaxlab.data import load_dataset
    from jaxlab.train.metrics import write_json

    check_kprior_config(config)
    if dataset is None:  # the shared checks, data paths included (a given dataset needs no data config)
        config_lib.validate(config, num_devices=jax.local_device_count())
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
        if len(np.unique(arrays[1])) != 2:
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
