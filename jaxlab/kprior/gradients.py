"""Gradient reconstruction: how far an objective's gradient field is from full retraining's.

    error(w) = ||grad J(w) - grad J_retrain(w)||,   relative = error(w) / ||grad J_retrain(w)||

The paper's central claim made measurable: for a GLM with the exact w* and M = D every K-prior
objective has error 0 at every w; with a subset memory the error is about
||sum_{i not in M} lambda_i phi_i phi_i^T (w - w*)||, smallest when M keeps the largest lambda_i.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import optax


class GradientError(NamedTuple):
    absolute: jax.Array
    relative: jax.Array


def gradient_error(objective: Callable, reference: Callable, params) -> GradientError:
    """||grad objective(w) - grad reference(w)|| and that over ||grad reference(w)||, at w = params.

    objective, reference: params -> scalar (e.g. functools.partial of a task objective and of
    its exact-retraining objective).
    """
    grad, reference_grad = jax.grad(objective)(params), jax.grad(reference)(params)
    absolute = optax.tree.norm(optax.tree.sub(grad, reference_grad))
    return GradientError(absolute, absolute / optax.tree.norm(reference_grad))
