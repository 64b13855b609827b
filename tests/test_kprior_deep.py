"""jaxlab.kprior.minibatch: the minibatch K-prior as a trainer extension, and the kprior_deep experiment
(jaxlab.experiments.kprior_deep) end to end, resumed after SIGTERM."""

import json
import os
import pathlib
import signal

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab import experiments, parallel
from jaxlab.data import all_examples, from_arrays
from jaxlab.errors import ConfigError
from jaxlab.experiments import kprior_deep
from jaxlab.experiments.kprior_deep import check_deep_config
from jaxlab.experiments.reports import RECORD_KEYS, plot_accuracy_vs_memory
from jaxlab.kprior import (
    MinibatchPrior,
    data_loss,
    deep_prior_loss,
    make_kprior,
    memory_indices,
    minibatch_prior,
    minibatch_prior_extension,
    minibatch_prior_loss,
    minimize,
    no_memory,
    regularised_loss,
    replay_prior,
)
from jaxlab.train import Extension, RunInfo


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
        inputs = minibatch_prior(prior, w_star, n_new, capacity=len(x) + 5)  # padded rows are never drawn here

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
    inputs = minibatch_prior(prior, w_star, n_new, capacity)
    average = np.mean([float(deep_prior_loss(w, inputs, linear, jnp.array([m]))) for m in range(len(x))])
    np.testing.assert_allclose(average, float(prior(w)) / n_new, rtol=1e-5)
    replay = minibatch_prior(replay_prior(linear, x, np.argmax(np.asarray(t), 1), t.shape[1], 3.0), w_star, n_new,
                               capacity)
    np.testing.assert_allclose(float(deep_prior_loss(w, replay, linear, jnp.arange(len(x)))),
                               float(regularised_loss(w, linear, x, t, 3.0)) / n_new, rtol=1e-5)
    empty = minibatch_prior(no_memory(linear, x, t.shape[1], 3.0), w_star, 50, capacity)
    np.testing.assert_allclose(float(deep_prior_loss(w, empty, linear, jnp.array([0, 4]))),
                               1.5 * float(jnp.sum(w ** 2)) / 50, rtol=1e-6)
    shapes = lambda tree: jax.tree.map(lambda a: (np.shape(a), np.asarray(a).dtype), tree)  # noqa: E731
    assert isinstance(inputs, MinibatchPrior) and shapes(inputs) == shapes(replay) == shapes(empty)
    chex.assert_shape([inputs.memory_inputs, inputs.memory_targets, inputs.memory_labels],
                      [(capacity, x.shape[1]), (capacity, t.shape[1]), (capacity,)])
    with pytest.raises(ValueError, match="capacity"):
        minibatch_prior(prior, w_star, n_new, capacity=len(x) - 1)


class DeepPriorLossTest(chex.TestCase):
    """deep_prior_loss against its formula, jitted and not (chex variants)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_deep_prior_loss_is_the_weighted_memory_term_plus_the_weight_term(self):
        rng = np.random.default_rng(3)
        x = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)
        w_star, w = (jnp.asarray(rng.normal(size=(3, 2)), jnp.float32) for _ in range(2))
        inputs = minibatch_prior(make_kprior(linear, w_star, x, 2.0), w_star, 5, capacity=12)
        draws = jnp.array([0, 7, 7, 2])
        loss = self.variant(lambda w, inputs, draws: deep_prior_loss(w, inputs, linear, draws))
        value = loss(w, inputs, draws)
        chex.assert_shape(value, ())
        soft = jax.nn.softmax(x[draws] @ w_star)
        expected = (8 / (4 * 5) * float(-jnp.sum(soft * jax.nn.log_softmax(x[draws] @ w)))
                    + 2.0 / (2 * 5) * float(jnp.sum((w - w_star) ** 2)))
        np.testing.assert_allclose(float(value), expected, rtol=1e-5)

    def test_a_batch_of_draws_must_be_a_vector(self):
        inputs = minibatch_prior(make_kprior(linear, jnp.ones((3, 2)), jnp.ones((4, 3)), 1.0), jnp.ones((3, 2)), 5,
                                 capacity=4)
        with self.assertRaises(AssertionError):
            deep_prior_loss(jnp.ones((3, 2)), inputs, linear, jnp.zeros((2, 2), jnp.int32))


def test_memory_sampling_is_deterministic_per_step():
    rng = jax.random.PRNGKey(0)
    index = jnp.arange(40, 72)
    first = memory_indices(rng, jnp.int32(5), index, 1000)
    np.testing.assert_array_equal(first, memory_indices(rng, jnp.int32(5), index, 1000))
    assert first.shape == (32,) and int(first.min()) >= 0 and int(first.max()) < 1000
    assert not np.array_equal(first, memory_indices(rng, jnp.int32(6), index, 1000))
    # a draw belongs to its example, not its batch position: any device split gives the same draws
    np.testing.assert_array_equal(memory_indices(rng, jnp.int32(5), index[::-1], 1000), first[::-1])
    # the loss term evaluates the same memory minibatch for the same step
    prior = make_kprior(linear, jnp.ones((3, 2)), jnp.asarray(np.random.default_rng(0).normal(size=(50, 3))), 1.0)
    inputs = minibatch_prior(prior, jnp.ones((3, 2)), 10, capacity=64)
    extra = jax.jit(minibatch_prior_loss(linear))
    batch = {"index": index, "step": jnp.int32(5)}
    w = jax.random.normal(jax.random.PRNGKey(2), (3, 2))
    assert float(extra(w, batch, rng, inputs)) == float(extra(w, batch, rng, inputs))
    assert float(extra(w, batch, rng, inputs)) != float(extra(w, {**batch, "step": jnp.int32(6)}, rng, inputs))
    # the trainer extension carries that term and its arrays (a jit input of the step)
    extension = minibatch_prior_extension(linear, inputs)(RunInfo(model=None, input_shape=(3,), num_classes=2,
                                                                  total_steps=1))
    assert isinstance(extension, Extension) and extension.name == "kprior" and extension.loss_inputs is inputs
    assert float(extension.loss(w, batch, rng, inputs)) == float(extra(w, batch, rng, inputs))


def _tiny_config(**kprior):
    config = experiments.base_config("kprior_deep")
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
    summary = kprior_deep.run(config, workdir, dataset=dataset, mesh=mesh)
    records = _records(workdir)
    assert summary["num_records"] == len(records) == 1 and records[0]["method"] == "kprior"
    _check_records(records)
    assert records[0]["memory_size"] == 72  # all of the past data (3 classes x 24)
    assert os.path.getsize(os.path.join(workdir, "accuracy_vs_memory.png")) > 0
    table = open(os.path.join(workdir, "results.md")).read()
    assert f"| K-prior | {100 * records[0]['test_accuracy']:.1f} +- 0.0 |" in table
    assert sorted(os.listdir(os.path.join(workdir, "runs", "add_data", "seed0"))) == ["base"]
    capsys.readouterr()
    kprior_deep.run(config, workdir, dataset=dataset, mesh=mesh)  # resumable: nothing left to train
    assert "test accuracy" not in capsys.readouterr().out
    assert _records(workdir) == records


def test_deep_plot_layout_draws_the_memory_free_methods_as_hatched_lines(tmp_path):
    """The deep tasks in a row; Fine-tuning and Batch (recorded at every fraction) horizontal, hatched apart."""
    records = [dict(task=task, method=method, memory_fraction=f, seed=0, grad_error=None,
                    test_accuracy={"kprior": 0.5 + 0.3 * f, "finetune": 0.4, "batch": 0.9}[method])
               for task in ("continual_multihead", "add_data", "continual")  # plotted in KPRIOR_TASK_TITLES order
               for method in ("finetune", "kprior", "batch") for f in (0.1, 0.5, 1.0)]
    figure = plot_accuracy_vs_memory(records, str(tmp_path / "plot.png"))
    assert [axis.get_title() for axis in figure.axes] == [
        "add data", "continual (domain-incremental)", "continual (task-incremental, multi-head)"]
    assert figure.axes[0].get_subplotspec().get_geometry()[:2] == (1, 3)
    assert [axis.get_xlabel() for axis in figure.axes] == ["memory size (% of past data, log scale)"] + [
        "memory size (% of each task's data, log scale)"] * 2
    for axis in figure.axes:
        np.testing.assert_allclose(axis.get_xticks(), [10, 50, 100])
        assert sorted(patch.get_hatch() for patch in axis.patches) == ["////", "\\\\\\\\"]
        flat = {line.get_label(): line.get_ydata() for line in axis.get_lines() if len(line.get_ydata()) == 2}
        assert list(flat) == ["Fine-tuning (no memory)", "Batch (retraining on all data)"]
        np.testing.assert_allclose(list(flat.values()), [[40, 40], [90, 90]])
    assert [t.get_text() for t in figure.legends[0].get_texts()] == [
        "K-prior", "Fine-tuning (no memory)", "Batch (retraining on all data)",
        "band: min-max over 1 seed (hatched: no memory)"]


def _without_timing(records):
    return [{key: value for key, value in r.items() if key != "seconds"} for r in records]


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    """The tiny add-data experiment (base, fine-tuning and the K-prior at two memory sizes), run through."""
    config = _tiny_config(tasks=("add_data",), methods=("kprior", "finetune"), memory_fractions=(1.0, 0.5))
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    summary = kprior_deep.run(config, workdir, dataset=_tiny_dataset(), mesh=parallel.make_mesh(1))
    assert summary["finished"]
    return config, _records(workdir)


@pytest.mark.parametrize("stop_at", [3, 28])  # in the base model's run; in the second K-prior run
def test_kprior_deep_resumes_after_sigterm(tmp_path, monkeypatch, uninterrupted_run, stop_at):
    """SIGTERM at the stop_at-th train step: the running trainer run checkpoints, `run` returns preempted with the
    records so far on disk; rerunning with the same workdir finishes with the records of an uninterrupted run
    (timing aside): base models restored from their checkpoints, interrupted runs resumed exactly."""
    config, expected = uninterrupted_run
    workdir = str(tmp_path / "run")
    shard_batch, calls = parallel.shard_batch, []

    def shard_and_stop(batch, mesh):
        if len(batch["image"]) == config.training.batch_size:  # a train batch (eval batches hold the test split)
            calls.append(None)
            if len(calls) == stop_at:
                os.kill(os.getpid(), signal.SIGTERM)
        return shard_batch(batch, mesh)

    monkeypatch.setattr(parallel, "shard_batch", shard_and_stop)
    summary = kprior_deep.run(config, workdir, dataset=_tiny_dataset(), mesh=parallel.make_mesh(1))
    assert summary["preempted"] and not summary["finished"] and len(calls) == stop_at
    partial = _records(workdir) if os.path.exists(os.path.join(workdir, "results.json")) else []
    assert len(partial) < len(expected)
    monkeypatch.setattr(parallel, "shard_batch", shard_batch)
    summary = kprior_deep.run(config, workdir, dataset=_tiny_dataset(), mesh=parallel.make_mesh(1))
    assert summary["finished"]
    assert _without_timing(_records(workdir)) == _without_timing(expected)
    assert sorted(os.listdir(os.path.join(workdir, "runs", "add_data", "seed0"))) == ["base"]


@pytest.mark.parametrize("task, method", [("continual", "replay"), ("continual_multihead", "kprior")])
def test_tiny_continual_run(tmp_path, task, method):
    """4 classes = 2 tasks (0/1, 2/3): base on task 1, then the method on task 2; domain-incremental labels (one
    2-output head) or task-incremental (a 2-class head per task, K-prior soft labels on each point's head)."""
    config = _tiny_config(tasks=(task,), methods=(method,))
    workdir = str(tmp_path / "run")
    kprior_deep.run(config, workdir, dataset=_tiny_dataset(), mesh=parallel.make_mesh(1))
    records = _records(workdir)
    assert [(r["task"], r["method"]) for r in records] == [(task, method)]
    _check_records(records)
    assert records[0]["memory_size"] == 48  # all of task 1 (2 classes x 24)
    if task == "continual_multihead":
        assert records[0]["test_accuracy"] > 0.5  # two 2-class heads on well-separated blobs


@pytest.mark.parametrize("change, field", [
    (lambda c: c.kprior.update(methods=("kprior", "ewc")), "kprior.methods"),
    (lambda c: c.kprior.update(tasks=("change_regulariser",)), "kprior.tasks"),  # kprior_adaptation's, not deep
    (lambda c: c.model.update(name="cnn"), "model.name"),  # BatchNorm statistics
    (lambda c: c.optimizer.update(weight_decay=1e-4), "optimizer.weight_decay"),
    (lambda c: c.training.update(num_train_steps=-1), "training.num_train_steps"),
    (lambda c: c.kprior.update(memory_fractions=(0.0,)), "kprior.memory_fractions"),
])
def test_bad_config_raises_before_anything_runs(tmp_path, change, field):
    config = _tiny_config(tasks=("add_data",), methods=("kprior",))
    change(config)
    with pytest.raises(ConfigError) as error:
        kprior_deep.run(config, str(tmp_path / "never"), dataset=_tiny_dataset())
    assert error.value.field == field
    assert not (tmp_path / "never").exists()


def test_add_digit_outside_the_classes_is_a_config_error(tmp_path):
    config = _tiny_config(tasks=("add_data",), methods=("kprior",), add_digit=7)
    with pytest.raises(ConfigError, match="kprior.add_digit"):
        kprior_deep.run(config, str(tmp_path / "never"), dataset=_tiny_dataset())


@pytest.mark.parametrize("name", ["mnist_add_data", "split_mnist", "mnist_remove_data", "mnist_distill"])
def test_mnist_configs_are_valid_deep_configs(name):
    config = experiments.config_module(CONFIGS / f"{name}.py").get_config()
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
        kprior_deep.run(config, str(tmp_path / "run"), dataset=_tiny_dataset(), mesh=parallel.make_mesh(1))
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
    inputs = minibatch_prior(prior, w_star, 4, capacity=8, memory_labels=labels)
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
    config = _tiny_config()
    config.training.num_train_steps = 4
    dataset = _tiny_dataset()
    model = models.create_model(config.model, dataset.num_classes)
    images = all_examples(dataset.train)["image"]
    start = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 1)))["params"]
    apply_fn = kprior_deep.model_apply_fn(model)
    prior = make_kprior(apply_fn, jax.tree.map(lambda p: 3.0 * p, start), jnp.asarray(images[:40]), 5.0)
    inputs = minibatch_prior(prior, start, len(images), capacity=64)
    runs = {}
    for name, devices, extra in (("one", 1, True), ("eight", 8, True), ("plain", 8, False)):
        result = train_and_evaluate(config, str(tmp_path / name), mesh=parallel.make_mesh(devices), dataset=dataset,
                                    initial_variables={"params": start},
                                    extensions=[minibatch_prior_extension(apply_fn, inputs)] if extra else [])
        runs[name] = jax.tree.map(np.asarray, jax.device_get(result["state"].params))
    chex.assert_trees_all_close(runs["one"], runs["eight"], rtol=2e-4, atol=2e-5)
    gap = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(runs["eight"]),
                                                            jax.tree.leaves(runs["plain"])))
    assert gap > 1e-3
