"""DReg penalties: pure functions of the two copies' kernels W1, W2 (see jaxlab.dreg.replicate).

With a = vec W1, b = vec W2 and cos(a, b) = <a, b> / (|a| |b|):
- "squared_cosine" (default): cos(a, b)^2, minimal when the copies are orthogonal.
- "per_unit_squared_cosine": mean over output units j of cos(W1[..., j], W2[..., j])^2; a unit's
  weight vector is its column of a Dense kernel (in, out), its whole filter (kh, kw, c_in) of a
  Conv kernel (kh, kw, c_in, c_out).
- "cosine": cos(a, b), pushing the copies towards opposite directions.
- "hinge_cosine": max(cos(a, b), 0), no push once the copies are orthogonal or opposed.
- "negative_squared_distance": -|a - b|^2. Under sum or mean it does not change the network's
  function at all (the module docstring of replicate.py says why); kept as a control, with a warning.

Every penalty asserts (chex, static shapes) that W1 and W2 have the same shape: a mismatch would
otherwise broadcast in the elementwise products.

Every cosine has zero gradient at W1 = W2 (d cos / da = b / (|a||b|) - cos a / |a|^2 = 0
there): initialise the copies independently.

The penalty enters the trainer as an extension's loss term, lambda(step) * penalty(W1, W2); a scheduled lambda
reads batch["step"], which make_train_step supplies.
"""

from __future__ import annotations

import warnings
from typing import Callable

import chex
import jax
import jax.numpy as jnp
import optax

from jaxlab.dreg.replicate import Path, replicated_kernels
from jaxlab.registry import Registry

Penalty = Callable[[jax.Array, jax.Array], jax.Array]

PENALTIES = Registry("DReg penalty", "dreg.penalty")
SCHEDULES = ("constant", "linear_warmup", "cosine_decay")
_EPS = 1e-12


def _cosine(a: jax.Array, b: jax.Array, axis=None) -> jax.Array:
    """<a, b> / max(|a| |b|, eps) along `axis` (all axes by default)."""
    norms = jnp.sqrt(jnp.sum(a * a, axis) * jnp.sum(b * b, axis))
    return jnp.sum(a * b, axis) / jnp.maximum(norms, _EPS)


@PENALTIES.register("squared_cosine")
def squared_cosine(w1: jax.Array, w2: jax.Array) -> jax.Array:
    """cos(vec W1, vec W2)^2."""
    chex.assert_equal_shape([w1, w2])
    return _cosine(w1, w2) ** 2


@PENALTIES.register("per_unit_squared_cosine")
def per_unit_squared_cosine(w1: jax.Array, w2: jax.Array) -> jax.Array:
    """mean_j cos(W1[..., j], W2[..., j])^2 over the output units j (the kernel's last axis)."""
    chex.assert_rank(w1, {2, 3, 4, 5})  # Dense (in, out) or Conv (*window, c_in, c_out): units on the last axis
    chex.assert_equal_shape([w1, w2])
    units = lambda w: w.reshape(-1, w.shape[-1])  # noqa: E731  (fan-in, units)
    return jnp.mean(_cosine(units(w1), units(w2), axis=0) ** 2)


@PENALTIES.register("cosine")
def cosine(w1: jax.Array, w2: jax.Array) -> jax.Array:
    """cos(vec W1, vec W2)."""
    chex.assert_equal_shape([w1, w2])
    return _cosine(w1, w2)


@PENALTIES.register("hinge_cosine")
def hinge_cosine(w1: jax.Array, w2: jax.Array) -> jax.Array:
    """max(cos(vec W1, vec W2), 0)."""
    chex.assert_equal_shape([w1, w2])
    return jnp.maximum(_cosine(w1, w2), 0.0)


@PENALTIES.register("negative_squared_distance")
def negative_squared_distance(w1: jax.Array, w2: jax.Array) -> jax.Array:
    """-|W1 - W2|^2 (a no-op on the function under sum/mean: a control, not a regulariser)."""
    chex.assert_equal_shape([w1, w2])
    return -jnp.sum((w1 - w2) ** 2)


def penalty_function(variant: str) -> Penalty:
    """The penalty named `variant`; warns for "negative_squared_distance"."""
    penalty = PENALTIES.lookup(variant)
    if variant == "negative_squared_distance":
        warnings.warn("DReg penalty 'negative_squared_distance' does not change the network's function when the "
                      "copies are summed or averaged: W1 + W2 follows the plain model's trajectory while W1 - W2 "
                      "grows without bound. Use a cosine penalty unless this is the no-op control.", stacklevel=2)
    return penalty


def dreg_penalty(params: dict, path: Path, penalty: Penalty = squared_cosine) -> jax.Array:
    """penalty(W1, W2) of the replicated layer at `path` (unweighted; e.g. to log it)."""
    return penalty(*replicated_kernels(params, path))


def coefficient_schedule(coefficient: float, schedule: str = "constant", *, warmup_steps: int = 0,
                         total_steps: int = 0) -> optax.Schedule:
    """lambda(step): "constant"; "linear_warmup" lambda min(1, step / warmup_steps); "cosine_decay"
    the optional warm-up, then lambda (1 + cos(pi t)) / 2, t = (step - warmup) / (total - warmup) in [0, 1]."""
    if schedule == "constant":
        return optax.constant_schedule(coefficient)
    if schedule == "linear_warmup" and warmup_steps > 0:
        return optax.linear_schedule(0.0, coefficient, warmup_steps)
    if schedule == "cosine_decay" and total_steps > warmup_steps >= 0:
        return optax.warmup_cosine_decay_schedule(0.0, coefficient, warmup_steps, total_steps)
    raise ValueError(f"DReg coefficient schedule {schedule!r} (warmup_steps={warmup_steps}, "
                     f"total_steps={total_steps}): choose one of {list(SCHEDULES)}; linear_warmup needs "
                     "warmup_steps > 0, cosine_decay total_steps > warmup_steps")


def dreg_extra_loss(path: Path, variant: str = "squared_cosine", coefficient: float | optax.Schedule = 1e-2):
    """The loss term lambda * penalty(W1, W2), `loss(params, batch, rng, inputs=None)`: a trainer extension's
    loss (jaxlab.train.extension; it reads no inputs).

    `coefficient`: a float, or a schedule (e.g. coefficient_schedule(...)) evaluated at batch["step"].
    """
    penalty = penalty_function(variant)

    def loss(params, batch, rng, inputs=None):
        if not callable(coefficient):
            weight = coefficient
        elif "step" in batch:
            weight = coefficient(batch["step"])
        else:
            raise ValueError("a scheduled DReg coefficient needs the step: the trainer must pass batch['step']")
        return weight * dreg_penalty(params, path, penalty)

    return loss
