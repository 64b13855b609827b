"""The K-prior (or Replay) for networks trained by minibatch SGD: an extra loss term of the data-parallel trainer.

The objective (Khan & Swaroop 2021; notation of `jaxlab.kprior.prior`) for new data D+ of N_new points and a
memory M of past inputs with the old model w*:

    J(w) = sum_{D+} l(y, f_w(x)) + K(w; w*, M),   K = sum_{m in M} l(h(f_{w*}(x_m)), f_w(x_m)) + delta/2 ||w - w*||^2

The trainer minimises a per-example MEAN over a minibatch of D+, so it sees J / N_new:

    J / N_new = mean_{D+} l  +  (|M| / N_new) mean_{m in M} l(h(f_*^m), f_w(x_m))  +  delta / (2 N_new) ||w - w*||^2

The extra loss (`deep_prior_loss`) is an unbiased minibatch estimate of the last two terms: B memory points m_b
drawn uniformly with replacement, one per example of the local data batch (`memory_indices`: the key of example
i at step t is fold_in(fold_in(rng, t), index_i), so the draw depends only on (rng, step, example index): the
same on any number of devices and after a resume), and

    extra(w) = |M| / (B N_new) sum_b l(h(f_*^{m_b}), f_w(x_{m_b}))  +  delta / (2 N_new) ||w - w*||^2

so E[extra] = K(w) / N_new exactly. The memory weight |M| / N_new is what the paper's summed objective implies: the
memory stands in for the |M| past points (all of D when M = D) against the N_new new ones. (The official code
divides the summed objective by N_new + |M| instead: a rescaling of the step size, not of the optimum; the
trainer's data term has weight 1, so here the division is by N_new.)

Remove data and change of model have no new data: the trainer's data stream is the memory itself (less D-), and
since the trainer always adds the mean true-label loss of its stream, the objective is split with the softmax
cross-entropy's linearity in its targets (S = h(f_{w*}(x)) the old model's soft labels, y one-hot):
l(S, f) = l(y, f) + l(S - y, f), where S - y sums to 0 and l(S - y, f) = (y - S)^T f (the log-partition cancels;
gradient J^T (y - S)). `residual_prior` stores the targets S_m - y_m for the extension's term.

    remove data D- (inside M; M_r = M minus D-, N_r = |M_r|; data stream M_r with true labels):
        J(w)     = K(w) - sum_{D-} l(y, f_w)
                 = sum_{M_r} l(y_m, f_w(x_m)) + sum_{m in M} l(S_m - y_m, f_w(x_m)) + delta/2 ||w - w*||^2
        J / N_r  = mean_{M_r} l  +  (|M| / N_r) mean_{m in M} l(S_m - y_m, f_w(x_m))  +  delta / (2 N_r) ||w - w*||^2
    change of model (a new network theta, the soft labels S of the old one; data stream M with true labels):
        J(theta)     = sum_M l(S_m, f_theta(x_m)) + delta/2 ||theta||^2
                     = sum_M l(y_m, f_theta(x_m)) + sum_M l(S_m - y_m, f_theta(x_m)) + delta/2 ||theta||^2
        J / |M|      = mean_M l  +  mean_{m in M} l(S_m - y_m, f_theta(x_m))  +  delta / (2 |M|) ||theta||^2

Per step, with N the stream's size (N_r; |M| for a change of model), the trainer's task loss on its batch is an
unbiased estimate of the first term and `deep_prior_loss` on B draws m_b uniform over the whole memory M (D-
included) of the rest:

    extra(w) = |M| / (B N) sum_b l(S_{m_b} - y_{m_b}, f_w(x_{m_b}))  +  delta / (2 N) ||w - anchor||^2

(anchor w* for remove data, zeros for a change of model), so task loss + extra is an unbiased estimate of J / N.
With M = D, remove-data's J has the gradient of retraining on D minus D- at w*: J - (Lbar - sum_{D-} l) has
gradient sum_D J_w^T (y - S) - delta w*, which is -grad Lbar(w*) = 0 at w = w* (at every w for a GLM, whose J_w is
constant). The change of model's J with M = D is distillation on all of D (knowledge distillation). Replay on the
same stream is the true-label term alone (`no_memory`: delta / (2 N) ||w||^2).

One compiled train step for every run of an experiment: the prior's arrays (a `MinibatchPrior`: the memory padded
with zero rows to a fixed capacity, soft or one-hot targets, the anchor, |M|, delta, N) reach the step as the
extension's `loss_inputs`, a jit argument, never as constants, and every method is the same code with different
arrays (Replay: one-hot targets and a zero anchor, `replay_prior`; no memory: |M| = 0, `no_memory`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.kprior.prior import SOFTMAX, KPrior, weight_penalty
from jaxlab.train.extension import ExtensionFactory, loss_term
from jaxlab.train.step import example_keys, head_logits

EXTENSION = "kprior"  # the trainer extension's name


class MinibatchPrior(NamedTuple):
    """The trainer's minibatch prior term as arrays (the extension's `loss_inputs`), padded to a fixed capacity.

    memory_inputs (capacity, ...), memory_targets (capacity, C): the anchor's soft labels (K-prior), one-hot
    labels (Replay) or soft minus one-hot labels (`residual_prior`); memory_labels (capacity,): the memory points'
    labels, read only with task-incremental heads (each point's loss over its own head); anchor: w* (K-prior) or
    zeros like the params (no anchor: delta/2 ||w||^2); memory_size: |M| (int32, 0 for no memory: fine-tuning,
    retraining, a base model); delta; num_examples: N, the run's training points.
    """

    memory_inputs: Any
    memory_targets: Any
    memory_labels: Any
    anchor: Any
    memory_size: Any
    delta: Any
    num_examples: Any


def memory_indices(rng: jax.Array, step: jax.Array, indices: jax.Array, memory_size) -> jax.Array:
    """One uniform draw from [0, memory_size) per example of the local batch: key fold_in(fold_in(rng, step),
    index_i) (`jaxlab.train.step.example_keys`), so deterministic per (rng, step, example) and device-count free."""
    chex.assert_rank(indices, 1)
    keys = example_keys(rng, step, indices)
    return jax.vmap(lambda key: jax.random.randint(key, (), 0, memory_size))(keys)


def minibatch_prior(prior: KPrior, params, num_examples: int, capacity: int, memory_labels=None) -> MinibatchPrior:
    """The `MinibatchPrior` of a softmax `KPrior` on the trained model's own parameter space (no projection), the
    memory padded with zero rows to `capacity` so that runs with any memory size (and every method) share one
    compiled train step. `params`: the trained model's params (or their shapes), for a zero anchor when the prior
    has none; `memory_labels` (|M|,): for task-incremental heads (default zeros)."""
    size = prior.memory_size
    if size > capacity:
        raise ValueError(f"the memory has {size} points, more than the capacity {capacity}")
    if prior.loss is not SOFTMAX or prior.projection is not None:
        raise ValueError("the trainer's minibatch prior is a softmax prior without a projection")
    chex.assert_rank(prior.anchor_predictions, 2)
    pad = lambda a: np.concatenate([np.asarray(a), np.zeros((capacity - size, *np.shape(a)[1:]),  # noqa: E731
                                                            np.asarray(a).dtype)])
    anchor = (prior.anchor_params if prior.anchor_params is not None else
              jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), params))
    delta = np.asarray(prior.delta)
    labels = np.zeros(size, np.int32) if memory_labels is None else np.asarray(memory_labels, np.int32)
    chex.assert_shape(labels, (size,))
    return MinibatchPrior(memory_inputs=pad(prior.memory_inputs), memory_targets=pad(prior.anchor_predictions),
                          memory_labels=pad(labels), anchor=jax.tree.map(np.asarray, anchor),
                          memory_size=np.int32(size), delta=delta,
                          num_examples=np.asarray(num_examples, delta.dtype))


def deep_prior_loss(params, prior: MinibatchPrior, apply_fn: Callable, indices: jax.Array,
                    head_size: int = 0) -> jax.Array:
    """|M| / (B N) sum_b l(t_{m_b}, f_w(x_{m_b})) + delta / (2 N) ||w - anchor||^2 on the B memory rows `indices`:
    under uniform draws from the |M| rows, an unbiased estimate of K(w) / N (see the module docstring); 0 memory
    term when |M| = 0. head_size > 0: f_w over each point's own task head (`jaxlab.train.step.head_logits`)."""
    chex.assert_rank([indices, prior.memory_targets, prior.memory_labels], [1, 2, 1])
    outputs = head_logits(apply_fn(params, jnp.take(prior.memory_inputs, indices, axis=0)),
                          jnp.take(prior.memory_labels, indices, axis=0), head_size)
    targets = jnp.take(prior.memory_targets, indices, axis=0)
    weight = prior.memory_size / (indices.shape[0] * prior.num_examples)
    return (weight * jnp.sum(SOFTMAX.loss(targets, outputs))
            + weight_penalty(params, prior.delta / prior.num_examples, prior.anchor))


def minibatch_prior_loss(apply_fn: Callable, head_size: int = 0) -> Callable:
    """The trainer's loss term `loss(params, batch, rng, prior)`: `deep_prior_loss` on one memory draw per example
    of the local batch (batch["index"], batch["step"]), `prior` the extension's `MinibatchPrior` jit input."""

    def loss(params, batch, rng, prior: MinibatchPrior):
        draws = memory_indices(rng, batch["step"], batch["index"], jnp.maximum(prior.memory_size, 1))
        return deep_prior_loss(params, prior, apply_fn, draws, head_size)

    return loss


def minibatch_prior_extension(apply_fn: Callable, prior: MinibatchPrior, head_size: int = 0) -> ExtensionFactory:
    """The trainer extension (`jaxlab.train.Extension` factory, for `train_and_evaluate(extensions=[...])`) adding
    the minibatch K-prior / Replay term, its arrays `prior` passed to every step as a jit argument."""
    return loss_term(EXTENSION, minibatch_prior_loss(apply_fn, head_size), prior)


def residual_prior(prior: KPrior, memory_labels, num_classes: int) -> KPrior:
    """The K-prior's memory term for a trainer whose data stream is the memory (remove data: the memory minus D-;
    change of model: the memory): targets S_m - y_m, the soft labels minus the one-hot true labels, so that the
    stream's true-label loss plus this term is the K-prior objective (see the module docstring). Called on params:
    sum_M l(S - y, f_w) + the prior's weight term."""
    labels = jax.nn.one_hot(memory_labels, num_classes, dtype=prior.anchor_predictions.dtype)
    chex.assert_equal_shape([labels, prior.anchor_predictions])
    return prior.replace(anchor_predictions=prior.anchor_predictions - labels)


def replay_prior(apply_fn: Callable, memory_inputs, memory_labels, num_classes: int, delta) -> KPrior:
    """Replay's memory term sum_M l(y_m, f_w(x_m)) + delta/2 ||w||^2 as a `KPrior` (one-hot targets, no anchor)."""
    return KPrior(memory_inputs=memory_inputs, anchor_predictions=jax.nn.one_hot(memory_labels, num_classes),
                  anchor_params=None, delta=jnp.asarray(delta, jnp.float32), apply_fn=apply_fn)


def no_memory(apply_fn: Callable, inputs_like, num_classes: int, delta) -> KPrior:
    """An empty memory (fine-tuning, retraining, a base model): its extra loss is delta / (2 N) ||w||^2 alone."""
    return replay_prior(apply_fn, inputs_like[:0], np.zeros(0, np.int32), num_classes, delta)
