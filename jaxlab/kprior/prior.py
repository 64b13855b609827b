"""Knowledge-adaptation priors (Khan & Swaroop, NeurIPS 2021): the losses and the prior itself.

Exponential-family losses with canonical (inverse) link h, written as l(t, f) with t a target
in mean space and f the model output (logits):

    softmax cross-entropy   l = -sum_c t_c log softmax(f)_c       h = softmax
    sigmoid cross-entropy   l = softplus(f) - t f  (per output)   h = sigmoid
    squared error           l = 1/2 ||f - t||^2                   h = identity

For all three dl/df = h(f) - t, so for a model f_w with Jacobian J the data gradient is
J^T (h(f_w) - t); with t = h(f_{w*}) (the "soft labels") the loss is, up to a constant in w,
the Bregman divergence of the log-partition, KL(old || new) for softmax outputs.

Base model trained on past data D with L2 strength delta:

    Lbar(w) = sum_{i in D} l(y_i, f_w(x_i)) + delta/2 ||w||^2,      w* = argmin Lbar

K-prior with memory M (past inputs only, no labels):

    K(w; w*, M) = sum_{m in M} l(h(f_{w*}(x_m)), f_w(x_m)) + delta/2 ||w - P w*||^2
    grad K(w)   = J_w^T (h(f_w) - h(f_{w*})) + delta (w - P w*)

P is the identity unless the parameter space changes (e.g. GLM degree 2 -> 1 keeps the weights
of the shared features); for a change of network there is no weight term (delta/2 ||w||^2).
For a GLM with M = D and the exact w*, grad K(w) = grad Lbar(w) - grad Lbar(w*) = grad Lbar(w)
for every w: swapping Lbar for K in any objective leaves its gradient field unchanged.

Params are any pytree; `apply_fn(params, inputs) -> outputs` (e.g. a Flax module's `apply`
with the variables dict as params). Objectives are sums over examples (not means).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxlab.registry import Registry

ApplyFn = Callable[[Any, jax.Array], jax.Array]
Projection = Callable[[Any], Any]


def _sum_per_example(values: jax.Array) -> jax.Array:
    """(N, ...) -> (N,): sum over every axis but the first."""
    return values.reshape(values.shape[0], -1).sum(axis=1)


def softmax_cross_entropy(targets: jax.Array, logits: jax.Array) -> jax.Array:
    """-sum_c t_c log softmax(f)_c per example; targets (N, C) one-hot or soft."""
    chex.assert_equal_shape([targets, logits])
    return optax.softmax_cross_entropy(logits, targets)


def sigmoid_cross_entropy(targets: jax.Array, logits: jax.Array) -> jax.Array:
    """sum over outputs of softplus(f) - t f = -[t log sigmoid(f) + (1 - t) log(1 - sigmoid(f))]."""
    chex.assert_equal_shape([targets, logits])  # (N,) targets against (N, 1) logits would broadcast to (N, N)
    return _sum_per_example(jax.nn.softplus(logits) - targets * logits)


def squared_error(targets: jax.Array, outputs: jax.Array) -> jax.Array:
    """1/2 ||f - t||^2 per example (Gaussian likelihood, unit variance, identity link)."""
    chex.assert_equal_shape([targets, outputs])
    return _sum_per_example(0.5 * jnp.square(outputs - targets))


def _softmax_curvature(logits):
    probs = jax.nn.softmax(logits)
    return jnp.sum(probs * (1 - probs), axis=-1)


def _sigmoid_curvature(logits):
    probs = jax.nn.sigmoid(logits)
    return _sum_per_example(probs * (1 - probs))


@dataclasses.dataclass(frozen=True)
class ExpFamilyLoss:
    """A loss l(t, f) per example, its inverse link h (f -> mean), and curvature = tr h'(f) per example.

    The curvature is the memory score lambda_i of `jaxlab.kprior.memory`.
    """

    name: str
    loss: Callable[[jax.Array, jax.Array], jax.Array]
    inverse_link: Callable[[jax.Array], jax.Array]
    curvature: Callable[[jax.Array], jax.Array]


SOFTMAX = ExpFamilyLoss("softmax", softmax_cross_entropy, jax.nn.softmax, _softmax_curvature)
SIGMOID = ExpFamilyLoss("sigmoid", sigmoid_cross_entropy, jax.nn.sigmoid, _sigmoid_curvature)
SQUARED = ExpFamilyLoss("squared", squared_error, lambda outputs: outputs,
                        lambda outputs: _sum_per_example(jnp.ones_like(outputs)))
LOSSES = Registry("exponential-family loss", "kprior.loss")  # name -> ExpFamilyLoss
for _loss in (SOFTMAX, SIGMOID, SQUARED):
    LOSSES.register(_loss.name, _loss)


def data_loss(params, apply_fn: ApplyFn, inputs, targets, loss: ExpFamilyLoss = SOFTMAX) -> jax.Array:
    """sum_i l(t_i, f_w(x_i))."""
    return jnp.sum(loss.loss(targets, apply_fn(params, inputs)))


def weight_penalty(params, delta, anchor=None) -> jax.Array:
    """delta/2 ||w - anchor||^2 (anchor None: delta/2 ||w||^2)."""
    difference = params if anchor is None else optax.tree.sub(params, jax.lax.stop_gradient(anchor))
    return 0.5 * delta * optax.tree.norm(difference, squared=True)


def regularised_loss(params, apply_fn: ApplyFn, inputs, targets, delta, loss: ExpFamilyLoss = SOFTMAX) -> jax.Array:
    """Lbar(w) = sum_i l(y_i, f_w(x_i)) + delta/2 ||w||^2: the base, Batch and full-retraining objective."""
    return data_loss(params, apply_fn, inputs, targets, loss) + weight_penalty(params, delta)


def predictions(apply_fn: ApplyFn, params, inputs, loss: ExpFamilyLoss = SOFTMAX) -> jax.Array:
    """h(f_w(x)): the model's mean predictions; of the old model on the memory, the K-prior's soft labels."""
    return loss.inverse_link(apply_fn(params, inputs))


def kprior_loss(params, apply_fn: ApplyFn, memory_inputs, anchor_predictions, anchor_params, delta,
                loss: ExpFamilyLoss = SOFTMAX, projection: Projection | None = None) -> jax.Array:
    """K(w) = sum_m l(h(f_{w*}(x_m)), f_w(x_m)) + delta/2 ||w - P w*||^2.

    anchor_predictions: h(f_{w*}(x_m)), computed once (`predictions`). anchor_params: w* (None: no
    weight term, delta/2 ||w||^2 instead, for a change of network). projection: P, maps w* into
    the space of w (None: identity). jax.grad gives J^T (h(f_w) - h(f_{w*})) + delta (w - P w*).
    """
    anchor = None
    if anchor_params is not None:
        anchor = anchor_params if projection is None else projection(anchor_params)
    fit = data_loss(params, apply_fn, memory_inputs, jax.lax.stop_gradient(anchor_predictions), loss)
    return fit + weight_penalty(params, delta, anchor)


@struct.dataclass
class KPrior:
    """K(w; w*, M) with everything but w fixed: a pytree (arrays are leaves), callable on params.

    `apply_fn` is the model being trained (for a change of model, the NEW model; the soft labels
    came from the old one). Pass it through jit as an argument rather than closing over it.
    In the data-parallel trainer (a minibatch MEAN data loss) the prior enters as
    `jaxlab.kprior.minibatch.minibatch_prior_extension`, an unbiased minibatch estimate of K(w) / N_new.
    """

    memory_inputs: jax.Array
    anchor_predictions: jax.Array
    anchor_params: Any
    delta: jax.Array
    apply_fn: ApplyFn = struct.field(pytree_node=False)
    loss: ExpFamilyLoss = struct.field(pytree_node=False, default=SOFTMAX)
    projection: Projection | None = struct.field(pytree_node=False, default=None)

    def __call__(self, params) -> jax.Array:
        return kprior_loss(params, self.apply_fn, self.memory_inputs, self.anchor_predictions,
                           self.anchor_params, self.delta, self.loss, self.projection)

    @property
    def memory_size(self) -> int:
        return self.memory_inputs.shape[0]


def make_kprior(apply_fn: ApplyFn, params, memory_inputs, delta, loss: ExpFamilyLoss = SOFTMAX, *,
                new_apply_fn: ApplyFn | None = None, projection: Projection | None = None,
                weight_term: bool = True) -> KPrior:
    """The K-prior of the model (apply_fn, params = w*) on memory_inputs.

    Change of model: `new_apply_fn` is the model to be trained (default: the same), `projection`
    maps w* into its parameter space; `weight_term=False` drops delta/2 ||w - P w*||^2 for
    delta/2 ||w||^2 (a different network: distillation on the memory).
    """
    return KPrior(memory_inputs=memory_inputs,
                  anchor_predictions=predictions(apply_fn, params, memory_inputs, loss),
                  anchor_params=params if weight_term else None,
                  delta=jnp.asarray(delta, jax.tree.leaves(params)[0].dtype),
                  apply_fn=new_apply_fn or apply_fn, loss=loss, projection=projection)
