"""Adaptation tasks as objectives of the new params w, and a full-batch solver.

Notation as in `jaxlab.kprior.prior`: l the loss, K(w) = K(w; w*, M) the K-prior of the base model
w* = argmin Lbar, delta its L2 strength. All objectives are sums over examples. With M = D and
the exact w* of a GLM, each K-prior objective has the gradient of its exact-retraining objective
at every w (the K-prior swaps in for Lbar), hence the same minimiser:

    task                 exact retraining             K-prior objective
    add data D+          Lbar + sum_{D+} l            sum_{D+} l + K(w)
    remove data D- in M  Lbar - sum_{D-} l            K(w) - sum_{D-} l
    delta -> delta'      sum_D l + delta'/2 ||w||^2   K(w) + (delta' - delta)/2 ||w||^2
    change GLM features  retrain on new features      sum_M l(h(f_*^old), f_theta) + delta/2 ||theta - P w*||^2
    change network       retrain the new network      the same without the weight term: distillation on M

Replay, the baseline: the same memory points with their TRUE labels, sum_{M u D+} l (M minus D-
for removal) + delta/2 ||w||^2 (delta' for the new regulariser; the new model for a change of model).

The change-regulariser objective equals sum_M l(h(f_*), f_w) + delta'/2 ||w||^2 - delta <w*, w> up
to the constant delta/2 ||w*||^2. Knowledge distillation is the change of network with M = D.
Continual learning applies add-data task after task, each K-prior built from the last model on
a memory that grows by a selection from each task. "Batch" is Replay with M = D.

Every method starts from w* except a change of model (a fresh init; zeros for the GLM). The
official code divides each objective by (N_new + |M|); `minimize(..., scale=)` offers that
rescaling (it changes optimiser step sizes and tolerances, not the minimiser).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jaxlab.kprior.memory import memory_scores, select_memory
from jaxlab.kprior.prior import (
    SOFTMAX,
    ApplyFn,
    ExpFamilyLoss,
    KPrior,
    Projection,
    data_loss,
    make_kprior,
    regularised_loss,
    weight_penalty,
)


def add_data(params, prior: KPrior, new_inputs, new_targets) -> jax.Array:
    """sum_{D+} l(y, f_w(x)) + K(w)."""
    return data_loss(params, prior.apply_fn, new_inputs, new_targets, prior.loss) + prior(params)


def remove_data(params, prior: KPrior, removed_inputs, removed_targets) -> jax.Array:
    """K(w) - sum_{D-} l(y, f_w(x)); the removed points D- must be in the memory."""
    return prior(params) - data_loss(params, prior.apply_fn, removed_inputs, removed_targets, prior.loss)


def change_regulariser(params, prior: KPrior, new_delta) -> jax.Array:
    """K(w) + (delta' - delta)/2 ||w||^2; gradient J^T (h(f_w) - h(f_*)) + delta' w - delta w*."""
    return prior(params) + weight_penalty(params, new_delta - prior.delta)


def change_model_prior(old_apply_fn: ApplyFn, old_params, new_apply_fn: ApplyFn, memory_inputs, delta,
                       loss: ExpFamilyLoss = SOFTMAX, projection: Projection | None = None) -> KPrior:
    """The change-of-model objective, itself a K-prior on the new model's params theta.

    sum_M l(h(f_{w*}^old(x_m)), f_theta^new(x_m)) + delta/2 ||theta - P w*||^2 with P = `projection`;
    projection None (a different network): delta/2 ||theta||^2, i.e. distillation on M
    (knowledge distillation when M = D).
    """
    return make_kprior(old_apply_fn, old_params, memory_inputs, delta, loss, new_apply_fn=new_apply_fn,
                       projection=projection, weight_term=projection is not None)


def polynomial_projection(num_inputs: int, degree: int) -> Projection:
    """P for a GLM on `polynomial_features` going down to `degree`: keep, in every leaf, the first
    C(num_inputs + degree, degree) rows, the weights of the monomials of degree <= `degree`
    (polynomial_features orders the columns by degree)."""
    kept = math.comb(num_inputs + degree, degree)
    return lambda params: jax.tree.map(lambda weights: weights[:kept], params)


def replay(params, apply_fn: ApplyFn, memory_inputs, memory_targets, delta, loss: ExpFamilyLoss = SOFTMAX,
           new_inputs=None, new_targets=None) -> jax.Array:
    """sum_M l(y_m, f_w(x_m)) [+ sum_{D+} l] + delta/2 ||w||^2: the memory with its TRUE labels."""
    objective = regularised_loss(params, apply_fn, memory_inputs, memory_targets, delta, loss)
    if new_inputs is not None:
        objective += data_loss(params, apply_fn, new_inputs, new_targets, loss)
    return objective


def _is_data(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, int, float, complex))


class SolveInfo(NamedTuple):
    """How a `minimize` call ended: steps taken (== max_steps: stopped by the cap) and ||grad|| of the
    scaled objective at the returned params (L-BFGS: at its last step's start)."""

    steps: jax.Array
    grad_norm: jax.Array


def _lbfgs(value_fn, params, tol, max_steps: int, history: int):
    """optax.lbfgs (zoom line search) until ||grad|| <= tol or max_steps."""
    optimiser = optax.lbfgs(memory_size=history)
    value_and_grad = optax.value_and_grad_from_state(value_fn)

    def step(carry):
        w, state = carry
        value, grad = value_and_grad(w, state=state)
        updates, state = optimiser.update(grad, state, w, value=value, grad=grad, value_fn=value_fn)
        return optax.apply_updates(w, updates), state

    def running(carry):
        _, state = carry
        count = optax.tree.get(state, "count")
        grad_norm = optax.tree.norm(optax.tree.get(state, "grad"))
        return (count == 0) | ((count < max_steps) & (grad_norm > tol))

    params, state = jax.lax.while_loop(running, step, (params, optimiser.init(params)))
    return params, SolveInfo(optax.tree.get(state, "count"), optax.tree.norm(optax.tree.get(state, "grad")))


def _newton(value_fn, params, tol, max_steps: int, hessian_fn=None, max_halvings: int = 30):
    """Damped Newton on the flattened params: d = H^{-1} g (dense Hessian: jax.hessian, or
    hessian_fn(params) -> (P, P) in ravel_pytree order; Cholesky solve: H must be positive
    definite), w <- w - t d with t the first of 1, 1/2, 1/4, ... such that
    ||g(w - t d)||^2 < (1 - 2e-4 t) ||g(w)||^2 (Armijo on the merit ||g||^2 / 2, for which d is a
    descent direction: its slope is -||g||^2). Uses gradients only, never objective values: in
    float32 a K-prior objective's value (e.g. the -delta <w*, w> term of a change of regulariser
    over a small memory) can be so large that its rounding hides the decrease of the last steps,
    which stalls a value-based line search, while its gradient is still accurate.
    Stops at ||g|| <= tol, after max_steps, or when no t >= 2^-max_halvings is accepted (the
    gradient's rounding floor: w is kept, never replaced by a non-finite step). The inequality is
    strict so that a step too small to change w (its gradient is the same) is rejected: with <=,
    once (1 - 2e-4 t) rounds to 1 such a step passes and the loop idles to max_steps."""
    flat, unravel = ravel_pytree(params)
    flat_value = lambda v: value_fn(unravel(v))  # noqa: E731
    grad_fn = jax.grad(flat_value)
    flat_hessian = jax.hessian(flat_value) if hessian_fn is None else (lambda v: hessian_fn(unravel(v)))

    def step(carry):
        v, grad, count, _ = carry
        direction = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(flat_hessian(v)), grad)
        norm2 = jnp.vdot(grad, grad)

        def rejected(search):
            t, new_grad, halvings = search
            return (halvings <= max_halvings) & ~(jnp.vdot(new_grad, new_grad) < (1 - 2e-4 * t) * norm2)

        def halve(search):
            t, _, halvings = search
            return t / 2, grad_fn(v - t / 2 * direction), halvings + 1

        t, new_grad, halvings = jax.lax.while_loop(rejected, halve, (jnp.ones((), v.dtype),
                                                                     grad_fn(v - direction), 0))
        accepted = halvings <= max_halvings
        return (jnp.where(accepted, v - t * direction, v), jnp.where(accepted, new_grad, grad), count + 1,
                ~accepted)

    def running(carry):
        _, grad, count, stalled = carry
        return (count < max_steps) & (jnp.linalg.norm(grad) > tol) & ~stalled

    flat, grad, count, _ = jax.lax.while_loop(running, step, (flat, grad_fn(flat), 0, jnp.asarray(False)))
    return unravel(flat), SolveInfo(count, jnp.linalg.norm(grad))


@functools.partial(jax.jit, static_argnames=("objective", "treedef", "static_leaves", "method", "max_steps",
                                             "history", "hessian"))
def _solve(objective, params, data_leaves, tol, scale, treedef, static_leaves, method: str, max_steps: int,
           history: int, hessian=None):
    args = treedef.unflatten([leaf if fixed is None else fixed for leaf, fixed in zip(data_leaves, static_leaves)])

    def value_fn(w):
        return objective(w, *args) / scale

    if method == "newton":
        hessian_fn = None if hessian is None else (lambda w: hessian(w, *args) / scale)
        return _newton(value_fn, params, tol, max_steps, hessian_fn)
    return _lbfgs(value_fn, params, tol, max_steps, history)


def minimize(objective: Callable[..., jax.Array], params, *args, method: str = "lbfgs", tol: float = 1e-10,
             max_steps: int = 1000, history: int = 20, scale: float = 1.0, hessian: Callable | None = None,
             with_info: bool = False):
    """argmin_w objective(w, *args) / scale, full batch, from `params`.

    method "lbfgs": optax.lbfgs with its default zoom line search (strong Wolfe conditions) and
    `history` past updates; stops when ||grad|| <= tol (of the scaled objective). "newton":
    Newton steps with the dense Hessian (Cholesky solve), for small, strictly convex
    problems (GLMs: machine precision in a handful of steps), damped by a backtracking search on
    ||grad|| (no objective values: robust in float32 where a large objective value's rounding
    stalls L-BFGS's line search); stops when ||grad|| <= tol or when no step length reduces
    ||grad|| (its rounding floor). Both stop after max_steps. `hessian(w, *args)`, for newton: the
    objective's dense Hessian as a (P, P) matrix in `ravel_pytree(w)` order, when a structured one is
    cheaper than jax.hessian (`jaxlab.kprior.experiments.glm_hessian`: IRLS for a GLM); hashable.
    with_info: return (params, SolveInfo) (steps taken, final ||grad||) instead of params.

    Array and number leaves of `args` (pytrees such as a KPrior are fine) enter jit as arguments,
    not constants; other leaves (apply_fn, the loss) are static and must be hashable, as must
    `objective` (a module-level function, not a fresh lambda, reuses the compiled solver).
    """
    if method not in ("lbfgs", "newton"):
        raise ValueError(f"minimize method {method!r} is not 'lbfgs' or 'newton'")
    leaves, treedef = jax.tree.flatten(args)
    static_leaves = tuple(None if _is_data(leaf) else leaf for leaf in leaves)
    data_leaves = [leaf if _is_data(leaf) else None for leaf in leaves]
    solution, info = _solve(objective, params, data_leaves, tol, scale, treedef=treedef,
                            static_leaves=static_leaves, method=method, max_steps=max_steps, history=history,
                            hessian=hessian)
    return (solution, info) if with_info else solution


def continual_learning(tasks: Sequence[tuple[Any, Any, Any]], params, apply_fn: ApplyFn, delta,
                       memory_per_task: int, loss: ExpFamilyLoss = SOFTMAX, selection: str = "lambda",
                       seed: int = 0, **solver_options) -> tuple[list, KPrior]:
    """K-prior continual learning over tasks [(inputs, targets, labels), ...]; labels are class ids.

    Task 1: minimise Lbar on D_1. Task t > 1: minimise add_data(w; K_{t-1}, D_t), from w_{t-1}.
    After task t: M_t = M_{t-1} u select_memory(D_t, memory_per_task, selection) (scored by w_t), and
    K_t = K(w; w_t, M_t) (soft labels of the LAST model on the whole memory).
    `solver_options` go to `minimize`. Returns the params after each task and the last K-prior.
    """
    history, prior, memory = [], None, []
    for task, (inputs, targets, labels) in enumerate(tasks):
        if prior is None:
            params = minimize(regularised_loss, params, apply_fn, inputs, targets, delta, loss, **solver_options)
        else:
            params = minimize(add_data, params, prior, inputs, targets, **solver_options)
        history.append(params)
        scores = memory_scores(apply_fn(params, inputs), loss) if selection == "lambda" else None
        memory.append(inputs[select_memory(labels, memory_per_task, selection, scores=scores, seed=seed + task)])
        prior = make_kprior(apply_fn, params, jnp.concatenate(memory), delta, loss)
    return history, prior
