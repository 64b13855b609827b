"""jaxlab.kprior.deep: the minibatch K-prior as a trainer extra loss, and the kprior_deep experiment end to end."""

import importlib.util
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab import experiments, parallel
from jaxlab.config import ConfigError, base_config
from jaxlab.data import from_arrays
from jaxlab.kprior import data_loss, make_kprior, minimize, regularised_loss
from jaxlab.kprior.deep import (
    METHODS,
    RECORD_KEYS,
    check_deep_config,
    deep_prior_inputs,
    deep_prior_loss,
    make_extra_loss,
    memory_indices,
    no_memory,
    replay_prior,
    run_deep_kprior_experiment,
)

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs" / "kprior"


def linear(w, x):
    return x @ w


def _glm_problem(num_classes=3, n_past=40, n_new=12, features=4, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.ones((n_past + n_new, 1)), rng.normal(size=(n_past + n_new, features))], axis=1)
    y = rng.integers(0, num_classes, n_past + n_new)
    targets = np.eye(num_classes)[y]
    return x[:n_past], targets[:n_past], x[n_past:], targets[n_past:]


def test_glm_deep_kprior_gradient_equals_retraining_at_full_memory():
    """GLM, exact w*, M = D, the whole memory as the "minibatch": grad(mean_{D+} l + extra) = grad((Lbar + sum_{D+} l)
    / N_new) at every w, through the same deep_prior_loss the trainer calls."""
    with jax.enable_x64(True):
        x, t, x_new, t_new = (jnp.asarray(a, jnp.float64) for a in _glm_problem())
        delta = 2.0
        w0 = jnp.zeros((x.shape[1], t.shape[1]), jnp.float64)
        w_star = minimize(regularised_loss, w0, linear, x, t, delta, method="newton", tol=1e-13, max_steps=50)
        prior = make_kprior(linear, w_star, x, delta)
        n_new = len(x_new)
        everything = jnp.arange(prior.memory_size)
        inputs = deep_prior_inputs(prior, w_star, n_new, capacity=len(x) + 5)  # padded rows are never drawn here

        def kprior_objective(w):
            return data_loss(w, linear, x_new, t_new) / n_new + deep_prior_loss(w, inputs, linear, everything)

        def retraining(w):
            return (regularised_loss(w, linear, x, t, delta) + data_loss(w, linear, x_new, t_new)) / n_new

        ws = w_star + jax.random.normal(jax.random.PRNGKey(0), (3, *w_star.shape), jnp.float64)
        grads, reference = (jax.jit(jax.vmap(jax.grad(f)))(ws) for f in (kprior_objective, retraining))
        assert np.all(np.linalg.norm(grads - reference, axis=(1, 2)) < 1e-10 * np.linalg.norm(reference, axis=(1, 2)))
        # the past term alone has zero gradient at w* (on any minibatch of the memory)
        some = jnp.array([3, 3, 17, 0])
        assert float(optax.tree.norm(jax.grad(deep_prior_loss)(w_star, inputs, linear, some))) < 1e-12


def test_minibatch_term_is_unbiased_and_replay_uses_true_labels():
    """Averaged over every single-point draw from the |M| real rows (padding never drawn), the minibatch term is
    K(w) / N_new; Replay is the same code with one-hot labels and delta/2 ||w||^2; no memory leaves
    delta / (2 N) ||w||^2. All three have the same input shapes (one compiled step)."""
    x, t, _, _ = (jnp.asarray(a, jnp.float32) for a in _glm_problem())
    w_star = 0.1 * jnp.ones((x.shape[1], t.shape[1]), jnp.float32)
    w = w_star + 0.3 * jax.random.normal(jax.random.PRNGKey(1), w_star.shape, jnp.float32)
    prior = make_kprior(linear, w_star, x, 3.0)
    n_new, capacity = 7, len(x) + 9
    inputs = deep_prior_inputs(prior, w_star, n_new, capacity)
    average = np.mean([float(deep_prior_loss(w, inputs, linear, jnp.array([m]))) for m in range(len(x))])
    np.testing.assert_allclose(average, float(prior(w)) / n_new, rtol=1e-5)
    replay = deep_prior_inputs(replay_prior(linear, x, np.argmax(np.asarray(t), 1), t.shape[1], 3.0), w_star, n_new,
                               capacity)
    np.testing.assert_allclose(float(deep_prior_loss(w, replay, linear, jnp.arange(len(x)))),
                               float(regularised_loss(w, linear, x, t, 3.0)) / n_new, rtol=1e-5)
    empty = deep_prior_inputs(no_memory(linear, x, t.shape[1], 3.0), w_star, 50, capacity)
    np.testing.assert_allclose(float(deep_prior_loss(w, empty, linear, jnp.array([0, 4]))),
                               1.5 * float(jnp.sum(w ** 2)) / 50, rtol=1e-6)
    shapes = lambda tree: jax.tree.map(lambda a: (np.shape(a), np.asarray(a).dtype), tree)  # noqa: E731
    assert shapes(inputs) == shapes(replay) == shapes(empty)
    with pytest.raises(ValueError, match="capacity"):
        deep_prior_inputs(prior, w_star, n_new, capacity=len(x) - 1)


def test_memory_sampling_is_deterministic_per_step():
    rng = jax.random.PRNGKey(0)
    index = jnp.arange(40, 72)
    first = memory_indices(rng, jnp.int32(5), index, 1000)
    np.testing.assert_array_equal(first, memory_indices(rng, jnp.int32(5), index, 1000))
    assert first.shape == (32,) and int(first.min()) >= 0 and int(first.max()) < 1000
    assert not np.array_equal(first, memory_indices(rng, jnp.int32(6), index, 1000))
    # a draw belongs to its example, not its batch position: any device split gives the same draws
    np.testing.assert_array_equal(memory_indices(rng, jnp.int32(5), index[::-1], 1000), first[::-1])
    # the extra loss evaluates the same memory minibatch for the same step
    prior = make_kprior(linear, jnp.ones((3, 2)), jnp.asarray(np.random.default_rng(0).normal(size=(50, 3))), 1.0)
    extra = jax.jit(make_extra_loss(linear))
    batch = {"index": index, "step": jnp.int32(5),
             "extra_loss_inputs": deep_prior_inputs(prior, jnp.ones((3, 2)), 10, capacity=64)}
    w = jax.random.normal(jax.random.PRNGKey(2), (3, 2))
    assert float(extra(w, batch, rng)) == float(extra(w, batch, rng))
    assert float(extra(w, batch, rng)) != float(extra(w, {**batch, "step": jnp.int32(6)}, rng))


def _tiny_config(**kprior):
    config = base_config()
    config.experiment = "kprior_deep"
    config.data.source = "digits"  # not read: the test passes the dataset
    config.model.name = "mlp"
    config.model.hidden_sizes = (16,)
    config.training.batch_size = 16
    config.training.num_train_steps = 8
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-2
    config.optimizer.weight_decay = 0.0
    config.eval_every_steps = 10**9
    config.checkpoint_every_steps = 10**9
    config.eval_batch_size = 64
    config.kprior.update({**dict(memory_fractions=(1.0,), seeds=(0,), delta=1.0, add_digit=3, subset_fraction=1.0),
                          **kprior})
    return config


def _tiny_dataset(num_classes=4, per_class=24):
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 256, size=(num_classes, 4, 4, 1))

    def split(n):
        labels = np.repeat(np.arange(num_classes), n)
        images = np.clip(centres[labels] + rng.normal(0, 30, size=(len(labels), 4, 4, 1)), 0, 255)
        return images.astype(np.uint8), labels

    return from_arrays(*split(per_class), *split(8), name="tiny", num_classes=num_classes)


def _records(workdir):
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)


def _check_records(records):
    for r in records:
        assert set(RECORD_KEYS) <= set(r) and r["memory_fraction"] == 1.0 and r["seed"] == 0
        assert 0.0 <= r["test_accuracy"] <= 1.0
        assert r["grad_error"] is None if r["task"].startswith("continual") else r["grad_error"] >= 0


def test_tiny_add_data_run_writes_results_and_resumes(tmp_path, capsys):
    """Base + K-prior, each a trainer run (1 device): records, plot, only the base kept, resume."""
    config = _tiny_config(tasks=("add_data",), methods=("kprior",))
    dataset, workdir, mesh = _tiny_dataset(), str(tmp_path / "run"), parallel.make_mesh(1)
    summary = run_deep_kprior_experiment(config, workdir, dataset=dataset, mesh=mesh)
    records = _records(workdir)
    assert summary["num_records"] == len(records) == 1 and records[0]["method"] == "kprior"
    _check_records(records)
    assert records[0]["memory_size"] == 72  # all of the past data (3 classes x 24)
    assert os.path.getsize(os.path.join(workdir, "accuracy_vs_memory.png")) > 0
    assert sorted(os.listdir(os.path.join(workdir, "runs", "add_data", "seed0"))) == ["base"]
    capsys.readouterr()
    run_deep_kprior_experiment(config, workdir, dataset=dataset, mesh=mesh)  # resumable: nothing left to train
    assert "test accuracy" not in capsys.readouterr().out
    assert _records(workdir) == records


@pytest.mark.parametrize("task, method", [("continual", "replay"), ("continual_multihead", "kprior")])
def test_tiny_continual_run(tmp_path, task, method):
    """4 classes = 2 tasks (0/1, 2/3): base on task 1, then the method on task 2; domain-incremental labels (one
    2-output head) or task-incremental (a 2-class head per task, K-prior soft labels on each point's head)."""
    config = _tiny_config(tasks=(task,), methods=(method,))
    workdir = str(tmp_path / "run")
    run_deep_kprior_experiment(config, workdir, dataset=_tiny_dataset(), mesh=parallel.make_mesh(1))
    records = _records(workdir)
    assert [(r["task"], r["method"]) for r in records] == [(task, method)]
    _check_records(records)
    assert records[0]["memory_size"] == 48  # all of task 1 (2 classes x 24)
    if task == "continual_multihead":
        assert records[0]["test_accuracy"] > 0.5  # two 2-class heads on well-separated blobs


@pytest.mark.parametrize("change, field", [
    (lambda c: c.kprior.update(methods=("kprior", "ewc")), "kprior.methods"),
    (lambda c: c.kprior.update(tasks=("remove_data",)), "kprior.tasks"),
    (lambda c: c.model.update(name="cnn"), "model.name"),  # BatchNorm statistics
    (lambda c: c.optimizer.update(weight_decay=1e-4), "optimizer.weight_decay"),
    (lambda c: c.training.update(num_train_steps=-1), "training.num_train_steps"),
    (lambda c: c.kprior.update(memory_fractions=(0.0,)), "kprior.memory_fractions"),
])
def test_bad_config_raises_before_anything_runs(tmp_path, change, field):
    config = _tiny_config(tasks=("add_data",), methods=("kprior",))
    change(config)
    with pytest.raises(ConfigError) as error:
        run_deep_kprior_experiment(config, str(tmp_path / "never"), dataset=_tiny_dataset())
    assert error.value.field == field
    assert not (tmp_path / "never").exists()


def test_add_digit_outside_the_classes_is_a_config_error(tmp_path):
    config = _tiny_config(tasks=("add_data",), methods=("kprior",), add_digit=7)
    with pytest.raises(ConfigError, match="kprior.add_digit"):
        run_deep_kprior_experiment(config, str(tmp_path / "never"), dataset=_tiny_dataset())


@pytest.mark.parametrize("name", ["mnist_add_data", "split_mnist"])
def test_mnist_configs_are_valid_deep_configs(name):
    spec = importlib.util.spec_from_file_location(name, CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    check_deep_config(config)
    assert config.experiment == "kprior_deep" and experiments.EXPERIMENTS.lookup("kprior_deep")


def test_every_run_of_a_task_shares_one_compiled_train_step(tmp_path):
    """The prior's arrays are jit arguments of the train step, never constants: base, batch, fine-tuning, K-prior and
    Replay at two memory sizes (7 trainer runs) compile the train step at most once; the other runs find it in the
    persistent compilation cache (tests/conftest.py enables one). With the memory in the closure each run compiled."""
    from jax import monitoring
    from jax._src import dispatch
    events = []

    def on_event(event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            events.append("hit")

    def on_duration(event, duration, **kwargs):
        if event == dispatch.BACKEND_COMPILE_EVENT:
            events.append(kwargs.get("fun_name", ""))

    monitoring.register_event_listener(on_event)
    monitoring.register_event_duration_secs_listener(on_duration)
    try:
        config = _tiny_config(tasks=("add_data",), memory_fractions=(1.0, 0.5))
        run_deep_kprior_experiment(config, str(tmp_path / "run"), dataset=_tiny_dataset(), mesh=parallel.make_mesh(1))
    finally:
        monitoring.unregister_event_listener(on_event)
        monitoring.unregister_event_duration_listener(on_duration)
    steps = [i for i, name in enumerate(events) if name == "jit(step)"]  # the train and the eval step
    assert len(steps) >= 7 + 1, " ".join(sorted(set(events)))
    misses = [i for i in steps if i == 0 or events[i - 1] != "hit"]
    assert len(misses) <= 2, events


def test_task_incremental_memory_term_uses_each_points_head():
    """head_size 2: each memory point's loss is the cross-entropy over its own task's two logits (here against the
    soft labels of an anchor on that head), which differs from the single-head term."""
    from jaxlab.train.step import head_logits
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
    labels = np.array([0, 1, 2, 3, 2, 0])
    w_star, w = (jnp.asarray(rng.normal(size=(3, 4)), jnp.float32) for _ in range(2))
    soft = jax.nn.softmax(head_logits(x @ w_star, jnp.asarray(labels), 2))
    prior = make_kprior(linear, w_star, x, 1.0).replace(anchor_predictions=soft)
    inputs = deep_prior_inputs(prior, w_star, 4, capacity=8, memory_labels=labels)
    every = jnp.arange(6)
    log_p = jax.nn.log_softmax(head_logits(x @ w, jnp.asarray(labels), 2))
    expected = 6 / (6 * 4) * float(-jnp.sum(soft * log_p)) + 0.5 / 4 * float(jnp.sum((w - w_star) ** 2))
    np.testing.assert_allclose(float(deep_prior_loss(w, inputs, linear, every, head_size=2)), expected, rtol=1e-5)
    assert abs(float(deep_prior_loss(w, inputs, linear, every)) - expected) > 1e-3


def test_deep_kprior_training_is_the_same_on_one_and_eight_devices(tmp_path):
    """The trainer's K-prior term is data-parallel: its arrays reach every device whole (a replicated jit argument),
    each device draws the memory points of its own examples (keyed by example index) and the loss is averaged over
    devices, so 1 and 8 devices take the same steps; and the term matters (training without it differs)."""
    from jaxlab import models
    from jaxlab.train import train_and_evaluate
    from jaxlab.kprior.deep import _apply_fn
    config = _tiny_config()
    config.training.num_train_steps = 4
    dataset = _tiny_dataset()
    model = models.create_model(config.model, dataset.num_classes)
    images = dataset.train.__getitems__(np.arange(len(dataset.train)))["image"]
    start = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 1)))["params"]
    prior = make_kprior(_apply_fn(model), jax.tree.map(lambda p: 3.0 * p, start), jnp.asarray(images[:40]), 5.0)
    inputs = deep_prior_inputs(prior, start, len(images), capacity=64)
    runs = {}
    for name, devices, extra in (("one", 1, True), ("eight", 8, True), ("plain", 8, False)):
        result = train_and_evaluate(config, str(tmp_path / name), mesh=parallel.make_mesh(devices), dataset=dataset,
                                    initial_variables={"params": start},
                                    extra_loss=make_extra_loss(_apply_fn(model)) if extra else None,
                                    extra_loss_inputs=inputs if extra else None)
        runs[name] = jax.tree.map(np.asarray, jax.device_get(result["state"].params))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), runs["one"], runs["eight"])
    gap = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(runs["eight"]),
                                                            jax.tree.leaves(runs["plain"])))
    assert gap > 1e-3
