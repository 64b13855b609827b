"""The data-parallel train and eval steps (per-device code under `jax.shard_map`).

Gradient scaling: the loss is `pmean`-ed INSIDE the differentiated function, so the
gradient w.r.t. the replicated params is the gradient of the global-batch mean loss on
any number of devices (taking `pmean(grad(local_loss))` instead would be N times too
large under shard_map's varying-manual-axes checking).
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from jaxlab import parallel
from jaxlab.data import to_float
from jaxlab.train.extension import Extension
from jaxlab.train.state import TrainState

Batch = dict[str, jax.Array]


class Augment(Protocol):
    """On-device augmentation of the local shard (see jaxlab.augment.build_pipeline).

    keys[i] = fold_in(fold_in(rng, step), index[i]); returns the images and (B, K) soft
    targets (one-hot unless a batch op such as mixup mixed them).
    """

    def __call__(self, keys: jax.Array, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]: ...


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy against (optionally smoothed) one-hot labels."""
    return soft_cross_entropy(logits, jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)


def soft_cross_entropy(logits: jax.Array, targets: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """-sum_k t_k log softmax(logits)_k with t = (1 - eps) targets + eps / K."""
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


MASKED_LOGIT = -1e9  # a logit outside the example's head: softmax weight exp(-1e9) = 0, finite in the loss


def head_logits(logits: jax.Array, labels: jax.Array, head_size: int) -> jax.Array:
    """Task-incremental (multi-head) logits: with head_size = k > 0 the classes form heads of k consecutive classes
    (split-MNIST: (0, 1), (2, 3), ...) and an example only sees its own label's head (the task is known at train
    and test time): logits of the other classes become MASKED_LOGIT, so the softmax, the loss, the argmax and the
    accuracy are over the k classes of its task. head_size 0: the logits unchanged (one head over all classes)."""
    if head_size == 0:
        return logits
    heads = jnp.arange(logits.shape[-1]) // head_size
    return jnp.where(heads == (labels // head_size)[..., None], logits, MASKED_LOGIT)


def all_finite(tree) -> jax.Array:
    """One boolean: every entry of every leaf of `tree` is finite (one fused reduction inside the step)."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def example_keys(rng: jax.Array, step: jax.Array, indices: jax.Array) -> jax.Array:
    """keys[i] = fold_in(fold_in(rng, step), index[i]): independent of device count and
    batch position, and identical after a resume."""
    step_key = jax.random.fold_in(rng, step)
    return jax.vmap(lambda i: jax.random.fold_in(step_key, i))(indices)


def _variables(params, batch_stats):
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def make_train_step(model, tx: optax.GradientTransformation, mesh: Mesh, *, num_classes: int,
                    label_smoothing: float = 0.0, augment: Augment | None = None,
                    extensions: Sequence[Extension] = (), head_size: int = 0
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """jit(shard_map(step)): (state, global batch) -> (new state, metrics), state donated.

    Each extension (jaxlab.train.extension) may add a loss term, called with its `loss_inputs` (replicated once
    onto the mesh, passed to every step as a jit argument), and parameter metrics of the params the step starts
    from (e.g. the cosine of a replicated layer's copies). `head_size` > 0: task-incremental heads (`head_logits`) for the task
    loss and the accuracy.
    """
    terms = [(e.loss, i) for i, e in enumerate(extensions) if e.loss is not None]

    def step(state: TrainState, batch: Batch, inputs):
        images = to_float(batch["image"])
        labels = batch["label"]
        if augment is None:
            targets = jax.nn.one_hot(labels, num_classes)
        else:
            images, targets = augment(example_keys(state.rng, state.step, batch["index"]), images, labels)
        extension_rng = jax.random.fold_in(jax.random.split(state.rng)[1], state.step)  # a stream apart from augment's

        def loss_fn(params):
            logits, mutated = model.apply(_variables(params, state.batch_stats), images, train=True,
                                          mutable=["batch_stats"])
            logits = head_logits(logits, labels, head_size)
            task = jnp.mean(soft_cross_entropy(logits, targets, label_smoothing))
            extension_batch = {**batch, "step": state.step}
            local = task + sum(loss(params, extension_batch, extension_rng, inputs[i]) for loss, i in terms)
            return jax.lax.pmean(local, parallel.AXIS), (task, logits, mutated)

        (loss, (task, logits, mutated)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new_state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            # Running BN averages: per-device batches, averaged so the state stays replicated.
            batch_stats=jax.lax.pmean(mutated.get("batch_stats", {}), parallel.AXIS),
            opt_state=opt_state,
        )
        grad_norm = optax.tree.norm(grads)
        metrics = {
            "loss": loss,
            "task_loss": jax.lax.pmean(task, parallel.AXIS),
            "accuracy": jax.lax.pmean(jnp.mean(jnp.argmax(logits, -1) == labels), parallel.AXIS),
            "grad_norm": grad_norm,
            "finite": all_finite((loss, grad_norm, new_state.params, new_state.batch_stats)),
        }
        for extension in extensions:
            if extension.param_metrics is not None:
                metrics.update(extension.param_metrics(state.params))
        return new_state, metrics

    compiled = parallel.data_parallel(step, mesh, in_specs=(parallel.REPLICATED, parallel.BATCH, parallel.REPLICATED),
                                      out_specs=(parallel.REPLICATED, parallel.REPLICATED), donate_argnums=(0,))
    inputs = parallel.replicate(tuple(e.loss_inputs for e in extensions), mesh)
    return lambda state, batch: compiled(state, batch, inputs)


def make_eval_step(model, mesh: Mesh, num_classes: int, *, transform: Callable[[jax.Array], jax.Array] | None = None,
                   head_size: int = 0) -> Callable[[TrainState, Batch], tuple[dict, dict]]:
    """(state, padded global batch with "mask") -> (summed stats, per-example "prediction" and "label").

    `transform` is the deterministic eval-time preprocessing (e.g. centre crop + normalise); `head_size` > 0:
    each example is predicted within its label's head (`head_logits`, task-incremental evaluation).

    Stats: "loss_sum" (masked cross-entropy sum) and "confusion" [true, predicted] counts,
    from which every per-class metric follows; padded examples count nowhere.
    """

    def step(state: TrainState, batch: Batch):
        images = to_float(batch["image"])
        if transform is not None:
            images = transform(images)
        logits = head_logits(model.apply(_variables(state.params, state.batch_stats), images, train=False),
                             batch["label"], head_size)
        mask = batch["mask"]
        predictions = jnp.argmax(logits, -1)
        true = jax.nn.one_hot(batch["label"], num_classes) * mask[:, None]
        confusion = true.T @ jax.nn.one_hot(predictions, num_classes)
        stats = {
            "loss_sum": jnp.sum(cross_entropy(logits, batch["label"]) * mask),
            "confusion": confusion,
        }
        return jax.lax.psum(stats, parallel.AXIS), {"prediction": predictions, "label": batch["label"]}

    return parallel.data_parallel(step, mesh, in_specs=(parallel.REPLICATED, parallel.BATCH),
                                  out_specs=(parallel.REPLICATED, parallel.BATCH))
