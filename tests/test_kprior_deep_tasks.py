"""The deep K-prior's remove-data and change-of-model (knowledge distillation) tasks: the trainer's objective against
the paper's (jaxlab.kprior.minibatch.residual_prior), tiny kprior_deep runs of both tasks, their config checks, and
the unchanged run identity of the existing tasks."""

import os
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab import parallel
from jaxlab.data import all_examples
from jaxlab.errors import ConfigError
from jaxlab.experiments import config_module, kprior_deep
from jaxlab.kprior import (
    change_model_prior,
    class_quotas,
    data_loss,
    deep_prior_loss,
    make_kprior,
    minibatch_prior,
    minimize,
    regularised_loss,
    remove_data,
    residual_prior,
)
from jaxlab.train.extension import RunInfo
from jaxlab.train.workdir import config_json
from tests.test_kprior_deep import _records, _tiny_config, _tiny_dataset, linear

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs" / "kprior"
NUM_CLASSES, DELTA = 3, 1.5


def tanh_network(params, x):
    """A small smooth network (one tanh hidden layer): f_w(x) is not linear in w."""
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def _network_params(key, features, hidden, dtype=jnp.float32):
    keys = jax.random.split(key, 2)
    return {"w1": jax.random.normal(keys[0], (features, hidden), dtype), "b1": jnp.zeros(hidden, dtype),
            "w2": jax.random.normal(keys[1], (hidden, NUM_CLASSES), dtype), "b2": jnp.zeros(NUM_CLASSES, dtype)}


def _problem(n=36, features=3, dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % NUM_CLASSES
    x = rng.normal(size=(n, features)) + 1.5 * np.eye(NUM_CLASSES, features)[y]
    return jnp.asarray(x, dtype), y


def _one_hot(labels):
    return jax.nn.one_hot(labels, NUM_CLASSES)


def _trainer_objective(apply_fn, stream_x, stream_y, inputs, memory_size):
    """What the trainer minimises in expectation: its task loss (the mean true-label loss of its data stream) plus the
    extension's term with every memory row drawn once (the expectation of the uniform draws)."""
    every = jnp.arange(memory_size)
    return lambda w: (data_loss(w, apply_fn, stream_x, _one_hot(stream_y).astype(stream_x.dtype)) / len(stream_y)
                      + deep_prior_loss(w, inputs, apply_fn, every))


def _removal(x, y, w_star, memory_rows, removed_class=2):
    """D- = the points of `removed_class` (all in the memory); the memory = `memory_rows` of the retained points and
    D-; the trainer's stream M_r: the retained memory. Returns (trainer objective, the K-prior objective / N_r, the
    retraining objective / N_r, N_r)."""
    removed = y == removed_class
    kept_x, kept_y, removed_x, removed_y = x[~removed], y[~removed], x[removed], y[removed]
    stream_x, stream_y = kept_x[memory_rows], kept_y[memory_rows]
    memory_x, memory_y = jnp.concatenate([stream_x, removed_x]), np.concatenate([stream_y, removed_y])
    prior = make_kprior(tanh_network, w_star, memory_x, DELTA)
    n_stream = len(stream_y)
    inputs = minibatch_prior(residual_prior(prior, memory_y, NUM_CLASSES), w_star, n_stream, capacity=len(y) + 4)
    trainer = _trainer_objective(tanh_network, stream_x, stream_y, inputs, len(memory_y))
    kprior = lambda w: remove_data(w, prior, removed_x, _one_hot(removed_y).astype(x.dtype)) / n_stream  # noqa: E731
    retraining = lambda w: regularised_loss(w, tanh_network, kept_x, _one_hot(kept_y).astype(x.dtype),  # noqa: E731
                                            DELTA) / n_stream
    return trainer, kprior, retraining, n_stream


def test_residual_prior_targets_are_soft_minus_true_labels():
    """Targets S - y (each row sums to 0), so the prior on params is the K-prior minus sum_M l(y, f)."""
    x, y = _problem()
    w_star, w = (_network_params(jax.random.PRNGKey(i), x.shape[1], 4) for i in (0, 1))
    prior = make_kprior(tanh_network, w_star, x, DELTA)
    residual = residual_prior(prior, y, NUM_CLASSES)
    np.testing.assert_allclose(residual.anchor_predictions, prior.anchor_predictions - _one_hot(y), atol=1e-7)
    np.testing.assert_allclose(residual.anchor_predictions.sum(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(float(residual(w)), float(prior(w) - data_loss(w, tanh_network, x, _one_hot(y))),
                               rtol=1e-5)
    with pytest.raises(AssertionError):  # labels of another class count
        residual_prior(prior, y, NUM_CLASSES + 1)


@pytest.mark.parametrize("memory_rows", [slice(None), np.array([0, 3, 5, 9, 17])])
def test_remove_data_trainer_objective_is_the_kprior_objective(memory_rows):
    """At any memory (D- inside it), the trainer's stream term plus the expected extension term is
    (K(w) - sum_{D-} l) / N_r, value and gradient, at any w."""
    x, y = _problem()
    w_star, w = (_network_params(jax.random.PRNGKey(i), x.shape[1], 4) for i in (2, 3))
    trainer, kprior, _, _ = _removal(x, y, w_star, memory_rows)
    np.testing.assert_allclose(float(jax.jit(trainer)(w)), float(jax.jit(kprior)(w)), rtol=1e-5)
    chex.assert_trees_all_close(jax.jit(jax.grad(trainer))(w), jax.jit(jax.grad(kprior))(w), rtol=1e-4, atol=1e-6)


def test_remove_data_gradient_equals_retraining_at_w_star_at_full_memory():
    """M = D, float64, the tanh network's converged w*: the trainer's gradient equals retraining's on D minus D- at
    w* (the paper's claim for networks); exactly, grad trainer - grad retraining = -grad Lbar(w*) / N_r at any anchor
    w*, converged or not; away from w* a network's gradients differ (a GLM's agree at every w)."""
    with jax.enable_x64(True):
        x, y = _problem(dtype=jnp.float64)
        start = _network_params(jax.random.PRNGKey(4), x.shape[1], 4, jnp.float64)
        w_star = minimize(regularised_loss, start, tanh_network, x, _one_hot(y).astype(jnp.float64), DELTA,
                          tol=1e-11, max_steps=3000)
        trainer, _, retraining, n_stream = _removal(x, y, w_star, slice(None))
        grad_trainer, grad_retraining = jax.jit(jax.grad(trainer)), jax.jit(jax.grad(retraining))
        norm = lambda tree: float(optax.tree.norm(tree))  # noqa: E731
        difference = lambda w: norm(optax.tree.sub(grad_trainer(w), grad_retraining(w)))  # noqa: E731
        assert difference(w_star) < 1e-9 * norm(grad_retraining(w_star))
        assert norm(grad_retraining(w_star)) > 1e-3  # removing D- moves the optimum: the identity is not 0 = 0
        nearby = jax.tree.map(lambda p: p + 0.3, w_star)
        assert difference(nearby) > 1e-3 * norm(grad_retraining(nearby))
        # an unconverged anchor: the difference is exactly its base gradient
        trainer, _, retraining, _ = _removal(x, y, start, slice(None))
        base_gradient = jax.grad(regularised_loss)(start, tanh_network, x, _one_hot(y).astype(jnp.float64), DELTA)
        chex.assert_trees_all_close(optax.tree.sub(jax.grad(trainer)(start), jax.grad(retraining)(start)),
                                    jax.tree.map(lambda g: -g / n_stream, base_gradient), rtol=1e-9, atol=1e-12)


def test_remove_data_glm_gradient_equals_retraining_at_every_w():
    """The GLM `linear`, exact w* (Newton, float64), M = D: the trainer's gradient is retraining's at every w."""
    with jax.enable_x64(True):
        x, y = _problem(dtype=jnp.float64)
        x = jnp.concatenate([jnp.ones((len(y), 1)), x], axis=1)
        targets = _one_hot(y).astype(jnp.float64)
        w_star = minimize(regularised_loss, jnp.zeros((x.shape[1], NUM_CLASSES)), linear, x, targets, DELTA,
                          method="newton", tol=1e-13, max_steps=50)
        removed = y == 2
        prior = make_kprior(linear, w_star, jnp.concatenate([x[~removed], x[removed]]), DELTA)
        memory_y = np.concatenate([y[~removed], y[removed]])
        n_stream = int(np.sum(~removed))
        inputs = minibatch_prior(residual_prior(prior, memory_y, NUM_CLASSES), w_star, n_stream, capacity=len(y))
        trainer = _trainer_objective(linear, x[~removed], y[~removed], inputs, len(y))
        retraining = lambda w: regularised_loss(w, linear, x[~removed], targets[~removed], DELTA) / n_stream  # noqa
        ws = w_star + jax.random.normal(jax.random.PRNGKey(5), (3, *w_star.shape), jnp.float64)
        grads, reference = (jax.vmap(jax.grad(f))(ws) for f in (trainer, retraining))
        assert np.all(np.linalg.norm(grads - reference, axis=(1, 2)) < 1e-10 * np.linalg.norm(reference, axis=(1, 2)))


def test_distillation_trainer_objective_is_the_change_of_model_prior():
    """A teacher (4 hidden units) and a student (2, other param shapes): the trainer's stream term (the memory's true
    labels) plus the expected extension term (targets S - y, no anchor) is the change-of-model K-prior / |M| at any
    memory; at M = D it is knowledge distillation on all of D, sum_D l(softmax(f_teacher), f_student) +
    delta/2 ||theta||^2, value and gradient at any theta."""
    with jax.enable_x64(True):
        x, y = _problem(dtype=jnp.float64)
        teacher = _network_params(jax.random.PRNGKey(6), x.shape[1], 4, jnp.float64)
        theta = _network_params(jax.random.PRNGKey(7), x.shape[1], 2, jnp.float64)
        for rows in (np.arange(len(y)), np.array([1, 2, 4, 8, 30])):
            prior = change_model_prior(tanh_network, teacher, tanh_network, x[rows], DELTA)
            assert prior.anchor_params is None  # no weight-space term: another parameter space
            inputs = minibatch_prior(residual_prior(prior, y[rows], NUM_CLASSES), theta, len(rows),
                                     capacity=len(y))
            chex.assert_trees_all_equal(inputs.anchor, jax.tree.map(np.zeros_like, theta))
            trainer = _trainer_objective(tanh_network, x[rows], y[rows], inputs, len(rows))
            np.testing.assert_allclose(float(jax.jit(trainer)(theta)), float(prior(theta)) / len(rows),
                                       rtol=1e-12)
        soft = jax.nn.softmax(tanh_network(teacher, x))
        distillation = lambda w: (jnp.sum(optax.softmax_cross_entropy(tanh_network(w, x), soft))  # noqa: E731
                                  + DELTA / 2 * optax.tree.norm(w, squared=True)) / len(y)
        trainer = _trainer_objective(tanh_network, x, y, minibatch_prior(residual_prior(change_model_prior(
            tanh_network, teacher, tanh_network, x, DELTA), y, NUM_CLASSES), theta, len(y), len(y)), len(y))
        np.testing.assert_allclose(float(jax.jit(trainer)(theta)), float(jax.jit(distillation)(theta)), rtol=1e-12)
        chex.assert_trees_all_close(jax.jit(jax.grad(trainer))(theta), jax.jit(jax.grad(distillation))(theta),
                                    rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------------------------------ the experiment


@pytest.fixture
def trainer_runs(monkeypatch):
    """Every trainer run of kprior_deep: {run name: (its config, its training labels, its test labels, its
    extension's MinibatchPrior, its initial params or None)}."""
    runs, train_run = {}, kprior_deep.train_run

    def recording(config, run_dir, *, dataset, extensions, initial_variables=None, **kwargs):
        name = dataset.name
        extension = extensions[0](RunInfo(model=None, input_shape=dataset.image_shape,
                                          num_classes=dataset.num_classes, total_steps=1))
        runs[name] = (config, all_examples(dataset.train)["label"], all_examples(dataset.test)["label"],
                      extension.loss_inputs,
                      None if initial_variables is None else initial_variables["params"])
        return train_run(config, run_dir, dataset=dataset, extensions=extensions,
                         initial_variables=initial_variables, **kwargs)

    monkeypatch.setattr(kprior_deep, "train_run", recording)
    return runs


def test_tiny_remove_data_run(tmp_path, trainer_runs):
    """4 classes x 24 points, digit 1 removed: the base trains on all 96, batch on the 72 retained, K-prior and Replay
    on the retained memory M_r (the K-prior's memory term on M_r + D- with targets S - y, anchored at w*; Replay none);
    every adapted model is tested without the removed digit; records and plot as the other tasks."""
    config = _tiny_config(tasks=("remove_data",), methods=("kprior", "replay", "batch"), memory_fractions=(0.5,),
                          remove_digit=1)
    workdir = str(tmp_path / "run")
    kprior_deep.run(config, workdir, dataset=_tiny_dataset(), mesh=parallel.make_mesh(1))
    records = {r["method"]: r for r in _records(workdir)}
    retained = int(class_quotas(np.repeat([0, 2, 3], 24), 36, 4).sum())  # half of the 72 retained, class-balanced
    assert [records[m]["memory_size"] for m in ("kprior", "replay", "batch")] == [24 + retained, 24 + retained, 96]
    assert records["batch"]["grad_error"] == 0.0 and records["kprior"]["grad_error"] > 0
    assert all(np.isfinite(r["grad_error"]) and 0 <= r["test_accuracy"] <= 1 for r in records.values())
    assert os.path.getsize(os.path.join(workdir, "accuracy_vs_memory.png")) > 0
    base = trainer_runs["remove_data/seed0/base"]
    assert len(base[1]) == 96 and 1 not in set(base[2].tolist())
    for name, size in (("batch", 72), ("kprior_0.5", retained), ("replay_0.5", retained)):
        config_run, train_labels, test_labels, prior, start = trainer_runs[f"remove_data/seed0/{name}"]
        assert len(train_labels) == size and 1 not in set(train_labels.tolist()) | set(test_labels.tolist())
        assert "remove_digit" in config_run.kprior and "student_width" not in config_run.kprior
        assert (start is None) == (name == "batch")  # adaptations start from w*, retraining from scratch
    kprior = trainer_runs["remove_data/seed0/kprior_0.5"][3]
    assert int(kprior.memory_size) == 24 + retained and float(kprior.num_examples) == retained
    np.testing.assert_allclose(np.asarray(kprior.memory_targets).sum(axis=1), 0.0, atol=1e-6)
    chex.assert_trees_all_close(kprior.anchor, trainer_runs["remove_data/seed0/kprior_0.5"][4])
    assert int(trainer_runs["remove_data/seed0/replay_0.5"][3].memory_size) == 0


def test_tiny_change_model_run(tmp_path, trainer_runs):
    """The teacher (mlp 16) on all 96 points; the student (mlp 8) for every other run, all from one fresh init: batch
    on all 96, K-prior and Replay on the memory (K-prior's targets S - y, no anchor); records and plot."""
    config = _tiny_config(tasks=("change_model",), methods=("kprior", "replay", "batch"), memory_fractions=(0.5,),
                          student_hidden_sizes=(8,))
    workdir = str(tmp_path / "run")
    summary = kprior_deep.run(config, workdir, dataset=_tiny_dataset(), mesh=parallel.make_mesh(1))
    assert summary["finished"] and summary["num_records"] == 3
    records = {r["method"]: r for r in _records(workdir)}
    assert [records[m]["memory_size"] for m in ("kprior", "replay", "batch")] == [48, 48, 96]
    assert all(r["task"] == "change_model" and np.isfinite(r["grad_error"]) for r in records.values())
    assert os.path.getsize(os.path.join(workdir, "accuracy_vs_memory.png")) > 0
    teacher = trainer_runs["change_model/seed0/base"]
    assert tuple(teacher[0].model.hidden_sizes) == (16,) and teacher[4] is None
    students = {name.split("/")[-1]: run for name, run in trainer_runs.items() if not name.endswith("base")}
    assert sorted(students) == ["batch", "kprior_0.5", "replay_0.5"]
    for name, (config_run, train_labels, _, prior, start) in students.items():
        assert tuple(config_run.model.hidden_sizes) == (8,) and start["Dense_0"]["kernel"].shape == (16, 8)
        chex.assert_trees_all_equal(start, students["batch"][4])
        assert len(train_labels) == (96 if name == "batch" else 48)
    kprior = students["kprior_0.5"][3]
    np.testing.assert_allclose(np.asarray(kprior.memory_targets)[:48].sum(axis=1), 0.0, atol=1e-6)
    assert all(not np.any(leaf) for leaf in jax.tree.leaves(kprior.anchor))
    assert int(kprior.memory_size) == 48 and int(students["replay_0.5"][3].memory_size) == 0


DISTILL, REMOVE = dict(tasks=("change_model",), methods=("kprior",)), dict(tasks=("remove_data",), remove_digit=1)


@pytest.mark.parametrize("kprior, model, field", [
    (dict(tasks=("add_data", "remove_data"), remove_digit=1), {}, "kprior.methods"),  # finetune: no new data
    (DISTILL, dict(name="glm"), "model.name"),
    (dict(DISTILL, student_hidden_sizes=(16,)), {}, "kprior.student_hidden_sizes"),  # the teacher's (16,)
    (dict(DISTILL, student_width=6), dict(name="lenet"), "kprior.student_width"),  # LeNet-5's standard width
    (dict(REMOVE, methods=("kprior",), remove_digit=7), {}, "kprior.remove_digit"),  # 4 classes
    (dict(REMOVE, methods=("replay",), memory_fractions=(1.0, 0.1)), {}, "kprior.memory_fractions"),
])
def test_bad_task_configs_raise_before_anything_runs(tmp_path, kprior, model, field):
    """Each a ConfigError naming its field, before a workdir exists (0.1 of the 72 retained points: a memory of 6,
    less than a batch of 16)."""
    config = _tiny_config(**kprior)
    config.model.update(model)
    with pytest.raises(ConfigError) as error:
        kprior_deep.run(config, str(tmp_path / "never"), dataset=_tiny_dataset())
    assert error.value.field == field
    assert not (tmp_path / "never").exists()


# config.kprior of the existing configs' runs at the commit before remove_data and change_model (f0cb8b9): their
# trainer runs' config.json holds it whole, their grid records' hash all but the four sweep lists. A change here
# means the workdirs of those configs (records and kept base runs) no longer resume.
EXISTING_KPRIOR = dict(add_digit=9, delta=1.0, memory_selection="lambda", seeds=[0, 1, 2], subset_fraction=0.2,
                       methods=["kprior", "replay", "finetune", "batch"])
EXISTING_RUNS = [
    ("mnist_add_data", "add_data", dict(EXISTING_KPRIOR, tasks=["add_data"], memory_fractions=[1.0, 0.2, 0.05, 0.01])),
    ("split_mnist", "continual", dict(EXISTING_KPRIOR, tasks=["continual", "continual_multihead"],
                                      memory_fractions=[1.0, 0.1, 0.01])),
]


@pytest.mark.parametrize("name, task, kprior", EXISTING_RUNS)
def test_existing_runs_keep_their_identity(name, task, kprior):
    """The config of existing add_data / continual runs (trainer config.json, grid record) is that of before the new
    tasks' fields existed: task_config drops the kprior fields only remove_data / change_model read, and nothing
    else; each new task's runs keep their own fields."""
    config = config_module(CONFIGS / f"{name}.py").get_config()
    run_config = kprior_deep.task_config(config, task)
    assert config_json(run_config.kprior) == kprior
    settings = config_json(kprior_deep.run_settings(run_config, run=f"{task}/seed0/base"))
    assert settings["config"]["kprior"] == {key: value for key, value in kprior.items()
                                            if key not in ("tasks", "methods", "memory_fractions", "seeds")}
    outside = lambda c: {key: value for key, value in config_json(c).items() if key != "kprior"}  # noqa: E731
    assert outside(run_config) == outside(config)
    assert config_json(kprior_deep.task_config(config, "remove_data").kprior) == dict(kprior, remove_digit=8)
    assert config_json(kprior_deep.task_config(config, "change_model").kprior) == dict(
        kprior, student_width=3, student_hidden_sizes=[100])
