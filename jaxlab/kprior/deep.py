"""K-priors for networks trained by minibatch SGD through the data-parallel trainer.

    run_deep_kprior_experiment(config, workdir)   # experiment "kprior_deep" (configs/kprior/mnist_add_data.py,
                                                  #                            configs/kprior/split_mnist.py)

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

One compiled train step for the whole experiment: the prior's arrays (`deep_prior_inputs`: the memory padded with
zero rows to the size of the training subset, soft or one-hot targets, the anchor, |M|, delta, N) reach the step
as a jit argument (`train_and_evaluate(extra_loss_inputs=...)`), never as constants, and every method is the same
code with different arrays (Replay: one-hot targets and a zero anchor; no memory: |M| = 0). So every run of a
task has the same program, compiled once and then read from the persistent compilation cache.

Methods (all through `jaxlab.train.train_and_evaluate`, same optimiser, same number of steps):

    kprior    new data + the minibatch K-prior above, from w*
    replay    the same memory points with their TRUE labels: a `KPrior` whose targets are one-hot labels and
              whose weight term is delta/2 ||w||^2 (no anchor), the same code path and weighting
    finetune  new data only, from w*, + delta / (2 N_new) ||w||^2 (Replay with an empty memory)
    batch     retraining from scratch on all the data (past + new), + delta / (2 N) ||w||^2

The base model w* minimises Lbar / N = mean_D l + delta / (2 N) ||w||^2 the same way. Models must not carry
BatchNorm statistics (f_w must be a function of the params alone: config.model.name mlp, lenet or glm).

Tasks (config.kprior.tasks):

    add_data    base = the (sub)set without digit config.kprior.add_digit, new data = that digit; tested on
                all digits of the test split. Memory: config.kprior.memory_selection (class-balanced top-lambda
                or random) of fraction f of the base data, soft labels of w*.
    continual   split-MNIST style: task t holds classes (2t, 2t+1) (5 tasks on MNIST). DOMAIN-incremental,
                single head: the label is the class mod 2 (first/second digit of the pair), one 2-output
                network for all tasks, so the trainer's plain softmax loss applies unchanged. Task 1 trains w_1
                from scratch; task t > 1 trains from w_{t-1} with the K-prior of w_{t-1} on M_{t-1}; after each task
                M_t = M_{t-1} u (fraction f of task t's points, selected with w_t's scores) and the soft labels
                are those of the LAST model on the whole memory (as `jaxlab.kprior.tasks.continual_learning`).
                Replay keeps the same per-task memory (chosen with its own models) with true labels; finetune
                trains on each task from the last model; batch retrains once on all tasks. Reported: the mean
                over tasks of the test accuracy on each task's classes, after the last task.
    continual_multihead   the same sequence TASK-incremental: the label is the class, the network has an output
                per class and each task its own 2-class head (training.head_size = 2: the loss, the prediction and
                the accuracy of an example use the softmax over its task's two logits; the task is known at train
                and test time, `jaxlab.train.step.head_logits`). The memory term uses each memory point's own head
                (soft labels of the last model on that head); the memory is balanced over each task's two classes.

grad_error (add_data): at the method's final w, with full-batch gradients of the per-N_new objectives,
||grad J_method(w) - grad J_retrain(w)|| / ||grad J_retrain(w*)||, J_retrain = (Lbar + sum_{D+} l) / N_new
(the fraction of the retraining gradient at the start left unexplained; K-prior with M = D: 0 for a GLM at the
exact w*, see tests). 0 for batch; null for continual (no single retraining objective per step).

Outputs in the workdir: results.json (records task, method, memory_fraction, seed, test_accuracy, grad_error,
memory_size, seconds), accuracy_vs_memory.png, and runs/<task>/seed<s>/base (the kept base checkpoints). The
run is resumable: records already in results.json are skipped, a finished base model is restored from its
checkpoint, every other run directory is deleted once its record is written.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.config import require
from jaxlab.data import from_arrays, to_float
from jaxlab.kprior.experiments import summarize
from jaxlab.kprior.gradients import gradient_error
from jaxlab.kprior.memory import memory_scores, select_memory
from jaxlab.kprior.prior import SOFTMAX, KPrior, data_loss, make_kprior, regularised_loss, weight_penalty
from jaxlab.kprior.tasks import add_data
from jaxlab.train.step import example_keys, head_logits

TASKS = ("add_data", "continual", "continual_multihead")
METHODS = ("kprior", "replay", "finetune", "batch")
MODELS = ("mlp", "lenet", "glm")  # no BatchNorm statistics: f_w is a function of the params alone
SELECTIONS = ("lambda", "random")
RECORD_KEYS = ("task", "method", "memory_fraction", "seed", "test_accuracy", "grad_error")


# ------------------------------------------------------------------------------------ the extra loss

def memory_indices(rng: jax.Array, step: jax.Array, indices: jax.Array, memory_size: int) -> jax.Array:
    """One uniform draw from [0, memory_size) per example of the local batch: key fold_in(fold_in(rng, step),
    index_i) (`jaxlab.train.step.example_keys`), so deterministic per (rng, step, example) and device-count free."""
    keys = example_keys(rng, step, indices)
    return jax.vmap(lambda key: jax.random.randint(key, (), 0, memory_size))(keys)


def deep_prior_inputs(prior: KPrior, params, num_examples: int, capacity: int, memory_labels=None) -> dict:
    """The trainer's minibatch prior term as arrays (its `extra_loss_inputs`), the memory padded with zero rows to
    `capacity` so that runs with any memory size (and every method) share one compiled train step:

        memory_inputs (capacity, ...), memory_targets (capacity, C): the anchor's soft labels (K-prior) or one-hot
        labels (Replay); anchor: w* (K-prior) or zeros like `params` (no anchor: delta/2 ||w||^2); memory_size |M|
        (int32, 0 for no memory: fine-tuning, retraining, a base model); delta; num_examples N (the run's
        training points); memory_labels (capacity,): the memory points' labels, read only with task-incremental
        heads (each point's loss over its own head; default zeros). A softmax prior on the trained model's own
        parameter space (no projection).
    """
    size = prior.memory_size
    if size > capacity:
        raise ValueError(f"the memory has {size} points, more than the capacity {capacity}")
    if prior.loss is not SOFTMAX or prior.projection is not None:
        raise ValueError("the trainer's minibatch prior is a softmax prior without a projection")
    pad = lambda a: np.concatenate([np.asarray(a), np.zeros((capacity - size, *np.shape(a)[1:]),  # noqa: E731
                                                            np.asarray(a).dtype)])
    anchor = (prior.anchor_params if prior.anchor_params is not None else
              jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), params))
    delta = np.asarray(prior.delta)
    labels = np.zeros(size, np.int32) if memory_labels is None else np.asarray(memory_labels, np.int32)
    return dict(memory_inputs=pad(prior.memory_inputs), memory_targets=pad(prior.anchor_predictions),
                memory_labels=pad(labels), anchor=jax.tree.map(np.asarray, anchor), memory_size=np.int32(size),
                delta=delta, num_examples=np.asarray(num_examples, delta.dtype))


def deep_prior_loss(params, inputs: dict, apply_fn: Callable, indices: jax.Array, head_size: int = 0) -> jax.Array:
    """|M| / (B N) sum_b l(t_{m_b}, f_w(x_{m_b})) + delta / (2 N) ||w - anchor||^2 on the B memory rows `indices`:
    under uniform draws from the |M| rows, an unbiased estimate of K(w) / N (see the module docstring); 0 memory
    term when |M| = 0. head_size > 0: f_w over each point's own task head (`jaxlab.train.step.head_logits`)."""
    outputs = head_logits(apply_fn(params, jnp.take(inputs["memory_inputs"], indices, axis=0)),
                          jnp.take(inputs["memory_labels"], indices, axis=0), head_size)
    targets = jnp.take(inputs["memory_targets"], indices, axis=0)
    weight = inputs["memory_size"] / (indices.shape[0] * inputs["num_examples"])
    return (weight * jnp.sum(SOFTMAX.loss(targets, outputs))
            + weight_penalty(params, inputs["delta"] / inputs["num_examples"], inputs["anchor"]))


def make_extra_loss(apply_fn: Callable, head_size: int = 0) -> Callable:
    """The trainer's `extra_loss(params, batch, rng)`: `deep_prior_loss` on one memory draw per example of the local
    batch, its arrays read from batch["extra_loss_inputs"] (`deep_prior_inputs`, a jit argument of the step)."""

    def extra_loss(params, batch, rng):
        inputs = batch["extra_loss_inputs"]
        draws = memory_indices(rng, batch["step"], batch["index"], jnp.maximum(inputs["memory_size"], 1))
        return deep_prior_loss(params, inputs, apply_fn, draws, head_size)

    return extra_loss


def no_memory(apply_fn: Callable, inputs_like, num_classes: int, delta) -> KPrior:
    """An empty memory (fine-tuning, retraining, a base model): its extra loss is delta / (2 N) ||w||^2 alone."""
    return replay_prior(apply_fn, inputs_like[:0], np.zeros(0, np.int32), num_classes, delta)


def replay_prior(apply_fn: Callable, memory_inputs, memory_labels, num_classes: int, delta) -> KPrior:
    """Replay's memory term sum_M l(y_m, f_w(x_m)) + delta/2 ||w||^2 as a `KPrior` (one-hot targets, no anchor)."""
    return KPrior(memory_inputs=memory_inputs, anchor_predictions=jax.nn.one_hot(memory_labels, num_classes),
                  anchor_params=None, delta=jnp.asarray(delta, jnp.float32), apply_fn=apply_fn)


# ------------------------------------------------------------------------------------ validation


def check_deep_config(config) -> None:
    """ConfigError naming the field for an invalid kprior_deep config (before loading data or compiling)."""
    k = config.kprior
    require(len(k.tasks) > 0 and all(t in TASKS for t in k.tasks), "kprior.tasks",
             f"the deep K-prior experiment runs tasks from {TASKS}, got {tuple(k.tasks)}")
    require(len(k.methods) > 0 and all(m in METHODS for m in k.methods), "kprior.methods",
             f"must be a non-empty subset of {METHODS}, got {tuple(k.methods)}")
    require(len(set(k.methods)) == len(k.methods) and len(set(k.tasks)) == len(k.tasks), "kprior.methods",
             "tasks and methods must not repeat")
    require(len(k.memory_fractions) > 0 and all(0 < f <= 1 for f in k.memory_fractions), "kprior.memory_fractions",
             f"must be fractions in (0, 1], got {tuple(k.memory_fractions)}")
    require(len(k.seeds) > 0 and all(isinstance(s, int) and s >= 0 for s in k.seeds)
             and len(set(k.seeds)) == len(k.seeds), "kprior.seeds", f"must be distinct ints >= 0, got {tuple(k.seeds)}")
    require(k.delta > 0, "kprior.delta", f"must be positive, got {k.delta}")
    require(k.memory_selection in SELECTIONS, "kprior.memory_selection",
             f"{k.memory_selection!r} is not one of {SELECTIONS}")
    require(0 < k.subset_fraction <= 1, "kprior.subset_fraction", f"must be in (0, 1], got {k.subset_fraction}")
    require(config.model.name in MODELS, "model.name",
             f"the deep K-prior needs a model without BatchNorm statistics, one of {MODELS}; got {config.model.name!r}")
    require(config.optimizer.weight_decay == 0, "optimizer.weight_decay",
             f"must be 0: the L2 term is the objective's delta/2 ||w||^2 (kprior.delta), got "
             f"{config.optimizer.weight_decay}")
    require(config.training.num_train_steps > 0, "training.num_train_steps",
             "set a fixed number of steps per run (the new data of add_data is a tenth of the base data: "
             "epochs would give the adaptation runs a tenth of the steps)")


# ------------------------------------------------------------------------------------ data

def _arrays(dataset, subset_fraction: float, data_seed: int):
    """(x, y, x_test, y_test) as numpy, x a fixed random subset of the train split (the seed of config.data)."""
    train = dataset.train.__getitems__(np.arange(len(dataset.train)))
    test = dataset.test.__getitems__(np.arange(len(dataset.test)))
    keep = np.sort(np.random.default_rng(data_seed).permutation(len(train["label"]))[
        :max(1, int(round(subset_fraction * len(train["label"]))))])
    return train["image"][keep], train["label"][keep], test["image"], test["label"]


def _apply_fn(model) -> Callable:
    return lambda params, inputs: model.apply({"params": params}, to_float(inputs))


def _outputs(apply_fn, params, inputs, chunk: int = 4096) -> np.ndarray:
    apply = jax.jit(apply_fn)
    return np.concatenate([np.asarray(apply(params, inputs[i:i + chunk])) for i in range(0, len(inputs), chunk)])


def _select(apply_fn, params, inputs, labels, fraction: float, num_classes: int, selection: str, seed: int,
            head_size: int = 0):
    """Memory indices into `inputs`: class-balanced, `fraction` of the points (at least one per class). With
    task-incremental heads (head_size > 0; the points are one task's) lambda is scored on the task's head and the
    balance is over its head_size classes."""
    if head_size:
        num_classes = head_size
    size = max(num_classes, int(fraction * len(labels)))
    scores = None
    if selection == "lambda":
        scores = memory_scores(np.asarray(head_logits(_outputs(apply_fn, params, inputs), labels, head_size)))
    return select_memory(labels % num_classes if head_size else labels, size, selection, scores=scores,
                         num_classes=num_classes, seed=seed)


# ------------------------------------------------------------------------------------ the runner

class _Runner:
    """One trainer run per (task, method, fraction, seed) step; results.json kept up to date.

    `model`: the task's network (set per task); `capacity`: the padded memory size of every run (the training
    subset's size, which bounds any memory), so that all runs of a task share one compiled train step."""

    def __init__(self, config, workdir: str, log, mesh, capacity: int):
        self.config, self.workdir, self.log, self.mesh, self.capacity = config, workdir, log, mesh, capacity
        self.model = None
        self.path = os.path.join(workdir, "results.json")
        self.records = []
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.records = json.load(f)

    def done(self, task, method, fraction, seed) -> bool:
        return any((r["task"], r["method"], r["memory_fraction"], r["seed"]) == (task, method, float(fraction), seed)
                   for r in self.records)

    def add(self, **record) -> None:
        from jaxlab.train.metrics import write_json
        self.records.append(record)
        write_json(self.path, self.records)

    def train(self, name: str, seed: int, train_x, train_y, test_x, test_y, num_classes: int, *,
              prior: KPrior | None = None, start=None, memory_labels=None, head_size: int = 0) -> dict:
        """train_and_evaluate on (train_x, train_y) with the K-prior / Replay extra loss (no prior: the L2 term
        alone), from `start`; head_size > 0: task-incremental heads (training.head_size)."""
        from jaxlab.train import train_and_evaluate
        config = copy.deepcopy(self.config)
        config.seed = seed
        config.training.head_size = head_size
        dataset = from_arrays(train_x, train_y, test_x, test_y, num_classes=num_classes, name=name)
        apply_fn = _apply_fn(self.model)
        if prior is None:
            prior = no_memory(apply_fn, train_x, num_classes, self.config.kprior.delta)
        params_like = start if start is not None else jax.eval_shape(
            lambda: self.model.init(jax.random.PRNGKey(0), jnp.zeros((1, *train_x.shape[1:]), jnp.float32))["params"])
        inputs = deep_prior_inputs(prior, params_like, len(train_y), self.capacity, memory_labels)
        tic = time.perf_counter()
        result = train_and_evaluate(config, os.path.join(self.workdir, "runs", name), mesh=self.mesh,
                                    dataset=dataset, extra_loss=make_extra_loss(apply_fn, head_size),
                                    extra_loss_inputs=inputs,
                                    initial_variables=None if start is None else {"params": start})
        self.log(f"{name}: test accuracy {result['accuracy']:.4f} ({time.perf_counter() - tic:.1f}s)")
        return {**result, "params": result["state"].params}

    def clean(self, *names: str) -> None:
        for name in names:
            shutil.rmtree(os.path.join(self.workdir, "runs", name), ignore_errors=True)


def _run_add_data(runner: _Runner, arrays, num_classes: int, seed: int) -> None:
    k = runner.config.kprior
    x, y, x_test, y_test = arrays
    fractions = [float(f) for f in k.memory_fractions]
    todo = [(m, f) for m in k.methods for f in fractions if not runner.done("add_data", m, f, seed)]
    if not todo:
        return
    apply_fn = _apply_fn(runner.model)
    new = y == k.add_digit
    x_past, y_past, x_new, y_new = x[~new], y[~new], x[new], y[new]
    prefix = f"add_data/seed{seed}"
    base = runner.train(f"{prefix}/base", seed, x_past, y_past, x_test, y_test, num_classes)
    w_star = base["params"]
    reference = lambda w: (regularised_loss(w, apply_fn, x, jax.nn.one_hot(y, num_classes), k.delta)  # noqa: E731
                           / len(y_new))
    start_norm = float(jax.jit(lambda w: optax.tree.norm(jax.grad(reference)(w)))(w_star))
    new_targets = jax.nn.one_hot(y_new, num_classes)

    def record(method, fraction, result, prior, memory_size, seconds):
        if method == "batch":
            grad_error = 0.0
        else:
            objective = ((lambda w: add_data(w, prior, x_new, new_targets) / len(y_new)) if prior is not None else
                         (lambda w: (data_loss(w, apply_fn, x_new, new_targets) + weight_penalty(w, k.delta))
                          / len(y_new)))
            error = jax.jit(lambda w: gradient_error(objective, reference, w).absolute)
            grad_error = float(error(result["params"])) / start_norm
        for f in (fractions if method in ("finetune", "batch") else [fraction]):
            if not runner.done("add_data", method, f, seed):
                runner.add(task="add_data", method=method, memory_fraction=f, seed=seed,
                           test_accuracy=float(result["accuracy"]), grad_error=grad_error, memory_size=memory_size,
                           seconds=seconds)

    for method in ("batch", "finetune"):
        if any(m == method for m, _ in todo):
            tic = time.perf_counter()
            name = f"{prefix}/{method}"
            result = (runner.train(name, seed, x, y, x_test, y_test, num_classes) if method == "batch" else
                      runner.train(name, seed, x_new, y_new, x_test, y_test, num_classes, start=w_star))
            record(method, None, result, None, len(y_past) if method == "batch" else 0, time.perf_counter() - tic)
            runner.clean(name)
    for method, fraction in todo:
        if method in ("batch", "finetune"):
            continue
        tic = time.perf_counter()
        memory = _select(apply_fn, w_star, x_past, y_past, fraction, num_classes, k.memory_selection, seed)
        if method == "kprior":
            prior = make_kprior(apply_fn, w_star, jnp.asarray(x_past[memory]), k.delta)
        else:
            prior = replay_prior(apply_fn, jnp.asarray(x_past[memory]), y_past[memory], num_classes, k.delta)
        name = f"{prefix}/{method}_{fraction:g}"
        result = runner.train(name, seed, x_new, y_new, x_test, y_test, num_classes, prior=prior, start=w_star)
        record(method, fraction, result, prior, len(memory), time.perf_counter() - tic)
        runner.clean(name)


def _task_accuracy(result, test_digits, num_tasks: int) -> float:
    """Mean over tasks of the accuracy on each task's test points (task t: digits 2t, 2t + 1)."""
    correct = result["predictions"] == result["labels"]
    return float(np.mean([correct[test_digits // 2 == t].mean() for t in range(num_tasks)]))


def _run_continual(runner: _Runner, arrays, num_classes: int, seed: int, multihead: bool = False) -> None:
    """Split-MNIST style continual learning (see the module docstring): domain-incremental (one head, label = class
    mod 2) or, with `multihead`, task-incremental (label = class, one 2-class head per task: training.head_size 2)."""
    k = runner.config.kprior
    task_name = "continual_multihead" if multihead else "continual"
    x, digits, x_test, test_digits = arrays
    num_tasks = num_classes // 2
    fractions = [float(f) for f in k.memory_fractions]
    todo = [(m, f) for m in k.methods for f in fractions if not runner.done(task_name, m, f, seed)]
    if not todo:
        return
    apply_fn = _apply_fn(runner.model)
    head_size = 2 if multihead else 0
    outputs = num_classes if multihead else 2
    y, y_test = (digits, test_digits) if multihead else (digits % 2, test_digits % 2)
    tasks = [digits // 2 == t for t in range(num_tasks)]
    prefix = f"{task_name}/seed{seed}"

    def train(name, task, prior=None, start=None, memory_labels=None):
        return runner.train(name, seed, x[tasks[task]], y[tasks[task]], x_test, y_test, outputs, prior=prior,
                            start=start, memory_labels=memory_labels, head_size=head_size)

    def add(method, fractions_, result, memory_size, seconds):
        accuracy = _task_accuracy(result, test_digits, num_tasks)
        runner.log(f"{prefix} {method}: mean accuracy over the {num_tasks} tasks {accuracy:.4f}")
        for f in fractions_:
            if not runner.done(task_name, method, f, seed):
                runner.add(task=task_name, method=method, memory_fraction=f, seed=seed, test_accuracy=accuracy,
                           grad_error=None, memory_size=memory_size, seconds=seconds)

    if any(m == "batch" for m, _ in todo):
        tic = time.perf_counter()
        result = runner.train(f"{prefix}/batch", seed, x, y, x_test, y_test, outputs, head_size=head_size)
        add("batch", fractions, result, len(y), time.perf_counter() - tic)
        runner.clean(f"{prefix}/batch")
    chains = [(m, f) for m, f in todo if m in ("kprior", "replay")]
    if any(m == "finetune" for m, _ in todo):
        chains.append(("finetune", None))
    if not chains:
        return
    base = train(f"{prefix}/base", 0)
    for method, fraction in chains:
        tic = time.perf_counter()
        params, memory_x, memory_y, names = base["params"], [], [], []
        for task in range(1, num_tasks):
            prior, labels = None, None
            if method != "finetune":  # memory of the task just finished, chosen with the current model
                past = tasks[task - 1]
                chosen = _select(apply_fn, params, x[past], y[past], fraction, outputs, k.memory_selection,
                                 seed + task, head_size)
                memory_x.append(x[past][chosen])
                memory_y.append(y[past][chosen])
                inputs, labels = jnp.asarray(np.concatenate(memory_x)), np.concatenate(memory_y)
                if method == "kprior":  # soft labels of the last model, each point on its own task's head
                    soft = jax.nn.softmax(head_logits(jnp.asarray(_outputs(apply_fn, params, inputs)), labels,
                                                      head_size))
                    prior = KPrior(memory_inputs=inputs, anchor_predictions=soft, anchor_params=params,
                                   delta=jnp.asarray(k.delta, jnp.float32), apply_fn=apply_fn)
                else:
                    prior = replay_prior(apply_fn, inputs, labels, outputs, k.delta)
            names.append(f"{prefix}/{method}" + (f"_{fraction:g}" if fraction is not None else "") + f"/task{task}")
            result = train(names[-1], task, prior=prior, start=params, memory_labels=labels)
            params = result["params"]
        add(method, fractions if fraction is None else [fraction], result, sum(len(m) for m in memory_y),
            time.perf_counter() - tic)
        runner.clean(*names)


# ------------------------------------------------------------------------------------ summary and plot

def plot_accuracy_vs_memory(records: list[dict], path: str, title: str = "") -> None:
    """One panel per task: test accuracy vs memory (% of past data, log axis), methods as lines, mean and
    min-max band over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = summarize(records)
    tasks = [t for t in TASKS if any(r["task"] == t for r in records)]
    figure, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    styles = {"kprior": ("K-prior", "tab:blue", "o", "-"), "replay": ("Replay", "tab:orange", "s", "-"),
              "finetune": ("Fine-tuning", "tab:gray", None, ":"), "batch": ("Batch (retraining)", "black", None, "--")}
    for axis, task in zip(axes[0], tasks):
        for method, (label, color, marker, line) in styles.items():
            keys = sorted((key for key in stats if key[:2] == (task, method)), key=lambda key: key[2])
            if not keys:
                continue
            x = np.array([100 * key[2] for key in keys])
            mean, _, low, high = (np.array([stats[key][i] for key in keys]) for i in range(4))
            axis.plot(x, 100 * mean, color=color, marker=marker, linestyle=line, label=label)
            axis.fill_between(x, 100 * low, 100 * high, color=color, alpha=0.2)
        axis.set_xscale("log")
        axis.set_title({"add_data": "add data", "continual": "continual (domain-incremental)",
                        "continual_multihead": "continual (task-incremental, multi-head)"}[task])
        axis.set_xlabel("memory size (% of past data)")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ------------------------------------------------------------------------------------ entry point

def run_deep_kprior_experiment(config, workdir: str, dataset=None, mesh=None) -> dict[str, Any]:
    """Every task x method x memory fraction x seed of config.kprior, each a trainer run; writes results.json
    (resumable) and accuracy_vs_memory.png. `dataset`: a `jaxlab.data.Dataset` instead of config.data;
    `mesh`: the trainer's devices (default: all)."""
    from jaxlab import config as config_lib
    from jaxlab import models, parallel
    from jaxlab.data import load_dataset

    check_deep_config(config)
    mesh = mesh if mesh is not None else parallel.make_mesh()
    config_lib.validate(config, num_devices=mesh.size, process_count=jax.process_count())
    k = config.kprior
    name = f"{config.data.name or config.data.source} {config.model.name}"

    def log(message):
        print(f"[kprior_deep {name}] {message}", flush=True)

    start = time.perf_counter()
    if dataset is None:
        dataset = load_dataset(config.data)
    num_classes = dataset.num_classes
    if "add_data" in k.tasks:
        require(0 <= k.add_digit < num_classes, "kprior.add_digit",
                 f"{k.add_digit} is not a class of {dataset.name} (0..{num_classes - 1})")
    if "continual" in k.tasks or "continual_multihead" in k.tasks:
        require(num_classes >= 4 and num_classes % 2 == 0, "kprior.tasks",
                 f"continual needs an even number (>= 4) of classes for the pairs (0, 1), (2, 3), ...; "
                 f"{dataset.name} has {num_classes}")
    arrays = _arrays(dataset, k.subset_fraction, config.data.seed)
    os.makedirs(workdir, exist_ok=True)
    runner = _Runner(config, workdir, log, mesh, capacity=len(arrays[1]))
    log(f"{len(arrays[1])} training / {len(arrays[3])} test examples; tasks {tuple(k.tasks)}, methods "
        f"{tuple(k.methods)}, memory {tuple(k.memory_fractions)}, seeds {tuple(k.seeds)}; "
        f"{len(runner.records)} records already in results.json")
    for task in k.tasks:
        runner.model = models.create_model(config.model, 2 if task == "continual" else num_classes)
        for seed in k.seeds:
            if task == "add_data":
                _run_add_data(runner, arrays, num_classes, seed)
            else:
                _run_continual(runner, arrays, num_classes, seed, multihead=task == "continual_multihead")
    wall = time.perf_counter() - start
    plot = os.path.join(workdir, "accuracy_vs_memory.png")
    plot_accuracy_vs_memory(runner.records, plot, title=name)
    for (task, method, fraction), (mean, std, _, _) in sorted(summarize(runner.records).items()):
        log(f"{task:9s} {method:8s} memory {fraction:6.3f}: {mean:.4f} +- {std:.4f}")
    log(f"done in {wall:.1f}s: {len(runner.records)} records -> {runner.path}, {plot}")
    return {"results": runner.path, "plot": plot, "wall_time_s": wall, "num_records": len(runner.records)}
