"""Adaptation tasks as objectives of the new params w: the K-prior's, Replay's, continual learning, and the
weighted (padded-memory) form the experiments vmap over seeds and memory sizes.

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

`adaptation_objective` is every one of these with the memory given as weighted points (an `AdaptationProblem`:
0/1 weights over a fixed-size, padded memory), so that problems of every memory size share one shape;
`glm_hessian` is its Hessian for the GLM `linear` (IRLS), for Newton's method.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp

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
from jaxlab.kprior.solvers import minimize

KINDS = ("kprior", "replay")  # the adaptation_objective kinds


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


# ------------------------------------------------------------------------------------ the padded memory


class AdaptationProblem(NamedTuple):
    """One adaptation problem with the memory as weighted points (softmax loss, N memory rows, C outputs).

    memory_inputs (N, ...): the model's inputs of the past points; memory_targets (N, C): their one-hot labels;
    memory_soft (N, C): the base model's soft labels h(f_{w*}(x)); memory_weight (N,): m_i, 1 for a point in the
    memory, 0 for padding; memory_removed (N,): r_i, 1 for a removed point D-; delta, new_delta: the base
    model's and the adapted model's L2 strengths; num_new: the number of new points (the official rescaling
    divides by num_new + |M|); anchor: the weight term's centre P w* (None: delta/2 ||w||^2, a change of
    network); new_inputs (N+, ...), new_targets (N+, C): the new data of add_data (None: none).

    vmap over problems with in_axes given as an AdaptationProblem of axes (`axes`).
    """

    memory_inputs: Any
    memory_targets: Any
    memory_soft: Any
    memory_weight: Any
    memory_removed: Any
    delta: Any
    new_delta: Any
    num_new: Any
    anchor: Any = None
    new_inputs: Any = None
    new_targets: Any = None

    def axes(self, batched: Sequence[str] = (), axis: int = 0) -> AdaptationProblem:
        """in_axes for vmap: `axis` for the fields named in `batched`, None (shared) for the others and for the
        absent optional fields."""
        return AdaptationProblem(*(axis if name in batched and value is not None else None
                                   for name, value in zip(self._fields, self)))


def adaptation_objective(params, problem: AdaptationProblem, apply_fn: Callable, kind: str) -> jax.Array:
    """One adaptation objective with the memory given as weighted points (weights 0/1: a padded memory).

    With m_i the memory weights, r_i the removed-point flags, S_i the soft labels h(f_{w*}(x_i)):

      kprior  sum_i m_i l(S_i, f_w(x_i)) - sum_i m_i r_i l(y_i, f_w(x_i)) + delta/2 ||w - anchor||^2
              + (delta' - delta)/2 ||w||^2 [+ sum_{D+} l]          (no anchor: delta/2 ||w||^2)
      replay  sum_i m_i (1 - r_i) l(y_i, f_w(x_i)) + delta'/2 ||w||^2 [+ sum_{D+} l]

    With m = 1 on the gathered memory these are add_data / remove_data / change_regulariser / the change-of-model
    objective and `replay` (tested); with m = 1 on all of D replay is exact retraining (Batch).
    """
    if kind not in KINDS:
        raise ValueError(f"adaptation objective kind {kind!r} is not one of {KINDS}")
    weight, removed = problem.memory_weight, problem.memory_removed
    chex.assert_rank([weight, removed, problem.memory_targets, problem.memory_soft], [1, 1, 2, 2])
    chex.assert_equal_shape_prefix([problem.memory_inputs, problem.memory_targets, problem.memory_soft, weight,
                                    removed], 1)
    outputs = apply_fn(params, problem.memory_inputs)
    if kind == "kprior":
        value = jnp.sum(weight * SOFTMAX.loss(problem.memory_soft, outputs))
        value -= jnp.sum(weight * removed * SOFTMAX.loss(problem.memory_targets, outputs))
        value += weight_penalty(params, problem.delta, problem.anchor)
        value += weight_penalty(params, problem.new_delta - problem.delta)
    else:
        value = jnp.sum(weight * (1 - removed) * SOFTMAX.loss(problem.memory_targets, outputs))
        value += weight_penalty(params, problem.new_delta)
    if problem.new_inputs is not None:
        chex.assert_rank(problem.new_targets, 2)
        value += jnp.sum(SOFTMAX.loss(problem.new_targets, apply_fn(params, problem.new_inputs)))
    return value


def linear(params, features):
    """The GLM f_W(x) = phi(x)^T W, features precomputed (`jaxlab.models.glm.polynomial_features`): the model
    `glm_hessian` is the Hessian for."""
    return features @ params


def glm_hessian(params, problem: AdaptationProblem, apply_fn: Callable, kind: str) -> jax.Array:
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
    chex.assert_rank([params, problem.memory_inputs, problem.memory_weight, problem.memory_removed], [2, 2, 1, 1])

    def curvature(features, kappa):
        """(C, C, d, d) blocks sum_i kappa_i A_i[c, c'] phi_i phi_i^T. A_i = diag(p_i) - p_i p_i^T is symmetric
        and its rows sum to 0, so only the (C-1)^2 leading blocks need a pass over the data (1 for C = 2)."""
        p = jax.nn.softmax(features @ params)[:, :-1]
        leading = kappa[:, None, None] * (jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :])
        blocks = jnp.einsum("ncka,nb->ckab", leading[..., None] * features[:, None, None, :], features)
        last_column = -jnp.sum(blocks, axis=1, keepdims=True)
        blocks = jnp.concatenate([blocks, last_column], axis=1)
        return jnp.concatenate([blocks, -jnp.sum(blocks, axis=0, keepdims=True)], axis=0)

    blocks = curvature(problem.memory_inputs, problem.memory_weight * (1 - problem.memory_removed))
    if problem.new_inputs is not None:
        blocks += curvature(problem.new_inputs, jnp.ones(len(problem.new_inputs), params.dtype))
    size = params.size
    hessian = jnp.einsum("ckab->acbk", blocks).reshape(size, size)  # row-major (d, C) order: a C + c
    return hessian + problem.new_delta * jnp.eye(size, dtype=params.dtype)
