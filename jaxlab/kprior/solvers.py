"""Full-batch solvers for the adaptation objectives: `minimize` (optax L-BFGS, or damped Newton with a dense or
structured Hessian) and `adam` (a fixed number of full-batch Adam steps, for networks).

Objectives are sums over examples; `minimize(..., scale=)` divides them (the official code divides each objective
by N_new + |M|): that changes step sizes and tolerances, not the minimiser.
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

METHODS = ("lbfgs", "newton")


class SolveInfo(NamedTuple):
    """How a `minimize` call ended: steps taken (== max_steps: stopped by the cap) and ||grad|| of the
    scaled objective at the returned params (L-BFGS: at its last step's start)."""

    steps: jax.Array
    grad_norm: jax.Array


def _is_data(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, int, float, complex))


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

    if tol is None:  # reachable in the params' dtype: sqrt(eps) relative to the starting gradient's norm
        start = ravel_pytree(params)[0]
        tol = jnp.sqrt(jnp.finfo(start.dtype).eps) * jnp.maximum(1.0, jnp.linalg.norm(
            ravel_pytree(jax.grad(value_fn)(params))[0]))
    if method == "newton":
        hessian_fn = None if hessian is None else (lambda w: hessian(w, *args) / scale)
        return _newton(value_fn, params, tol, max_steps, hessian_fn)
    return _lbfgs(value_fn, params, tol, max_steps, history)


def minimize(objective: Callable[..., jax.Array], params, *args, method: str = "lbfgs", tol: float | None = None,
             max_steps: int = 1000, history: int = 20, scale: float = 1.0, hessian: Callable | None = None,
             with_info: bool = False):
    """argmin_w objective(w, *args) / scale, full batch, from `params`.

    method "lbfgs": optax.lbfgs with its default zoom line search (strong Wolfe conditions) and
    `history` past updates; stops when ||grad|| <= tol (of the scaled objective; None, the default: a tolerance
    the params' dtype can reach, sqrt(eps) x max(1, ||grad|| at the start): 3.5e-4 relative in float32, 1.5e-8
    in float64). "newton":
    Newton steps with the dense Hessian (Cholesky solve), for small, strictly convex
    problems (GLMs: machine precision in a handful of steps), damped by a backtracking search on
    ||grad|| (no objective values: robust in float32 where a large objective value's rounding
    stalls L-BFGS's line search); stops when ||grad|| <= tol or when no step length reduces
    ||grad|| (its rounding floor). Both stop after max_steps. `hessian(w, *args)`, for newton: the
    objective's dense Hessian as a (P, P) matrix in `ravel_pytree(w)` order, when a structured one is
    cheaper than jax.hessian (`jaxlab.kprior.objectives.glm_hessian`: IRLS for a GLM); hashable.
    with_info: return (params, SolveInfo) (steps taken, final ||grad||) instead of params. A solve that
    max_steps ended is reported with a RuntimeWarning (outside jit/vmap; inside, read SolveInfo.steps).

    Array and number leaves of `args` (pytrees such as a KPrior or an AdaptationProblem are fine) enter jit as
    arguments, not constants; other leaves (apply_fn, the loss) are static and must be hashable, as must
    `objective` (a module-level function, not a fresh lambda, reuses the compiled solver).
    """
    if method not in METHODS:
        raise ValueError(f"minimize method {method!r} is not one of {METHODS}")
    leaves, treedef = jax.tree.flatten(args)
    static_leaves = tuple(None if _is_data(leaf) else leaf for leaf in leaves)
    data_leaves = [leaf if _is_data(leaf) else None for leaf in leaves]
    solution, info = _solve(objective, params, data_leaves, tol, scale, treedef=treedef,
                            static_leaves=static_leaves, method=method, max_steps=max_steps, history=history,
                            hessian=hessian)
    if not isinstance(info.steps, jax.core.Tracer) and int(info.steps) >= max_steps:
        warnings.warn(f"minimize ({method}) stopped at max_steps={max_steps} with ||grad|| = "
                      f"{float(info.grad_norm):.3g}, above its tolerance {'(default)' if tol is None else tol}: "
                      "not converged; raise max_steps or loosen tol", RuntimeWarning, stacklevel=2)
    return (solution, info) if with_info else solution


def adam(value_fn: Callable, params, steps: int, learning_rate: float):
    """`steps` full-batch optax.adam steps on value_fn from params (no stopping rule: networks' objectives are
    not convex; traceable, so it vmaps over problems)."""
    optimiser = optax.adam(learning_rate)

    def step(carry, _):
        w, state = carry
        updates, state = optimiser.update(jax.grad(value_fn)(w), state, w)
        return (optax.apply_updates(w, updates), state), None

    return jax.lax.scan(step, (params, optimiser.init(params)), None, length=steps)[0][0]
