"""The deep K-prior experiment: K-priors for networks trained by minibatch SGD through the data-parallel trainer.

    python -m jaxlab.main --config=configs/kprior/mnist_add_data.py --workdir=workdirs/kprior_mnist_add_data
    python -m jaxlab.main --config=configs/kprior/split_mnist.py --workdir=workdirs/kprior_split_mnist
    python -m jaxlab.main --config=configs/kprior/mnist_remove_data.py --workdir=workdirs/kprior_mnist_remove_data
    python -m jaxlab.main --config=configs/kprior/mnist_distill.py --workdir=workdirs/kprior_mnist_distill

Fragment: config.kprior (tasks, methods, memory_fractions, seeds, memory_selection, delta, subset_fraction,
add_digit, remove_digit, student_width, student_hidden_sizes). Every run is a `train_and_evaluate` run (same
optimiser, same number of steps) with the minibatch K-prior term of `jaxlab.kprior.minibatch` as a trainer extension
(its arrays a jit argument: every run of a task shares one compiled train step); the objectives and their weighting
(|M| / N_new for new data; for remove_data and change_model, whose data stream is the memory, |M| / N with N the
stream's size) are described there.

Methods:

    kprior    new data + the minibatch K-prior, from w*
    replay    the same memory points with their TRUE labels: a `KPrior` whose targets are one-hot labels and
              whose weight term is delta/2 ||w||^2 (no anchor), the same code path and weighting
    finetune  new data only, from w*, + delta / (2 N_new) ||w||^2 (Replay with an empty memory); add_data and the
              continual tasks only (remove_data and change_model have no new data)
    batch     retraining from scratch on all the data (past + new; D minus D-; the student on all of D),
              + delta / (2 N) ||w||^2

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
    remove_data the base w* is trained on all of D (the subset); D- = every point of digit config.kprior.remove_digit
                is removed (the official USPS task removes the 8s); tested on the other digits of the test split.
                Memory M = D- plus a class-balanced selection of fraction f of the retained points M_r (the
                official rule, as kprior_adaptation). kprior: K(w) - sum_{D-} l from w*, the trainer's data stream
                M_r with true labels, the memory term's targets S - y on all of M (`residual_prior`); replay:
                M_r with true labels from w*; batch: D minus D- from scratch. memory_size: |M| (D- included, as
                kprior_adaptation records it) for kprior and replay, |D| for batch.
    change_model knowledge distillation into another network: the teacher w* (config.model) is trained on all of D;
                the student is config.model with config.kprior.student_width (lenet) or student_hidden_sizes (mlp),
                every student run of a seed starting from the same fresh init theta_0. kprior: distillation on M,
                sum_M l(h(f_{w*}), f_theta) + delta/2 ||theta||^2 (no weight-space term: another parameter space),
                the trainer's data stream M with true labels, the memory term's targets S - y; replay: M with true
                labels; batch: the student trained on all of D. Tested on all digits.

grad_error (add_data, remove_data, change_model): at the method's final w, with full-batch gradients,
||grad J_method(w) - grad J_retrain(w)|| / ||grad J_retrain(w_0)||, w_0 the adaptation's start (w*; theta_0 for
change_model), J_retrain = (Lbar + sum_{D+} l) / N_new for add_data, Lbar - sum_{D-} l for remove_data, the
student's Lbar on D for change_model (the fraction of the retraining gradient at the start left unexplained;
K-prior with M = D: 0 for a GLM at the exact w*, see tests; not 0 for change_model, whose K-prior is distillation).
0 for batch; null for continual (no single retraining objective per step). For remove_data the normaliser
||grad J_retrain(w*)|| is the gradient of removing D- alone, small when the base fits D- well, so its values run far
larger than add_data's and are not comparable across tasks.

Run identity: a run's config (its trainer config.json and its grid record's hash) is `task_config`: config.kprior
without the fields only another task reads (TASK_FIELDS), so runs of add_data and the continual tasks keep the
identity they had before remove_data and change_model existed.

Resumable (`jaxlab.experiments.grid`): every trainer run is a grid run, <workdir>/runs/<task>/seed<s>/<run>,
its record in <workdir>/records/. The base models (runs/<task>/seed<s>/base) are kept: the adaptations start
from them (a rerun restores a finished base model from its checkpoint); every other run directory is deleted once
its record is written (a continual chain is one grid run, its tasks' runs under its directory). SIGTERM: the
running trainer run checkpoints, `run` returns {"finished": False, "preempted": True}; rerunning the same command
continues and gives the records an uninterrupted run gives (timing fields aside).

Outputs in the workdir: results.json (records task, method, memory_fraction, seed, test_accuracy, grad_error,
memory_size, seconds; rewritten after each record), accuracy_vs_memory.png and results.md (mean +- std over seeds
per task, method and memory fraction; `jaxlab.experiments.reports`).
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
from jaxlab.experiments import base_config
from jaxlab.experiments.grid import Grid
from jaxlab.experiments.reports import memory_table, plot_accuracy_vs_memory, summarize
from jaxlab.experiments.train import train_run
from jaxlab.kprior import (
    KPrior,
    add_data,
    class_quotas,
    data_loss,
    gradient_error,
    make_kprior,
    memory_scores,
    minibatch_prior,
    minibatch_prior_extension,
    no_memory,
    regularised_loss,
    remove_data,
    replay_prior,
    residual_prior,
    select_memory,
    weight_penalty,
)
from jaxlab.train import Preempted
from jaxlab.train import validate as validate_training
from jaxlab.train.metrics import write_json
from jaxlab.train.step import head_logits

TASKS = ("add_data", "continual", "continual_multihead", "remove_data", "change_model")
NEW_DATA_TASKS = ("add_data", "continual", "continual_multihead")  # the tasks fine-tuning applies to
# The kprior fields only one task reads (absent from the other tasks' run configs, see task_config).
TASK_FIELDS = {"remove_data": ("remove_digit",), "change_model": ("student_width", "student_hidden_sizes")}
METHODS = ("kprior", "replay", "finetune", "batch")
MODELS = ("mlp", "lenet", "glm")  # no BatchNorm statistics: f_w is a function of the params alone
SELECTIONS = ("lambda", "random")
RESULTS_FILE = "results.json"
PLOT_FILE = "accuracy_vs_memory.png"
TABLE_FILE = "results.md"


def extend_config(config) -> None:
    """config.kprior: the tasks x methods x memory fractions x seeds of the deep experiment."""
    config.kprior = ml_collections.ConfigDict(dict(
        tasks=("add_data",),      # add_data | continual | continual_multihead | remove_data | change_model
        methods=METHODS,          # kprior | replay | finetune (new-data tasks) | batch (retraining on all the data)
        memory_fractions=(1.0, 0.5, 0.2, 0.1, 0.07, 0.05, 0.02),  # of the past data (continual: of each task)
        seeds=(0, 1, 2),          # initialisation, batch order, memory draws
        memory_selection="lambda",  # lambda (class-balanced top h'(f)) | random (class-balanced)
        delta=5.0,                # L2 strength: delta / (2 N) ||w||^2 in every run's per-example loss
        subset_fraction=0.01,     # a fixed random subset of the train split (drawn with config.data.seed)
        add_digit=9,              # add_data: the new data is this class
        remove_digit=8,           # remove_data: the removed data D- is this class (left out of the test set)
        student_width=3,          # change_model, model lenet: the student's conv width (the teacher's: model.width)
        student_hidden_sizes=(100,),  # change_model, model mlp: the student's layers (the teacher's: hidden_sizes)
    ))


def task_config(config, task: str):
    """The config of `task`'s runs (their trainer config.json, their grid records' identity): `config` without the
    config.kprior fields that only OTHER tasks read (TASK_FIELDS)."""
    config = copy.deepcopy(config)
    with config.unlocked():
        for other, fields in TASK_FIELDS.items():
            for field in fields if other != task else ():
                del config.kprior[field]
    return config


def student_model(config) -> dict:
    """change_model: the config.model fields that make the student (model.update(**student_model(config)))."""
    k = config.kprior
    return dict(width=k.student_width) if config.model.name == "lenet" else dict(
        hidden_sizes=tuple(k.student_hidden_sizes))


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
    without_new_data = tuple(t for t in k.tasks if t not in NEW_DATA_TASKS)
    require("finetune" not in k.methods or not without_new_data, "kprior.methods",
            f"finetune trains on the new data from w*; {without_new_data} have no new data: drop finetune, or run "
            f"them with a config of their own")
    if "change_model" in k.tasks:
        _check_student(config)


def _check_student(config) -> None:
    """change_model: a teacher family with a width option, and a student that differs from the teacher."""
    k = config.kprior
    require(config.model.name in ("lenet", "mlp"), "model.name",
            f"change_model distils config.model into a narrower network of its family: lenet (kprior.student_width) "
            f"or mlp (kprior.student_hidden_sizes); got {config.model.name!r}")
    if config.model.name == "lenet":
        teacher = config.model.width or models.LeNet.width
        require(k.student_width > 0 and k.student_width != teacher, "kprior.student_width",
                f"the student's conv width must be positive and differ from the teacher's ({teacher}), got "
                f"{k.student_width}")
    else:
        student = tuple(k.student_hidden_sizes)
        require(len(student) > 0 and all(h > 0 for h in student) and student != tuple(config.model.hidden_sizes),
                "kprior.student_hidden_sizes", f"the student's layer widths must be positive and differ from the "
                f"teacher's {tuple(config.model.hidden_sizes)}, got {student}")


def validate(config, *, num_devices: int, process_count: int = 1) -> None:
    """config.kprior's values, then the trainer's shared fields and the data source's (jaxlab.train.validate)."""
    check_deep_config(config)
    validate_training(config, num_devices=num_devices, process_count=process_count)


def _check_dataset(config, dataset, labels) -> None:
    """The checks that need the dataset's classes and the training subset's `labels` (after loading, before
    training)."""
    k, num_classes = config.kprior, dataset.num_classes
    if "add_data" in k.tasks:
        require(0 <= k.add_digit < num_classes, "kprior.add_digit",
                f"{k.add_digit} is not a class of {dataset.name} (0..{num_classes - 1})")
    if "continual" in k.tasks or "continual_multihead" in k.tasks:
        require(num_classes >= 4 and num_classes % 2 == 0, "kprior.tasks",
                f"continual needs an even number (>= 4) of classes for the pairs (0, 1), (2, 3), ...; "
                f"{dataset.name} has {num_classes}")
    if "remove_data" in k.tasks:
        require(0 <= k.remove_digit < num_classes and np.any(labels == k.remove_digit), "kprior.remove_digit",
                f"{k.remove_digit} is not a class of the training subset of {dataset.name} (0..{num_classes - 1})")
    streams = {"remove_data": labels[labels != k.remove_digit], "change_model": labels}  # what the memory is drawn from
    fraction = min(k.memory_fractions)
    for task in (t for t in k.tasks if t in streams and ("kprior" in k.methods or "replay" in k.methods)):
        pool = streams[task]
        size = int(class_quotas(pool, _memory_budget(len(pool), fraction, num_classes), num_classes).sum())
        require(size >= config.training.batch_size, "kprior.memory_fractions",
                f"{task} trains on its memory: at fraction {fraction:g} it holds {size} points of {dataset.name}, "
                f"fewer than training.batch_size ({config.training.batch_size}); raise the smallest fraction or "
                f"lower the batch size")


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


def _init(model, inputs, seed: int):
    """Fresh params of `model` for inputs shaped like `inputs` (N, ...), drawn from `seed`."""
    return model.init(jax.random.PRNGKey(seed), jnp.zeros((1, *inputs.shape[1:]), jnp.float32))["params"]


def _outputs(apply_fn, params, inputs, chunk: int = 4096) -> np.ndarray:
    apply = jax.jit(apply_fn)
    return np.concatenate([np.asarray(apply(params, inputs[i:i + chunk])) for i in range(0, len(inputs), chunk)])


def _memory_budget(count: int, fraction: float, num_classes: int) -> int:
    """The memory's size budget: `fraction` of `count` points, at least one per class (class-balanced selection
    then takes `class_quotas` of it)."""
    return max(num_classes, int(fraction * count))


def _select(apply_fn, params, inputs, labels, fraction: float, num_classes: int, selection: str, seed: int,
            head_size: int = 0):
    """Memory indices into `inputs`: class-balanced, `fraction` of the points (at least one per class). With
    task-incremental heads (head_size > 0; the points are one task's) lambda is scored on the task's head and the
    balance is over its head_size classes."""
    if head_size:
        num_classes = head_size
    size = _memory_budget(len(labels), fraction, num_classes)
    scores = None
    if selection == "lambda":
        scores = memory_scores(np.asarray(head_logits(_outputs(apply_fn, params, inputs), labels, head_size)))
    return select_memory(labels % num_classes if head_size else labels, size, selection, scores=scores,
                         num_classes=num_classes, seed=seed)


# ------------------------------------------------------------------------------------ the runs


def run_settings(config, **run) -> dict:
    """What a grid run's result depends on (hashed into its record): the task's run config (`task_config`) without
    the sweep's lists and the data's location, and the run's own settings (its name, seed, memory fraction)."""
    settings = config.to_dict()
    settings["kprior"] = {key: value for key, value in settings["kprior"].items()
                          if key not in ("tasks", "methods", "memory_fractions", "seeds")}
    settings["data"] = {key: value for key, value in settings["data"].items() if key not in ("dir", "path")}
    return {"config": settings, **run}


class _Experiment:
    """The grid of trainer runs and the records: results.json rewritten after each record.

    `config`: the task's run config (`task_config`) and `model`: the task's network (both set per task); `capacity`:
    the padded memory size of every run (the training subset's size, which bounds any memory), so that all runs of
    a task share one compiled train step."""

    def __init__(self, config, grid: Grid, mesh, capacity: int):
        self.config, self.grid, self.mesh, self.capacity = config, grid, mesh, capacity
        self.model = None
        self.path = os.path.join(grid.workdir, RESULTS_FILE)
        self.records: list[dict] = []

    def add(self, records: list[dict]) -> None:
        self.records += records
        write_json(self.path, self.records)

    def train(self, run_dir: str, seed: int, train_x, train_y, test_x, test_y, num_classes: int, *,
              prior: KPrior | None = None, start=None, memory_labels=None, head_size: int = 0,
              model_fields: dict | None = None) -> dict:
        """A trainer run in run_dir on (train_x, train_y) with the K-prior / Replay term (no prior: the L2 term
        alone), from `start`; head_size > 0: task-incremental heads (training.head_size); `model_fields`: config.model
        fields of this run's network (change_model's student; default the task's network). Raises Preempted when
        SIGTERM stopped it; a finished run_dir is restored (its final checkpoint), not trained again."""
        config = copy.deepcopy(self.config)
        config.seed = seed
        config.training.head_size = head_size
        config.model.update(model_fields or {})
        dataset = from_arrays(train_x, train_y, test_x, test_y, num_classes=num_classes,
                              name=os.path.relpath(run_dir, os.path.join(self.grid.workdir, "runs")))
        network = models.create_model(config.model, num_classes)  # what the trainer builds from config.model
        apply_fn = model_apply_fn(network)
        if prior is None:
            prior = no_memory(apply_fn, train_x, num_classes, self.config.kprior.delta)
        params_like = start if start is not None else jax.eval_shape(lambda: _init(network, train_x, 0))
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

        self.grid.run(name, fn, config=run_settings(self.config, run=name, **settings), keep_run_dir=True)
        if "params" not in trained:
            self.grid.log(f"{name}: finished earlier; restoring it from its checkpoint")
            trained["params"] = train(self.grid.run_dir(name))["params"]
        return trained["params"]

    def run(self, name: str, fn: Callable[[str], dict], fractions, **settings) -> None:
        """Grid run `name` (its run dir deleted after its record): `fn(run_dir)` -> record without memory_fraction,
        added to the results once per fraction in `fractions`."""
        record = self.grid.run(name, fn, config=run_settings(self.config, run=name, **settings), keep_run_dir=False)
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


def _gradient_norm(objective: Callable, params) -> float:
    """||grad objective(params)||, full batch: the normaliser of grad_error."""
    return float(jax.jit(lambda w: optax.tree.norm(jax.grad(objective)(w)))(params))


def _grad_error(objective: Callable, reference: Callable, params, start_norm: float) -> float:
    """||grad objective(w) - grad reference(w)|| / start_norm at w = params (the records' grad_error)."""
    return float(jax.jit(lambda w: gradient_error(objective, reference, w).absolute)(params)) / start_norm


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
        start_norm = _gradient_norm(reference, w_star)

    def record(method, result, prior, memory_size, seconds) -> dict:
        if method == "batch":
            grad_error = 0.0
        else:
            objective = ((lambda w: add_data(w, prior, x_new, new_targets) / len(y_new)) if prior is not None else
                         (lambda w: (data_loss(w, apply_fn, x_new, new_targets) + weight_penalty(w, k.delta))
                          / len(y_new)))
            grad_error = _grad_error(objective, reference, result["params"], start_norm)
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


def _run_memory_task(experiment: _Experiment, task: str, arrays, num_classes: int, seed: int) -> None:
    """remove_data or change_model (see the module docstring), whose adaptations train on the memory: the base
    (teacher) w* on all of D; batch retrains on D minus D- (remove_data) or the student on D (change_model); kprior
    and replay train on the retained memory M_r with its true labels (`jaxlab.kprior.minibatch`), kprior adding the
    memory term on all of M (D- included) with targets S - y (`residual_prior`)."""
    k = experiment.config.kprior
    grid = experiment.grid
    x, y, x_test, y_test = arrays
    fractions = [float(f) for f in k.memory_fractions]
    base_name, dependent, _ = _run_names(task, seed, k.methods, fractions)
    prefix = f"{task}/seed{seed}"
    base_apply = model_apply_fn(experiment.model)
    one_hot = lambda labels: jax.nn.one_hot(labels, num_classes)  # noqa: E731
    distill = task == "change_model"
    removed = np.zeros(len(y), bool) if distill else y == k.remove_digit
    if not distill:  # tested on the digits that remain
        kept = y_test != k.remove_digit
        x_test, y_test = x_test[kept], y_test[kept]
    x_kept, y_kept, x_removed, y_removed = x[~removed], y[~removed], x[removed], y[removed]
    model_fields, batch_start = None, None
    trained_apply = base_apply
    if distill:  # every student run of the seed starts from the same fresh init theta_0
        model_fields = student_model(experiment.config)
        student_config = copy.deepcopy(experiment.config.model)
        student_config.update(model_fields)
        student = models.create_model(student_config, num_classes)
        trained_apply, batch_start = model_apply_fn(student), _init(student, x, seed)

    def retraining(w):  # Lbar - sum_{D-} l: Lbar on D minus D- (change_model: the student's Lbar on D)
        return regularised_loss(w, trained_apply, x_kept, one_hot(y_kept), k.delta)

    w_star = start = start_norm = None
    if any(not grid.done(name) for name in dependent):
        w_star = experiment.base(base_name, lambda run_dir: experiment.train(
            run_dir, seed, x, y, x_test, y_test, num_classes))
        start = batch_start if distill else w_star
        start_norm = _gradient_norm(retraining, start)

    def record(method, result, objective, memory_size, tic) -> dict:
        grad_error = 0.0 if objective is None else _grad_error(objective, retraining, result["params"], start_norm)
        return dict(task=task, method=method, seed=seed, test_accuracy=float(result["accuracy"]),
                    grad_error=grad_error, memory_size=memory_size, seconds=time.perf_counter() - tic)

    if "batch" in k.methods:
        def batch(run_dir):
            tic = time.perf_counter()
            result = experiment.train(run_dir, seed, x_kept, y_kept, x_test, y_test, num_classes, start=batch_start,
                                      model_fields=model_fields)
            return record("batch", result, None, len(y), tic)
        experiment.run(f"{prefix}/batch", batch, fractions, seed=seed)
    for method in (m for m in k.methods if m in ("kprior", "replay")):
        for fraction in fractions:
            def adapt(run_dir, method=method, fraction=fraction):
                tic = time.perf_counter()
                chosen = _select(base_apply, w_star, x_kept, y_kept, fraction, num_classes, k.memory_selection, seed)
                stream_x, stream_y = x_kept[chosen], y_kept[chosen]  # M_r: the trainer's data stream
                memory_x = jnp.asarray(np.concatenate([stream_x, x_removed]))  # M = M_r u D-
                memory_y = np.concatenate([stream_y, y_removed])
                prior = None
                if method == "kprior":
                    kprior = make_kprior(base_apply, w_star, memory_x, k.delta, new_apply_fn=trained_apply,
                                         weight_term=not distill)
                    objective = kprior if distill else (
                        lambda w: remove_data(w, kprior, x_removed, one_hot(y_removed)))
                    prior = residual_prior(kprior, memory_y, num_classes)
                else:
                    objective = lambda w: regularised_loss(w, trained_apply, stream_x, one_hot(stream_y),  # noqa: E731
                                                           k.delta)
                result = experiment.train(run_dir, seed, stream_x, stream_y, x_test, y_test, num_classes,
                                          prior=prior, start=start, model_fields=model_fields)
                return record(method, result, objective, len(memory_y), tic)
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
    writes results.json, accuracy_vs_memory.png and results.md. `dataset`: a `jaxlab.data.Dataset` instead of config.data;
    `mesh`: the trainer's devices (default: all). SIGTERM: returns {"finished": False, "preempted": True}."""
    mesh = mesh if mesh is not None else parallel.make_mesh()
    validate(config, num_devices=mesh.size, process_count=jax.process_count())
    k = config.kprior
    name = f"{config.data.name or config.data.source} {config.model.name}"
    if dataset is None:
        dataset = load_dataset(config.data)
    num_classes = dataset.num_classes
    arrays = _arrays(dataset, k.subset_fraction, config.data.seed)
    _check_dataset(config, dataset, arrays[1])
    start = time.perf_counter()
    grid = Grid(workdir, f"kprior_deep {name}", names=_all_run_names(k), defaults={"config": base_config("kprior_deep").to_dict()})
    experiment = _Experiment(config, grid, mesh, capacity=len(arrays[1]))
    grid.log(f"{len(arrays[1])} training / {len(arrays[3])} test examples; tasks {tuple(k.tasks)}, methods "
             f"{tuple(k.methods)}, memory {tuple(k.memory_fractions)}, seeds {tuple(k.seeds)}; "
             f"{sum(grid.done(n) for n in grid.names)} of {len(grid.names)} runs already finished")
    try:
        with grid.watch():
            for task in k.tasks:
                experiment.config = task_config(config, task)
                experiment.model = models.create_model(config.model, 2 if task == "continual" else num_classes)
                for seed in k.seeds:
                    if task == "add_data":
                        _run_add_data(experiment, arrays, num_classes, seed)
                    elif task in ("remove_data", "change_model"):
                        _run_memory_task(experiment, task, arrays, num_classes, seed)
                    else:
                        _run_continual(experiment, arrays, num_classes, seed, multihead=task == "continual_multihead")
    except Preempted as stop:
        grid.log(f"{stop}")
        return {"finished": False, "preempted": True, "results": experiment.path,
                "num_records": len(experiment.records)}
    wall = time.perf_counter() - start
    plot = os.path.join(workdir, PLOT_FILE)
    plot_accuracy_vs_memory(experiment.records, plot, title=name)
    with open(os.path.join(workdir, TABLE_FILE), "w") as f:
        f.write(f"{name}: {len(experiment.records)} records, {wall:.0f} s wall this call\n\n"
                + memory_table(experiment.records))
    for (task, method, fraction), (mean, std, _, _) in sorted(summarize(experiment.records).items()):
        grid.log(f"{task:9s} {method:8s} memory {fraction:6.3f}: {mean:.4f} +- {std:.4f}")
    grid.log(f"done in {wall:.1f}s: {len(experiment.records)} records -> {experiment.path}, {plot}")
    return {"finished": True, "results": experiment.path, "plot": plot, "wall_time_s": wall,
            "num_records": len(experiment.records)}
