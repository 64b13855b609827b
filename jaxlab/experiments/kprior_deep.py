"""The deep K-prior experiment: K-priors for networks trained by minibatch SGD through the data-parallel trainer.

    python -m jaxlab.main --config=configs/kprior/mnist_add_data.py --workdir=workdirs/kprior_mnist_add_data
    python -m jaxlab.main --config=configs/kprior/split_mnist.py --workdir=workdirs/kprior_split_mnist

Fragment: config.kprior (tasks, methods, memory_fractions, seeds, memory_selection, delta, subset_fraction,
add_digit). Every run is a `train_and_evaluate` run (same optimiser, same number of steps) with the minibatch
K-prior term of `jaxlab.kprior.minibatch` as a trainer extension (its arrays a jit argument: every run of a
task shares one compiled train step); the objective and its |M| / N_new weighting are described there.

Methods:

    kprior    new data + the minibatch K-prior, from w*
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
                are those of the LAST model on the whole memory (as `jaxlab.kprior.continual_learning`).
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

Resumable (`jaxlab.experiments.grid`): every trainer run is a grid run, <workdir>/runs/<task>/seed<s>/<run>,
its record in <workdir>/records/. The base models (runs/<task>/seed<s>/base) are kept: the adaptations start
from them (a rerun restores a finished base model from its checkpoint); every other run directory is deleted once
its record is written (a continual chain is one grid run, its tasks' runs under its directory). SIGTERM: the
running trainer run checkpoints, `run` returns {"finished": False, "preempted": True}; rerunning the same command
continues and gives the records an uninterrupted run gives (timing fields aside).

Outputs in the workdir: results.json (records task, method, memory_fraction, seed, test_accuracy, grad_error,
memory_size, seconds; rewritten after each record), accuracy_vs_memory.png (`jaxlab.experiments.reports`).
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxlab import models, parallel
from jaxlab.data import all_examples, from_arrays, load_dataset, to_float
from jaxlab.errors import require
from jaxlab.experiments.grid import Grid
from jaxlab.experiments.reports import plot_accuracy_vs_memory, summarize
from jaxlab.experiments.train import train_run
from jaxlab.kprior import (
    KPrior,
    add_data,
    data_loss,
    gradient_error,
    make_kprior,
    memory_scores,
    minibatch_prior,
    minibatch_prior_extension,
    no_memory,
    regularised_loss,
    replay_prior,
    select_memory,
    weight_penalty,
)
from jaxlab.train import Preempted
from jaxlab.train import validate as validate_training
from jaxlab.train.metrics import write_json
from jaxlab.train.step import head_logits

TASKS = ("add_data", "continual", "continual_multihead")
METHODS = ("kprior", "replay", "finetune", "batch")
MODELS = ("mlp", "lenet", "glm")  # no BatchNorm statistics: f_w is a function of the params alone
SELECTIONS = ("lambda", "random")
RESULTS_FILE = "results.json"
PLOT_FILE = "accuracy_vs_memory.png"


def extend_config(config) -> None:
    """config.kprior: the tasks x methods x memory fractions x seeds of the deep experiment."""
    config.kprior = ml_collections.ConfigDict(dict(
        tasks=("add_data",),      # add_data | continual | continual_multihead
        methods=METHODS,          # kprior | replay | finetune | batch (retraining on all the data)
        memory_fractions=(1.0, 0.5, 0.2, 0.1, 0.07, 0.05, 0.02),  # of the past data (continual: of each task)
        seeds=(0, 1, 2),          # initialisation, batch order, memory draws
        memory_selection="lambda",  # lambda (class-balanced top h'(f)) | random (class-balanced)
        delta=5.0,                # L2 strength: delta / (2 N) ||w||^2 in every run's per-example loss
        subset_fraction=0.01,     # a fixed random subset of the train split (drawn with config.data.seed)
        add_digit=9,              # add_data: the new data is this class
    ))


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
    require(len(set(k.memory_fractions)) == len(k.memory_fractions), "kprior.memory_fractions", "has duplicates")
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


def validate(config, *, num_devices: int, process_count: int = 1) -> None:
    """config.kprior's values, then the trainer's shared fields and the data source's (jaxlab.train.validate)."""
    check_deep_config(config)
    validate_training(config, num_devices=num_devices, process_count=process_count)


def _check_dataset(config, dataset) -> None:
    """The checks that need the dataset's classes (after loading, before training)."""
    k, num_classes = config.kprior, dataset.num_classes
    if "add_data" in k.tasks:
        require(0 <= k.add_digit < num_classes, "kprior.add_digit",
                f"{k.add_digit} is not a class of {dataset.name} (0..{num_classes - 1})")
    if "continual" in k.tasks or "continual_multihead" in k.tasks:
        require(num_classes >= 4 and num_classes % 2 == 0, "kprior.tasks",
                f"continual needs an even number (>= 4) of classes for the pairs (0, 1), (2, 3), ...; "
                f"{dataset.name} has {num_classes}")


# ------------------------------------------------------------------------------------ data and models


def _arrays(dataset, subset_fraction: float, data_seed: int):
    """(x, y, x_test, y_test) as numpy, x a fixed random subset of the train split (the seed of config.data)."""
    train, test = all_examples(dataset.train), all_examples(dataset.test)
    keep = np.sort(np.random.default_rng(data_seed).permutation(len(train["label"]))[
        :max(1, int(round(subset_fraction * len(train["label"]))))])
    return train["image"][keep], train["label"][keep], test["image"], test["label"]


def model_apply_fn(model) -> Callable:
    """f_w(x) of a registry model without BatchNorm statistics: apply_fn(params, raw images) -> logits."""
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


# ------------------------------------------------------------------------------------ the runs


class _Experiment:
    """The grid of trainer runs and the records: results.json rewritten after each record.

    `model`: the task's network (set per task); `capacity`: the padded memory size of every run (the training
    subset's size, which bounds any memory), so that all runs of a task share one compiled train step."""

    def __init__(self, config, grid: Grid, mesh, capacity: int):
        self.config, self.grid, self.mesh, self.capacity = config, grid, mesh, capacity
        self.model = None
        self.path = os.path.join(grid.workdir, RESULTS_FILE)
        self.records: list[dict] = []

    def add(self, records: list[dict]) -> None:
        self.records += records
        write_json(self.path, self.records)

    def settings(self, **run) -> dict:
        """What a grid run's result depends on (hashed into its record): the config without the sweep's lists and
        the data's location, and the run's own settings."""
        settings = self.config.to_dict()
        settings["kprior"] = {key: value for key, value in settings["kprior"].items()
                              if key not in ("tasks", "methods", "memory_fractions", "seeds")}
        settings["data"] = {key: value for key, value in settings["data"].items() if key not in ("dir", "path")}
        return {"config": settings, **run}

    def train(self, run_dir: str, seed: int, train_x, train_y, test_x, test_y, num_classes: int, *,
              prior: KPrior | None = None, start=None, memory_labels=None, head_size: int = 0) -> dict:
        """A trainer run in run_dir on (train_x, train_y) with the K-prior / Replay term (no prior: the L2 term
        alone), from `start`; head_size > 0: task-incremental heads (training.head_size). Raises Preempted when
        SIGTERM stopped it; a finished run_dir is restored (its final checkpoint), not trained again."""
        config = copy.deepcopy(self.config)
        config.seed = seed
        config.training.head_size = head_size
        dataset = from_arrays(train_x, train_y, test_x, test_y, num_classes=num_classes,
                              name=os.path.relpath(run_dir, os.path.join(self.grid.workdir, "runs")))
        apply_fn = model_apply_fn(self.model)
        if prior is None:
            prior = no_memory(apply_fn, train_x, num_classes, self.config.kprior.delta)
        params_like = start if start is not None else jax.eval_shape(
            lambda: self.model.init(jax.random.PRNGKey(0), jnp.zeros((1, *train_x.shape[1:]), jnp.float32))["params"])
        inputs = minibatch_prior(prior, params_like, len(train_y), self.capacity, memory_labels)
        tic = time.perf_counter()
        result = train_run(config, run_dir, mesh=self.mesh, dataset=dataset,
                           extensions=[minibatch_prior_extension(apply_fn, inputs, head_size)],
                           initial_variables=None if start is None else {"params": start})
        self.grid.log(f"{dataset.name}: test accuracy {result['accuracy']:.4f} ({time.perf_counter() - tic:.1f}s)")
        return {**result, "params": result["state"].params}

    def base(self, name: str, train: Callable[[str], dict], **settings):
        """The params of base run `name` (trained by `train(run_dir)`, a kept grid run): trained now, or restored
        from the finished run's checkpoint."""
        trained = {}

        def fn(run_dir):
            tic = time.perf_counter()
            result = train(run_dir)
            trained["params"] = result["params"]
            return {"test_accuracy": float(result["accuracy"]), "seconds": time.perf_counter() - tic}

        self.grid.run(name, fn, config=self.settings(run=name, **settings), keep_run_dir=True)
        if "params" not in trained:
            self.grid.log(f"{name}: finished earlier; restoring it from its checkpoint")
            trained["params"] = train(self.grid.run_dir(name))["params"]
        return trained["params"]

    def run(self, name: str, fn: Callable[[str], dict], fractions, **settings) -> None:
        """Grid run `name` (its run dir deleted after its record): `fn(run_dir)` -> record without memory_fraction,
        added to the results once per fraction in `fractions`."""
        record = self.grid.run(name, fn, config=self.settings(run=name, **settings), keep_run_dir=False)
        self.add([dict(record, memory_fraction=float(f)) for f in fractions])


def _run_names(task: str, seed: int, methods, fractions) -> tuple[str, list[str], list[str]]:
    """(the base run's name, the names of the runs that start from it, the names of those that do not)."""
    prefix = f"{task}/seed{seed}"
    dependent = [f"{prefix}/finetune"] if "finetune" in methods else []
    dependent += [f"{prefix}/{m}_{f:g}" for m in methods if m in ("kprior", "replay") for f in fractions]
    return f"{prefix}/base", dependent, [f"{prefix}/batch"] if "batch" in methods else []


def _all_run_names(k) -> list[str]:
    names = []
    for task in k.tasks:
        for seed in k.seeds:
            base, dependent, independent = _run_names(task, seed, k.methods, [float(f) for f in k.memory_fractions])
            names += ([base] if dependent else []) + independent + dependent
    return names


def _run_add_data(experiment: _Experiment, arrays, num_classes: int, seed: int) -> None:
    k = experiment.config.kprior
    grid = experiment.grid
    x, y, x_test, y_test = arrays
    fractions = [float(f) for f in k.memory_fractions]
    base_name, dependent, _ = _run_names("add_data", seed, k.methods, fractions)
    apply_fn = model_apply_fn(experiment.model)
    new = y == k.add_digit
    x_past, y_past, x_new, y_new = x[~new], y[~new], x[new], y[new]
    prefix = f"add_data/seed{seed}"
    new_targets = jax.nn.one_hot(y_new, num_classes)

    def reference(w):
        return regularised_loss(w, apply_fn, x, jax.nn.one_hot(y, num_classes), k.delta) / len(y_new)

    w_star = start_norm = None
    if any(not grid.done(name) for name in dependent):
        w_star = experiment.base(base_name, lambda run_dir: experiment.train(
            run_dir, seed, x_past, y_past, x_test, y_test, num_classes))
        start_norm = float(jax.jit(lambda w: optax.tree.norm(jax.grad(reference)(w)))(w_star))

    def record(method, result, prior, memory_size, seconds) -> dict:
        if method == "batch":
            grad_error = 0.0
        else:
            objective = ((lambda w: add_data(w, prior, x_new, new_targets) / len(y_new)) if prior is not None else
                         (lambda w: (data_loss(w, apply_fn, x_new, new_targets) + weight_penalty(w, k.delta))
                          / len(y_new)))
            error = jax.jit(lambda w: gradient_error(objective, reference, w).absolute)
            grad_error = float(error(result["params"])) / start_norm
        return dict(task="add_data", method=method, seed=seed, test_accuracy=float(result["accuracy"]),
                    grad_error=grad_error, memory_size=memory_size, seconds=seconds)

    if "batch" in k.methods:
        def batch(run_dir):
            tic = time.perf_counter()
            result = experiment.train(run_dir, seed, x, y, x_test, y_test, num_classes)
            return record("batch", result, None, len(y_past), time.perf_counter() - tic)
        experiment.run(f"{prefix}/batch", batch, fractions, seed=seed)
    if "finetune" in k.methods:
        def finetune(run_dir):
            tic = time.perf_counter()
            result = experiment.train(run_dir, seed, x_new, y_new, x_test, y_test, num_classes, start=w_star)
            return record("finetune", result, None, 0, time.perf_counter() - tic)
        experiment.run(f"{prefix}/finetune", finetune, fractions, seed=seed)
    for method in (m for m in k.methods if m in ("kprior", "replay")):
        for fraction in fractions:
            def adapt(run_dir, method=method, fraction=fraction):
                tic = time.perf_counter()
                memory = _select(apply_fn, w_star, x_past, y_past, fraction, num_classes, k.memory_selection, seed)
                if method == "kprior":
                    prior = make_kprior(apply_fn, w_star, jnp.asarray(x_past[memory]), k.delta)
                else:
                    prior = replay_prior(apply_fn, jnp.asarray(x_past[memory]), y_past[memory], num_classes, k.delta)
                result = experiment.train(run_dir, seed, x_new, y_new, x_test, y_test, num_classes, prior=prior,
                                          start=w_star)
                return record(method, result, prior, len(memory), time.perf_counter() - tic)
            experiment.run(f"{prefix}/{method}_{fraction:g}", adapt, [fraction], seed=seed, fraction=fraction)


def _task_accuracy(result, test_digits, num_tasks: int) -> float:
    """Mean over tasks of the accuracy on each task's test points (task t: digits 2t, 2t + 1)."""
    correct = result["predictions"] == result["labels"]
    return float(np.mean([correct[test_digits // 2 == t].mean() for t in range(num_tasks)]))


def _run_continual(experiment: _Experiment, arrays, num_classes: int, seed: int, multihead: bool = False) -> None:
    """Split-MNIST style continual learning (see the module docstring): domain-incremental (one head, label = class
    mod 2) or, with `multihead`, task-incremental (label = class, one 2-class head per task: training.head_size 2).
    A chain (one method and fraction over all tasks) is one grid run, each task's trainer run under its directory."""
    k = experiment.config.kprior
    grid = experiment.grid
    task_name = "continual_multihead" if multihead else "continual"
    x, digits, x_test, test_digits = arrays
    num_tasks = num_classes // 2
    fractions = [float(f) for f in k.memory_fractions]
    base_name, dependent, _ = _run_names(task_name, seed, k.methods, fractions)
    apply_fn = model_apply_fn(experiment.model)
    head_size = 2 if multihead else 0
    outputs = num_classes if multihead else 2
    y, y_test = (digits, test_digits) if multihead else (digits % 2, test_digits % 2)
    tasks = [digits // 2 == t for t in range(num_tasks)]
    prefix = f"{task_name}/seed{seed}"

    def train(run_dir, task, prior=None, start=None, memory_labels=None):
        return experiment.train(run_dir, seed, x[tasks[task]], y[tasks[task]], x_test, y_test, outputs, prior=prior,
                                start=start, memory_labels=memory_labels, head_size=head_size)

    def record(method, result, memory_size, seconds) -> dict:
        accuracy = _task_accuracy(result, test_digits, num_tasks)
        grid.log(f"{prefix} {method}: mean accuracy over the {num_tasks} tasks {accuracy:.4f}")
        return dict(task=task_name, method=method, seed=seed, test_accuracy=accuracy, grad_error=None,
                    memory_size=memory_size, seconds=seconds)

    if "batch" in k.methods:
        def batch(run_dir):
            tic = time.perf_counter()
            result = experiment.train(run_dir, seed, x, y, x_test, y_test, outputs, head_size=head_size)
            return record("batch", result, len(y), time.perf_counter() - tic)
        experiment.run(f"{prefix}/batch", batch, fractions, seed=seed)
    base = None
    if any(not grid.done(name) for name in dependent):
        base = experiment.base(base_name, lambda run_dir: train(run_dir, 0))

    def chain(run_dir, method, fraction):
        tic = time.perf_counter()
        params, memory_x, memory_y = base, [], []
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
            result = train(os.path.join(run_dir, f"task{task}"), task, prior=prior, start=params,
                           memory_labels=labels)
            params = result["params"]
        return record(method, result, sum(len(m) for m in memory_y), time.perf_counter() - tic)

    for method in (m for m in k.methods if m in ("kprior", "replay")):
        for fraction in fractions:
            experiment.run(f"{prefix}/{method}_{fraction:g}",
                           lambda run_dir, method=method, fraction=fraction: chain(run_dir, method, fraction),
                           [fraction], seed=seed, fraction=fraction)
    if "finetune" in k.methods:
        experiment.run(f"{prefix}/finetune", lambda run_dir: chain(run_dir, "finetune", None), fractions, seed=seed)


# ------------------------------------------------------------------------------------ entry point


def run(config, workdir: str, dataset=None, mesh=None) -> dict[str, Any]:
    """Every task x method x memory fraction x seed of config.kprior, each a trainer run of one resumable grid;
    writes results.json and accuracy_vs_memory.png. `dataset`: a `jaxlab.data.Dataset` instead of config.data;
    `mesh`: the trainer's devices (default: all). SIGTERM: returns {"finished": False, "preempted": True}."""
    mesh = mesh if mesh is not None else parallel.make_mesh()
    validate(config, num_devices=mesh.size, process_count=jax.process_count())
    k = config.kprior
    name = f"{config.data.name or config.data.source} {config.model.name}"
    if dataset is None:
        dataset = load_dataset(config.data)
    _check_dataset(config, dataset)
    num_classes = dataset.num_classes
    arrays = _arrays(dataset, k.subset_fraction, config.data.seed)
    start = time.perf_counter()
    grid = Grid(workdir, f"kprior_deep {name}", names=_all_run_names(k))
    experiment = _Experiment(config, grid, mesh, capacity=len(arrays[1]))
    grid.log(f"{len(arrays[1])} training / {len(arrays[3])} test examples; tasks {tuple(k.tasks)}, methods "
             f"{tuple(k.methods)}, memory {tuple(k.memory_fractions)}, seeds {tuple(k.seeds)}; "
             f"{sum(grid.done(n) for n in grid.names)} of {len(grid.names)} runs already finished")
    try:
        with grid.watch():
            for task in k.tasks:
                experiment.model = models.create_model(config.model, 2 if task == "continual" else num_classes)
                for seed in k.seeds:
                    if task == "add_data":
                        _run_add_data(experiment, arrays, num_classes, seed)
                    else:
                        _run_continual(experiment, arrays, num_classes, seed, multihead=task == "continual_multihead")
    except Preempted as stop:
        grid.log(f"{stop}")
        return {"finished": False, "preempted": True, "results": experiment.path,
                "num_records": len(experiment.records)}
    wall = time.perf_counter() - start
    plot = os.path.join(workdir, PLOT_FILE)
    plot_accuracy_vs_memory(experiment.records, plot, title=name)
    for (task, method, fraction), (mean, std, _, _) in sorted(summarize(experiment.records).items()):
        grid.log(f"{task:9s} {method:8s} memory {fraction:6.3f}: {mean:.4f} +- {std:.4f}")
    grid.log(f"done in {wall:.1f}s: {len(experiment.records)} records -> {experiment.path}, {plot}")
    return {"finished": True, "results": experiment.path, "plot": plot, "wall_time_s": wall,
            "num_records": len(experiment.records)}
