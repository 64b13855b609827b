"""The K-prior paper experiments (jaxlab.experiments.kprior_adaptation) end to end on generated data: the tiny CI config
writes a complete results.json and the plot, K-prior with 100% memory matches Batch (GLM), the padded/weighted
objectives are the library's task objectives, and a bad config fails before anything compiles."""
import importlib.util
import json
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import dump_svmlight_file

from jaxlab import kprior
from jaxlab.errors import ConfigError
from jaxlab.experiments import kprior_adaptation as experiment
from jaxlab.experiments.reports import RECORD_KEYS, memory_table, plot_accuracy_vs_memory
from jaxlab.kprior import AdaptationProblem

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs" / "kprior"


def load_config(name):
    spec = importlib.util.spec_from_file_location(name, CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def write_svmlight_pair(folder, name="tiny", n_train=600, n_test=300, num_features=12, seed=0):
    """Adult-like data: sparse binary features, labels -1/+1 from a noisy linear score."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=num_features)
    for file_name, n in ((name, n_train), (f"{name}_test", n_test)):
        x = (rng.random((n, num_features)) < 0.3).astype(np.float32)
        score = x @ weights + 0.5 * rng.normal(size=n)
        dump_svmlight_file(x, np.where(score > np.median(score), 1, -1), str(folder / file_name), zero_based=False)


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kprior_data")
    write_svmlight_pair(folder)
    config = load_config("ci")
    config.data.dir = str(folder)
    workdir = tmp_path_factory.mktemp("kprior_run")
    summary = experiment.run(config, str(workdir))
    with open(workdir / "results.json") as f:
        return config, workdir, summary, json.load(f)


def test_ci_config_writes_every_record_and_the_plot(ci_run):
    config, workdir, summary, records = ci_run
    k = config.kprior
    expected = {(t, m, f, s) for t in k.tasks for m in k.methods for f in k.memory_fractions for s in k.seeds}
    found = [(r["task"], r["method"], r["memory_fraction"], r["seed"]) for r in records]
    assert len(found) == len(set(found)) and set(found) == expected
    assert set(k.tasks) == set(experiment.TASKS) and set(k.methods) == set(experiment.METHODS)
    for r in records:
        assert set(RECORD_KEYS) <= set(r)
        assert 0.0 <= r["test_accuracy"] <= 1.0 and np.isfinite(r["grad_error"]) and r["grad_error"] >= 0
    assert summary["num_records"] == len(records)
    plot = workdir / "accuracy_vs_memory.png"
    assert plot.is_file() and plot.read_bytes()[:4] == b"\x89PNG"


def _plot_records(tasks=("add_data", "remove_data", "change_regulariser", "change_model")):
    """Three seeds x memory 2-100% of K-prior (accuracy 0.7 + 0.1 f + 0.01 seed) and Batch (0.9 + 0.01 seed, the
    same at every fraction, as the experiments record it)."""
    return [dict(task=task, method=method, memory_fraction=f, seed=seed, grad_error=0.0,
                 test_accuracy=(0.9 if method == "batch" else 0.7 + 0.1 * f) + 0.01 * seed)
            for task in tasks for method in ("kprior", "batch") for f in (0.02, 0.05, 0.07, 0.1, 0.2, 0.5, 1.0)
            for seed in range(3)]


def test_accuracy_vs_memory_ticks_the_fractions_and_explains_the_band(tmp_path):
    figure = plot_accuracy_vs_memory(_plot_records(), str(tmp_path / "plot.png"), title="t")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    axes = [axis for axis in figure.axes if axis.get_visible()]
    assert len(axes) == 4 and axes[0].get_subplotspec().get_geometry()[:2] == (2, 2)  # four tasks: 2 x 2
    for axis in axes:
        np.testing.assert_allclose(axis.get_xticks(), [2, 5, 7, 10, 20, 50, 100])
        assert [t.get_text() for t in axis.get_xticklabels()] == ["2", "5", "7", "10", "20", "50", "100"]
        assert len(axis.xaxis.get_minorticklocs()) == 0 and "% of past data" in axis.get_xlabel()
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert labels == ["K-prior", "Batch (retraining on all data)", "band: min-max over 3 seeds (hatched: no memory)"]
    assert figure.legends[0].get_title().get_text() == "lines: mean over 3 seeds"


def test_accuracy_vs_memory_band_is_min_max_and_batch_lies_beneath(tmp_path):
    axis = plot_accuracy_vs_memory(_plot_records(("add_data",)), str(tmp_path / "plot.png")).axes[0]
    kprior_line, batch_line = (next(line for line in axis.get_lines() if line.get_label() == label)
                               for label in ("K-prior", "Batch (retraining on all data)"))
    np.testing.assert_allclose(kprior_line.get_ydata(), 100 * (0.71 + 0.1 * np.array([2, 5, 7, 10, 20, 50, 100]) / 100))
    band = axis.collections[0].get_paths()[0].vertices  # the K-prior band: min (seed 0) to max (seed 2), not +- std
    np.testing.assert_allclose(sorted(set(band[np.isclose(band[:, 0], 2), 1])), [70.2, 72.2], rtol=1e-6)
    # Batch: constant in memory, a horizontal line over the whole axis at its mean, its hatched band its min-max
    np.testing.assert_allclose(batch_line.get_ydata(), [91, 91])
    assert list(batch_line.get_xdata()) == [0, 1] and batch_line.get_transform() != axis.transData
    (hatched,) = [patch for patch in axis.patches if patch.get_hatch()]
    np.testing.assert_allclose([hatched.get_y(), hatched.get_y() + hatched.get_height()], [90, 92], rtol=1e-6)
    assert hatched.get_facecolor()[3] == 0  # an open hatch: the K-prior band shows through it
    assert max(hatched.zorder, batch_line.zorder) < axis.collections[0].zorder + 1 < kprior_line.zorder


def test_full_memory_kprior_is_batch(ci_run):
    """GLM, M = D: the K-prior objective has retraining's gradient field (exact Newton solves): same accuracy,
    gradient error ~ float32 noise; Replay with 100% memory IS Batch's objective (error exactly 0)."""
    _, _, _, records = ci_run
    table = {(r["task"], r["method"], r["memory_fraction"], r["seed"]): r for r in records}
    for (task, method, fraction, seed), r in table.items():
        if fraction != 1.0 or method == "batch":
            continue
        assert r["test_accuracy"] == table[(task, "batch", 1.0, seed)]["test_accuracy"], (task, method, seed)
        assert r["grad_error"] < 1e-4, (task, method, seed, r["grad_error"])
    # a small memory: Replay's gradient error exceeds the K-prior's on every task (the paper's point)
    for task in experiment.TASKS:
        errors = {m: np.mean([r["grad_error"] for r in records if r["task"] == task and r["method"] == m
                              and r["memory_fraction"] == 0.1]) for m in ("kprior", "replay")}
        assert errors["kprior"] < errors["replay"], (task, errors)


@pytest.mark.parametrize("field, value", [
    ("kprior.memory_fractions", (1.0, 0.0)),
    ("kprior.tasks", ("add_data", "forget")),
    ("kprior.methods", ()),
    ("kprior.solver", "adam"),            # adam is for networks
    ("kprior.change_model_degree", 1),    # not above model.polynomial_degree
    ("kprior.delta", -1.0),
    ("kprior.base_solver", "adam"),       # adam is for networks
])
def test_bad_config_raises_before_compiling(monkeypatch, tmp_path, field, value):
    def no_compile(*args, **kwargs):
        raise AssertionError("compiled before validating the config")

    monkeypatch.setattr(experiment, "_solve_grid", no_compile)
    monkeypatch.setattr(experiment, "_solve_seeds", no_compile)
    config = load_config("adult")
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        experiment.run(config, str(tmp_path))


def test_missing_data_is_a_clear_error_before_compiling(monkeypatch, tmp_path):
    from jaxlab.data import DataError
    monkeypatch.setattr(experiment, "_solve_grid", lambda *a, **k: pytest.fail("compiled"))
    config = load_config("ci")
    config.data.dir = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match="data.dir"):
        experiment.run(config, str(tmp_path))


def test_newton_on_a_base_model_too_big_for_a_dense_hessian_is_a_clear_error(monkeypatch, tmp_path):
    """ci.py solves with newton; a degree-5 base model on 12 features has 2 x 6188 params (> NEWTON_MAX_PARAMS):
    an explicit base_solver=newton is a ConfigError naming kprior.base_solver once the data's width is known,
    before compiling; the default base_solver ('' = solver) solves that base model with lbfgs instead."""
    solved = []
    monkeypatch.setattr(experiment, "_solve_seeds", lambda *a, **k: solved.append(a[-1]) or pytest.fail("compiled"))
    write_svmlight_pair(tmp_path, n_train=40, n_test=20)
    config = load_config("ci")
    config.data.dir = str(tmp_path)
    config.kprior.tasks = ("change_model",)
    config.kprior.change_model_degree = 5
    config.kprior.base_solver = "newton"
    with pytest.raises(ConfigError, match=r"kprior\.base_solver.*degree-5 base model"):
        experiment.run(config, str(tmp_path / "run"))
    assert solved == []
    config.kprior.base_solver = ""
    with pytest.raises(pytest.fail.Exception, match="compiled"):  # past the checks, into the base-model solve
        experiment.run(config, str(tmp_path / "run"))
    assert [solver.name for solver in solved] == ["lbfgs"]


@pytest.mark.parametrize("kind", ["kprior", "replay"])
@pytest.mark.parametrize("with_new_data", [False, True])
def test_glm_hessian_is_the_objectives_hessian(kind, with_new_data):
    """The IRLS Hessian Newton uses for the GLM == jax.hessian of adaptation_objective (float64, 3 classes,
    padded memory with removed points, an anchor and a change of delta; with and without new data)."""
    rng = np.random.default_rng(1)
    n, d, classes = 30, 5, 3
    problem = AdaptationProblem(
        memory_inputs=rng.normal(size=(n, d)), memory_targets=np.eye(classes)[rng.integers(0, classes, n)],
        memory_soft=rng.dirichlet(np.ones(classes), size=n),
        memory_weight=1.0 * (rng.random(n) < 0.6), memory_removed=1.0 * (rng.random(n) < 0.3),
        delta=2.0, new_delta=0.7, num_new=0.0, anchor=rng.normal(size=(d, classes)))
    if with_new_data:
        problem = problem._replace(new_inputs=rng.normal(size=(7, d)),
                                   new_targets=np.eye(classes)[rng.integers(0, classes, 7)])
    with jax.enable_x64(True):
        params = jnp.asarray(rng.normal(size=(d, classes)))
        flat = lambda w: kprior.adaptation_objective(w.reshape(d, classes), problem, kprior.linear, kind)  # noqa
        expected = jax.hessian(flat)(params.ravel())
        hessian = kprior.glm_hessian(params, problem, kprior.linear, kind)
        chex.assert_shape(hessian, (d * classes, d * classes))
        np.testing.assert_allclose(hessian, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="GLM"):
        kprior.glm_hessian(params, problem, lambda w, x: x @ w, kind)


class WeightedObjectivesTest(chex.TestCase):
    """adaptation_objective with 0/1 memory weights over all past points == jaxlab.kprior's objectives on the
    gathered memory (add, remove, change regulariser, change of GLM, Replay), jitted and not."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_weighted_objectives_are_the_library_task_objectives(self):
        rng = np.random.default_rng(0)
        n, d, delta, new_delta = 30, 4, 2.0, 0.5
        past = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
        targets = jnp.asarray(np.eye(2)[rng.integers(0, 2, n)], jnp.float32)
        new_x, new_y = past[:5] + 1.0, targets[:5]
        w_star, w = (jnp.asarray(rng.normal(size=(d, 2)), jnp.float32) for _ in range(2))
        memory = np.sort(rng.choice(n, 12, replace=False))
        removed = memory[:3]
        weight, flags = np.zeros(n, np.float32), np.zeros(n, np.float32)
        weight[memory], flags[removed] = 1, 1
        linear = kprior.linear
        prior = kprior.make_kprior(linear, w_star, past[memory], delta)
        base = AdaptationProblem(memory_inputs=past, memory_targets=targets, memory_soft=jax.nn.softmax(past @ w_star),
                                 memory_weight=jnp.asarray(weight), memory_removed=jnp.zeros(n), delta=delta,
                                 new_delta=delta, num_new=0.0, anchor=w_star)
        objectives = {kind: self.variant(lambda w, problem, kind=kind: kprior.adaptation_objective(
            w, problem, linear, kind)) for kind in ("kprior", "replay")}
        objective = lambda problem, kind: float(objectives[kind](w, problem))  # noqa: E731
        check = lambda got, want: np.testing.assert_allclose(got, float(want), rtol=1e-5)  # noqa: E731

        add = base._replace(new_inputs=new_x, new_targets=new_y)
        check(objective(add, "kprior"), kprior.add_data(w, prior, new_x, new_y))
        check(objective(add, "replay"), kprior.replay(w, linear, past[memory], targets[memory], delta,
                                                      new_inputs=new_x, new_targets=new_y))
        remove = base._replace(memory_removed=jnp.asarray(flags))
        check(objective(remove, "kprior"), kprior.remove_data(w, prior, past[removed], targets[removed]))
        kept = np.setdiff1d(memory, removed)
        check(objective(remove, "replay"), kprior.replay(w, linear, past[kept], targets[kept], delta))
        regulariser = base._replace(new_delta=new_delta)
        check(objective(regulariser, "kprior"), kprior.change_regulariser(w, prior, new_delta))
        check(objective(regulariser, "replay"), kprior.replay(w, linear, past[memory], targets[memory], new_delta))
        # change of GLM: degree 2 -> 1 on the raw inputs, anchor P w*
        from jaxlab.models.glm import polynomial_features
        phi1, phi2 = polynomial_features(past, 1), polynomial_features(past, 2)
        old = jnp.asarray(rng.normal(size=(phi2.shape[1], 2)), jnp.float32)
        theta = jnp.asarray(rng.normal(size=(phi1.shape[1], 2)), jnp.float32)
        projection = kprior.polynomial_projection(d, 1)
        model_prior = kprior.change_model_prior(linear, old, linear, phi2[memory], delta, projection=projection)
        model_prior = model_prior.replace(memory_inputs=phi1[memory])  # the new model's inputs on the same points
        change = base._replace(memory_inputs=phi1, memory_soft=jax.nn.softmax(phi2 @ old), anchor=projection(old))
        np.testing.assert_allclose(float(objectives["kprior"](theta, change)), float(model_prior(theta)), rtol=1e-5)

    def test_vmap_axes_and_rank_checks(self):
        """`axes` maps the named fields (absent optional fields stay None); a memory weight of the wrong rank is an
        error instead of a silent broadcast."""
        rng = np.random.default_rng(0)
        n, d = 10, 3
        problem = AdaptationProblem(memory_inputs=jnp.asarray(rng.normal(size=(n, d))),
                                    memory_targets=jnp.eye(2)[rng.integers(0, 2, n)],
                                    memory_soft=jnp.full((n, 2), 0.5), memory_weight=jnp.ones((4, n)),
                                    memory_removed=jnp.zeros(n), delta=1.0, new_delta=1.0, num_new=0.0)
        axes = problem.axes(("memory_weight", "anchor"))
        assert axes.memory_weight == 0 and axes.memory_inputs is None and axes.anchor is None
        w = jnp.zeros((d, 2))
        values = jax.vmap(kprior.adaptation_objective, in_axes=(None, axes, None, None))(w, problem, kprior.linear,
                                                                                          "replay")
        chex.assert_shape(values, (4,))
        with self.assertRaises(AssertionError):  # (4, n) weights on one problem: rank 2, not 1
            kprior.adaptation_objective(w, problem, kprior.linear, "replay")


def test_mlp_gathered_memory_runs(tmp_path):
    """The network path (Adam, gathered memory per fraction, USPS odd/even protocol) on sklearn's 8x8 digits."""
    config = load_config("usps_mlp")
    config.data.source, config.data.dir = "digits", ""
    config.model.hidden_sizes = (8,)
    config.kprior.change_model_hidden_sizes = (8, 8)
    config.kprior.tasks = ("change_model",)  # a different base net, distillation without a weight term
    config.kprior.methods = ("kprior", "batch")
    config.kprior.memory_fractions = (1.0, 0.1)
    config.kprior.seeds = (0, 1)
    config.kprior.steps = 30
    summary = experiment.run(config, str(tmp_path))
    records = experiment.load_results(summary["results"])
    assert len(records) == 1 * 2 * 2 * 2
    assert all(0 <= r["test_accuracy"] <= 1 and np.isfinite(r["grad_error"]) for r in records)
    sizes = {(r["task"], r["memory_fraction"]): r["memory_size"] for r in records if r["method"] == "kprior"}
    assert sizes[("change_model", 0.1)] < sizes[("change_model", 1.0)]


def test_memory_table_gives_mean_and_std_over_seeds_per_method_and_memory():
    def record(method, fraction, seed, accuracy, size):
        return {"task": "remove_data", "method": method, "memory_fraction": fraction, "seed": seed,
                "test_accuracy": accuracy, "grad_error": 0.0, "memory_size": size}

    records = [record("kprior", 0.1, 0, 0.90, 100), record("kprior", 0.1, 1, 0.94, 102),
               record("kprior", 1.0, 0, 0.97, 1000), record("kprior", 1.0, 1, 0.97, 1000),
               record("batch", 0.1, 0, 0.98, 1000), record("batch", 1.0, 0, 0.98, 1000),
               record("batch", 0.1, 1, 0.96, 1000), record("batch", 1.0, 1, 0.96, 1000)]
    lines = memory_table(records).splitlines()
    assert lines[0] == "remove data: test accuracy (%), mean +- std over seeds [0, 1]"
    assert lines[2] == "| method | 100% (1,000 points) | 10% (101 points) |"  # K-prior's memory, largest first
    assert lines[4] == "| K-prior | 97.0 +- 0.0 | 92.0 +- 2.0 |"
    assert lines[5] == "| Batch (retraining on all data) | 97.0 +- 1.0 | 97.0 +- 1.0 |"
