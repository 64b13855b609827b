"""DReg: the replicated layer is the plain layer when split, folds back, penalties match numpy, device invariance."""

import json
import os
import pathlib
import warnings

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab import data, dreg, models, parallel
from jaxlab.errors import ConfigError
from jaxlab.experiments import config_module, dreg_study
from jaxlab.experiments import train as train_experiment
from jaxlab.train import Extension, RunInfo, create_train_state, cross_entropy, make_train_step, train_and_evaluate
from tests.helpers import blobs_dataset, sigterm_at_batch, tiny_config

SHAPE = (8, 8, 1)
MODELS = {"mlp": {"model.hidden_sizes": (16,)}, "cnn": {"model.width": 4}}


def _model(name, num_classes=3):
    if name == "resnet":  # a two-block ResNet: the registry's ResNet-18 takes far longer to trace and run
        return models.ResNet((1, 1), models.BasicBlock, num_classes, width=2)
    return models.create_model(tiny_config(**{"model.name": name, **MODELS[name]}).model, num_classes)


def _images(n=8, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, *SHAPE)), jnp.float32)


def _random_variables(model, x, seed=0):
    """Variables of `model` filled from numpy: a conv's jax.random.normal init takes ~10 s to compile on CPU."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), jnp.float32), shapes)


def _layer(params, path):
    for key in dreg.path_keys(path):
        params = params[key]
    return params


@pytest.mark.parametrize("name, default", [("mlp", "Dense_1"), ("cnn", "Dense_0"), ("resnet", "fc")])
def test_default_target_is_the_classifier_and_paths_are_checked(name, default):
    model = _model(name)
    assert dreg.replicate_model(model, SHAPE).path == default
    assert dreg.replicate_model(model, SHAPE, "params/" + default).path == default
    with pytest.raises(ValueError, match="not a Dense or Conv"):
        dreg.replicate_model(model, SHAPE, "no_such_layer")


def test_bad_choices_are_errors():
    model = _model("cnn")
    with pytest.raises(ValueError, match="is not a Dense or Conv"):
        dreg.replicate_model(model, SHAPE, "BatchNorm_0")
    with pytest.raises(ValueError, match="two_heads"):
        dreg.replicate_model(model, SHAPE, "Conv_1", combine="two_heads")
    assert dreg.replicate_model(model, SHAPE, combine="two_heads").combine == "two_heads"
    with pytest.raises(ValueError, match="combine"):
        dreg.replicate_model(model, SHAPE, combine="product")
    with pytest.raises(ValueError, match="init"):
        dreg.replicate_model(model, SHAPE, init="clone")
    with pytest.raises(ValueError, match="no replicated layer"):
        dreg.fold_back(jax.eval_shape(model.init, jax.random.PRNGKey(0), _images(1))["params"], "Dense_0")
    with pytest.raises(ConfigError, match="dreg.penalty"):
        dreg.dreg_extra_loss("fc", "l1")


@pytest.mark.parametrize("name, path", [("mlp", "Dense_0"), ("cnn", "Conv_1"), ("resnet", "layer2_0/conv1")])
def test_split_copies_under_sum_are_the_plain_model(name, path):
    """(W/2, W/2) under sum, lambda = 0: same outputs, same gradients; each copy gets the plain kernel's
    gradient, so the copies' summed gradient is 2x (the doubled effective learning rate)."""
    model = _model(name)
    replicated = dreg.replicate_model(model, SHAPE, path, "sum", "split")
    x, labels = _images(), jnp.arange(8) % 3
    plain_vars = _random_variables(model, x)
    rep_vars = {**plain_vars, "params": dreg.replicate_params(plain_vars["params"], None, path, "sum", "split")}

    def loss_and_grads(net, variables):
        def loss(params):
            logits, _ = net.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
            return jnp.mean(cross_entropy(logits, labels)), logits
        return jax.value_and_grad(loss, has_aux=True)(variables["params"])

    ((plain_loss, plain_logits), plain_grads), ((rep_loss, rep_logits), rep_grads) = jax.jit(
        lambda: (loss_and_grads(model, plain_vars), loss_and_grads(replicated, rep_vars)))()  # one compilation
    np.testing.assert_allclose(rep_logits, plain_logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rep_loss, plain_loss, rtol=1e-6)

    plain_layer, rep_layer = _layer(plain_grads, path), _layer(rep_grads, path)
    for copy in ("kernel_1", "kernel_2"):
        np.testing.assert_allclose(rep_layer[copy], plain_layer["kernel"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(rep_layer["kernel_1"] + rep_layer["kernel_2"], 2 * plain_layer["kernel"],
                               rtol=1e-5, atol=1e-7)
    # Every other gradient (bias included: one shared bias) is the plain model's.
    folded_grads = dreg.fold_back(rep_grads, path)  # kernel_1 + kernel_2, the rest untouched
    plain_rest = {k: v for k, v in plain_layer.items() if k != "kernel"}
    assert jax.tree.structure(folded_grads) == jax.tree.structure(plain_grads)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 {k: v for k, v in _layer(folded_grads, path).items() if k != "kernel"}, plain_rest)
    other = lambda tree: [leaf for p, leaf in jax.tree_util.tree_leaves_with_path(tree)  # noqa: E731
                          if dreg.path_keys(path) != tuple(k.key for k in p[:len(dreg.path_keys(path))])]
    for a, b in zip(other(rep_grads), other(plain_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("combine, init", [("sum", "independent"), ("mean", "variance_preserving"),
                                           ("two_heads", "independent"), ("sum", "split")])
def test_two_layer_forward_and_fold_back_export(combine, init):
    """The MLP's replicated classifier is c (h W1 + h W2) + b, computed by hand; the folded params give the
    same outputs in the plain model; the rest of the model is the plain model's init at the same seed."""
    model = _model("mlp")
    replicated = dreg.replicate_model(model, SHAPE, combine=combine, init=init)
    key, x = jax.random.PRNGKey(2), _images()
    plain = model.init(key, x)["params"]
    params = replicated.init(key, x)["params"]
    assert set(params["Dense_1"]) == {"kernel_1", "kernel_2", "bias"}
    jax.tree.map(np.testing.assert_array_equal, params["Dense_0"], plain["Dense_0"])
    w1, w2, b = (params["Dense_1"][k] for k in ("kernel_1", "kernel_2", "bias"))
    c = {"sum": 1.0, "mean": 0.5, "two_heads": 0.5}[combine]
    scale = {"independent": 1.0, "variance_preserving": 1 / (c * np.sqrt(2)), "split": 1 / (2 * c)}[init]
    if init != "split":
        assert abs(float(dreg.cosine(w1, w2))) < 0.5  # independent draws, not clones
    np.testing.assert_allclose(w1, scale * plain["Dense_1"]["kernel"], rtol=1e-6)

    h = jax.nn.relu(x.reshape(8, -1) @ plain["Dense_0"]["kernel"] + plain["Dense_0"]["bias"])
    by_hand = c * (h @ w1 + h @ w2) + b
    np.testing.assert_allclose(replicated.apply({"params": params}, x), by_hand, rtol=1e-5, atol=1e-6)
    folded = dreg.fold_back(params, replicated.path, combine)
    assert jax.tree.map(jnp.shape, folded) == jax.tree.map(jnp.shape, plain)
    np.testing.assert_allclose(model.apply({"params": folded}, x), by_hand, rtol=1e-5, atol=1e-6)


def test_split_then_fold_back_round_trips_exactly():
    model = _model("resnet")
    plain = _random_variables(model, _images(1))["params"]
    for combine in dreg.COMBINES:
        for path in ("conv1", "layer2_0/downsample_conv", "fc"):
            split = dreg.replicate_params(plain, None, path, combine, "split")
            jax.tree.map(np.testing.assert_array_equal, dreg.fold_back(split, path, combine), plain)


# ---------------------------------------------------------------- penalties against numpy

def _np_cos(a, b):
    """cos(a, b) and its gradient w.r.t. a for flat float64 vectors."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = a @ b / (na * nb)
    return cos, b / (na * nb) - cos * a / na**2


def _np_penalty(variant, w1, w2):
    """(value, dp/dW1) by hand in float64."""
    a, b = w1.astype(np.float64), w2.astype(np.float64)
    if variant == "per_unit_squared_cosine":
        a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        units = [_np_cos(a2[:, j], b2[:, j]) for j in range(a2.shape[1])]
        value = np.mean([cos**2 for cos, _ in units])
        grad = np.stack([2 * cos * g for cos, g in units], axis=1) / a2.shape[1]
        return value, grad.reshape(a.shape)
    if variant == "negative_squared_distance":
        return -np.sum((a - b) ** 2), -2 * (a - b)
    cos, g = _np_cos(a.ravel(), b.ravel())
    value, grad = {"squared_cosine": (cos**2, 2 * cos * g), "cosine": (cos, g),
                   "hinge_cosine": (max(cos, 0.0), g * (cos > 0))}[variant]
    return value, grad.reshape(a.shape)


@pytest.mark.filterwarnings("ignore:DReg penalty")
@pytest.mark.parametrize("variant", sorted(dreg.PENALTIES))
@pytest.mark.parametrize("shape", [(6, 4), (3, 3, 2, 4)])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_penalty_value_and_gradient_match_numpy(variant, shape, sign):
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=shape).astype(np.float32)
    w2 = (sign * w1 + rng.normal(size=shape)).astype(np.float32)  # cos clearly > 0 or < 0 (the hinge's sides)
    penalty = dreg.penalty_function(variant)
    value, grads = jax.value_and_grad(penalty, argnums=(0, 1))(jnp.asarray(w1), jnp.asarray(w2))
    expected, expected_grad1 = _np_penalty(variant, w1, w2)
    _, expected_grad2 = _np_penalty(variant, w2, w1)  # every penalty is symmetric in (W1, W2)
    np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grads[0], expected_grad1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads[1], expected_grad2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("variant", ["squared_cosine", "per_unit_squared_cosine", "cosine", "hinge_cosine"])
def test_cosine_penalties_have_zero_gradient_at_identical_copies(variant):
    w = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3, 2, 4)), jnp.float32)
    grads = jax.grad(dreg.penalty_function(variant), argnums=(0, 1))(w, w)
    for g in grads:
        np.testing.assert_allclose(g, 0.0, atol=1e-6)


def test_negative_distance_warns_and_the_default_does_not():
    with pytest.warns(UserWarning, match="does not change the network's function"):
        dreg.dreg_extra_loss("fc", "negative_squared_distance", 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dreg.dreg_extra_loss("fc")


def test_coefficient_schedules_and_the_extra_loss():
    np.testing.assert_allclose(dreg.coefficient_schedule(0.5)(jnp.arange(3)), 0.5)
    np.testing.assert_allclose(dreg.coefficient_schedule(0.5, "linear_warmup", warmup_steps=4)(jnp.arange(6)),
                               [0, 0.125, 0.25, 0.375, 0.5, 0.5])
    decay = dreg.coefficient_schedule(2.0, "cosine_decay", warmup_steps=2, total_steps=6)
    np.testing.assert_allclose(decay(jnp.arange(8)), [0, 1, 2, 2 * 0.5 * (1 + np.cos(np.pi / 4)), 1,
                                                      2 * 0.5 * (1 - np.cos(np.pi / 4)), 0, 0], atol=1e-6)
    for bad in ({"schedule": "step"}, {"schedule": "linear_warmup"}, {"schedule": "cosine_decay", "total_steps": 0}):
        with pytest.raises(ValueError, match="schedule"):
            dreg.coefficient_schedule(1.0, **bad)

    params = {"fc": {"kernel_1": jnp.array([[1.0, 0.0]]), "kernel_2": jnp.array([[1.0, 1.0]]), "bias": jnp.zeros(2)}}
    np.testing.assert_allclose(dreg.dreg_penalty(params, "fc"), 0.5, rtol=1e-6)  # cos = 1 / sqrt 2
    np.testing.assert_allclose(dreg.dreg_extra_loss("fc", coefficient=0.1)(params, {}, None), 0.05, rtol=1e-6)
    scheduled = dreg.dreg_extra_loss("params/fc", coefficient=dreg.coefficient_schedule(
        1.0, "linear_warmup", warmup_steps=4))
    np.testing.assert_allclose(scheduled(params, {"step": jnp.int32(1)}, None), 0.125, rtol=1e-6)
    with pytest.raises(ValueError, match="batch\\['step'\\]"):
        scheduled(params, {}, None)


# ---------------------------------------------------------------- training

@pytest.mark.filterwarnings("ignore:DReg penalty")
def test_distance_penalty_under_sum_leaves_the_function_unchanged():
    """dreg.md fact 1: with -lambda |W1 - W2|^2 under sum, W1 + W2 follows the lambda = 0 trajectory
    (SGD with momentum and L2 decay) while W1 - W2 moves."""
    dataset = blobs_dataset()
    model = dreg.replicate_model(_model("mlp"), dataset.image_shape)
    x, labels = jnp.asarray(dataset.train.images), jnp.asarray(dataset.train.labels)
    tx = optax.chain(optax.add_decayed_weights(1e-3), optax.sgd(0.05, momentum=0.9))
    params0 = model.init(jax.random.PRNGKey(0), x[:1])["params"]

    @jax.jit
    def train(coefficient):
        extra = dreg.dreg_extra_loss(model.path, "negative_squared_distance", coefficient)
        loss = lambda p: jnp.mean(cross_entropy(model.apply({"params": p}, x), labels)) + extra(p, {}, None)  # noqa

        def step(carry, _):
            params, opt_state = carry
            updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        return jax.lax.scan(step, (params0, tx.init(params0)), length=5)[0][0]

    free, pushed = train(0.0), train(1.0)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 dreg.fold_back(free, model.path), dreg.fold_back(pushed, model.path))
    difference = lambda p: p["Dense_1"]["kernel_1"] - p["Dense_1"]["kernel_2"]  # noqa: E731
    assert np.linalg.norm(difference(pushed)) > 1.5 * np.linalg.norm(difference(free))


def test_dreg_training_on_one_device_equals_eight_devices():
    """A few DReg steps (cosine penalty on the classifier): same params on 1 and 8 devices; the copies turn apart."""
    dataset = blobs_dataset()
    model = dreg.replicate_model(_model("mlp"), dataset.image_shape)
    tx = optax.sgd(0.1, momentum=0.9)
    extension = Extension("dreg", loss=dreg.dreg_extra_loss(model.path, "cosine", 1.0))
    init = create_train_state(0, model, tx, dataset.image_shape)
    finals = []
    for num_devices in (1, 8):
        mesh = parallel.make_mesh(num_devices)
        train_step = make_train_step(model, tx, mesh, num_classes=dataset.num_classes, extensions=[extension])
        state = parallel.replicate(init, mesh)
        batches = data.TrainBatches(dataset.train, 24, seed=0, prefetch=0)
        for _ in range(4):
            state, _ = train_step(state, parallel.shard_batch(next(batches), mesh))
        finals.append(parallel.fetch(state.params))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), *finals)
    cos = lambda params: float(dreg.dreg_penalty(params, model.path, dreg.cosine))  # noqa: E731
    assert cos(finals[0]) < cos(jax.device_get(init.params)) - 0.05


# ------------------------------------------------------------------ config.dreg

@pytest.mark.parametrize("field, value, match", [
    ("penalty", "l2", "unknown penalty 'l2'"),
    ("combine", "concat", "unknown combine 'concat'"),
    ("init", "clone", "unknown init 'clone'"),
    ("schedule", "step", "unknown schedule 'step'"),
    ("coefficient", -1.0, "must be >= 0"),
    ("schedule", "linear_warmup", "needs warmup_steps > 0"),
])
def test_config_dreg_bad_values_are_config_errors(field, value, match):
    config = tiny_config(**{"dreg.enabled": True, f"dreg.{field}": value})
    with pytest.raises(ConfigError, match=match) as error:
        train_experiment.validate(config, num_devices=8)
    assert error.value.field.startswith("dreg.")


def test_config_dreg_layer_must_exist_and_lists_the_layers():
    """The DReg extension checks config.dreg.layer on the model (abstract trace, before anything compiles)."""
    info = RunInfo(_model("cnn"), (8, 8, 1), 3, 10)
    config = tiny_config(**{"dreg.enabled": True})
    assert train_experiment.dreg_extension(config.dreg)(info).model.path == "Dense_0"  # "" = the classifier
    config.dreg.layer = "params/Conv_1"
    assert train_experiment.dreg_extension(config.dreg)(info).model.path == "Conv_1"
    config.dreg.layer = "Conv_7"
    with pytest.raises(ConfigError, match=r"'Conv_7' is not .* Conv_0 \(Conv\), .* Dense_0 \(Dense\)"):
        train_experiment.dreg_extension(config.dreg)(info)
    config.dreg.update(layer="Conv_1", combine="two_heads")
    with pytest.raises(ConfigError, match="two_heads"):
        train_experiment.dreg_extension(config.dreg)(info)


def test_config_distance_penalty_under_sum_warns():
    config = tiny_config(**{"dreg.enabled": True, "dreg.penalty": "negative_squared_distance"})
    with pytest.warns(UserWarning, match="NO-OP"):
        train_experiment.validate(config, num_devices=8)
    config.dreg.combine = "two_heads"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_experiment.validate(config, num_devices=8)


# ------------------------------------------------------------------ control B1 (Matched)

@pytest.mark.parametrize("combine", ["sum", "mean"])
def test_matched_single_layer_follows_the_copies_exactly(combine):
    """B1 vs the copies at lambda = 0 from the same function (init "split", r = 1): momentum SGD with coupled L2
    decay gives the same combined kernel, step after step; under "independent" B1's initial std is sqrt(2) c."""
    base, x = _model("mlp"), _images(16)
    labels = jnp.arange(16) % 3
    tx = optax.chain(optax.add_decayed_weights(0.05), optax.sgd(0.2, momentum=0.9))
    exported = []
    for wrapper in (dreg.Matched, dreg.Replicated):
        model = wrapper(base, "Dense_1", combine, "split")
        params = model.init(jax.random.PRNGKey(1), x)["params"]
        opt_state = tx.init(params)
        loss = lambda p: jnp.mean(cross_entropy(model.apply({"params": p}, x), labels))  # noqa: E731
        for _ in range(5):
            updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
            params = optax.apply_updates(params, updates)
        exported.append(model.export(params))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), *exported)
    plain = base.init(jax.random.PRNGKey(1), x)["params"]["Dense_1"]["kernel"]
    matched = dreg.Matched(base, "Dense_1", combine, "independent")
    kernel = matched.export(matched.init(jax.random.PRNGKey(1), x)["params"])["Dense_1"]["kernel"]
    np.testing.assert_allclose(kernel, np.sqrt(2) * dreg.COMBINES[combine] * plain, rtol=1e-6)


# ------------------------------------------------------------------ train_and_evaluate with config.dreg

@pytest.fixture(scope="module")
def dreg_runs(tmp_path_factory):
    """The same DReg run on 1 device in one call, and on 8 devices interrupted after 3 steps and resumed."""
    dataset = blobs_dataset()
    config = tiny_config(**{"dreg.enabled": True, "dreg.coefficient": 1.0, "dreg.penalty": "cosine",
                            "training.batch_size": 24, "log_every_steps": 1})
    root = tmp_path_factory.mktemp("dreg_runs")
    one = train_experiment.train_run(config, str(root / "one"), mesh=parallel.make_mesh(1), dataset=dataset)
    eight_dir = str(root / "eight")
    partial = train_and_evaluate(config, eight_dir, mesh=parallel.make_mesh(8), dataset=dataset, max_steps=3,
                                 extensions=train_experiment.extensions_from_config(config))
    assert partial["step"] == 3 and not partial["finished"]
    eight = train_experiment.train_run(config, eight_dir, mesh=parallel.make_mesh(8), dataset=dataset)
    return dataset, one, eight, eight_dir


def test_dreg_run_on_eight_devices_resumed_equals_one_device(dreg_runs):
    _, one, eight, eight_dir = dreg_runs
    assert eight["finished"] and eight["dreg"]["layer"] == "Dense_1"
    params = [jax.device_get(run["state"].params) for run in (one, eight)]
    assert set(params[1]["Dense_1"]) == {"kernel_1", "kernel_2", "bias"}
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), *params)
    with open(f"{eight_dir}/train.jsonl") as f:
        logged = [json.loads(line) for line in f]
    assert all({"dreg_penalty", "dreg_cosine"} <= set(r) for r in logged)
    assert logged[-1]["dreg_cosine"] < logged[0]["dreg_cosine"] - 0.05  # the cosine penalty turns the copies apart


def test_folded_export_predicts_like_the_replicated_model(dreg_runs):
    dataset, _, eight, eight_dir = dreg_runs
    with open(f"{eight_dir}/{train_experiment.FOLDED_FILE}", "rb") as f:
        variables = flax.serialization.msgpack_restore(f.read())
    assert "kernel" in variables["params"]["Dense_1"] and "kernel_1" not in variables["params"]["Dense_1"]
    plain = models.create_model(tiny_config().model, dataset.num_classes)
    logits = plain.apply(variables, dataset.test.images.astype(np.float32), train=False)
    np.testing.assert_array_equal(np.argmax(logits, -1), eight["predictions"])


def _tiny_study_config():
    config = tiny_config("dreg_study", **{"training.num_epochs": 2.0, "training.num_train_steps": -1})
    config.dreg_study.update(
        methods=("DReg",), overrides={"DReg": {"dreg": {"enabled": True}}},
        candidates={"DReg": {"lam1e-2": {"dreg": {"coefficient": 0.01}}, "lam1": {"dreg": {"coefficient": 1.0}}}},
        batch_sizes=(32,), seeds=(0, 1), sweep_seeds=(0,), train_examples=128, validation_examples=64,
        test_examples=64, target_accuracy=0.3)
    return config


def test_tiny_study_writes_results(tmp_path):
    config = _tiny_study_config()
    dreg_study.run(config, str(tmp_path))
    with open(tmp_path / "results.json") as f:
        results = json.load(f)
    assert results["selection"]["DReg"]["chosen"] in ("lam1e-2", "lam1")
    assert len(results["runs"]) == 2 and (tmp_path / "convergence.png").stat().st_size > 0
    assert results["complete"] and "| DReg | 32 | 2 |" in (tmp_path / "results.md").read_text()
    for run in results["runs"]:
        assert {"method", "batch_size", "seed", "final_accuracy", "accuracy_per_epoch", "steps_to_target",
                "mean_step_seconds"} <= set(run)
        assert len(run["accuracy_per_epoch"]) == 2 and run["accuracy_per_epoch"][-1] == run["final_accuracy"]
        assert run["steps_per_epoch"] == 128 // run["batch_size"]
    assert [(r["method"], r["batch_size"], r["num_runs"]) for r in results["summary"]] == [("DReg", 32, 2)]
    mtime = os.path.getmtime(tmp_path / "runs" / "DReg_bs32_seed0" / "summary.json")
    dreg_study.run(config, str(tmp_path))  # finished runs are skipped
    assert os.path.getmtime(tmp_path / "runs" / "DReg_bs32_seed0" / "summary.json") == mtime


def _plot_results():
    """Two batch sizes; B2 and DReg with the same curves (as in the committed study); at batch 512 one DReg run
    diverges after epoch 2 and one before its first evaluation."""
    def run(method, batch_size, seed, per_epoch, diverged=False):
        return {"method": method, "batch_size": batch_size, "seed": seed, "final_accuracy": per_epoch[-1],
                "accuracy_per_epoch": per_epoch, "steps_per_epoch": 4, "epochs_to_target": None,
                "steps_to_target": None, "mean_step_seconds": 0.1, "diverged": diverged}

    curve = [0.5, 0.65, 0.75]
    runs = [run(m, b, s, curve) for m in ("B2", "DReg") for b in (32, 512) for s in (0, 1, 2)
            if (m, b) != ("DReg", 512) or s == 0]
    runs += [run("DReg", 512, 1, [0.4, 0.3, None], diverged=True),
             run("DReg", 512, 2, [None, None, None], diverged=True)]
    return {"methods": ["B2", "DReg"], "batch_sizes": [32, 512], "seeds": [0, 1, 2], "target_accuracy": 0.7,
            "summary": dreg_study.aggregate(runs, ("B2", "DReg"), (32, 512)), "runs": runs}


def test_convergence_plot_shows_coinciding_methods_the_target_and_diverged_runs(tmp_path):
    fig = dreg_study.plot_convergence(_plot_results(), str(tmp_path / "convergence.png"))
    assert (tmp_path / "convergence.png").stat().st_size > 0
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["B2", "DReg", "target accuracy 0.7", "diverged run: its last evaluated epoch (0 = none)"]
    small, large = fig.axes
    b2, dreg_line = (next(line for line in small.get_lines() if line.get_label() == m) for m in ("B2", "DReg"))
    np.testing.assert_array_equal(b2.get_ydata(), dreg_line.get_ydata())  # the same curve, both visible:
    assert dreg_line.zorder > b2.zorder and b2.get_linewidth() > dreg_line.get_linewidth()  # B2 wider, beneath
    assert b2.get_markersize() > dreg_line.get_markersize() and b2.get_marker() != dreg_line.get_marker()
    assert b2.get_linestyle() != dreg_line.get_linestyle()
    assert small.get_title() == "batch 32\nB2 \u2248 DReg (within 0.005)"
    target = next(line for line in small.get_lines() if list(line.get_ydata()) == [0.7, 0.7])
    assert list(target.get_xdata()) == [0, 1]  # across the panel
    assert large.get_title().splitlines()[:2] == ["batch 512", "diverged: DReg 2/3"]
    flags = [line for line in large.get_lines() if line.get_marker() == "X"]
    assert [(list(f.get_xdata()), list(f.get_ydata())) for f in flags] == [([2], [0.3]), ([0], [0.03])]
    assert flags[1].get_transform() != large.transData  # no evaluation: at epoch 0, the panel's foot
    assert [t.get_text() for t in large.texts] == ["DReg diverged", "DReg diverged"]
    assert not [line for line in small.get_lines() if line.get_marker() == "X"]


def test_mean_curve_ends_where_a_seed_stopped_evaluating():
    """A diverged seed ends the mean curve: no later epoch averages only the survivors."""
    summary = {(r["method"], r["batch_size"]): r["accuracy_per_epoch_mean"] for r in _plot_results()["summary"]}
    assert summary[("B2", 512)] == pytest.approx([0.5, 0.65, 0.75])
    assert summary[("DReg", 512)] == []  # seed 2 never evaluated
    assert dreg_study._mean_curve([[0.5, 0.6, 0.7], [0.4, 0.3, None]]) == pytest.approx([0.45, 0.45])
    assert dreg_study._mean_curve([[0.5, 0.6], [0.4]]) == pytest.approx([0.45])


def _without_timing(results: dict) -> dict:
    """results.json without what measures time (step times and the overhead ratios derived from them)."""
    timing = ("mean_step_seconds", "step_time_vs_first_method")
    return {**results, "runs": [{k: v for k, v in r.items() if k not in timing} for r in results["runs"]],
            "summary": [{k: v for k, v in r.items() if k not in timing} for r in results["summary"]]}


def test_study_stopped_by_sigterm_resumes_to_the_same_results(tmp_path, monkeypatch):
    """SIGTERM in the middle of the second run (at its 3rd of 8 steps; a run moves 8 train and 2 eval batches):
    the study checkpoints and stops; the rerun finishes it with the same results as a study never stopped."""
    config = _tiny_study_config()
    dreg_study.run(config, str(tmp_path / "full"))
    sigterm_at_batch(monkeypatch, 13)
    assert dreg_study.run(config, str(tmp_path / "stopped")) == {"finished": False, "preempted": True}
    assert len(os.listdir(tmp_path / "stopped" / "records")) == 1
    assert not (tmp_path / "stopped" / "results.json").exists()
    monkeypatch.undo()
    dreg_study.run(config, str(tmp_path / "stopped"))
    results = [json.loads((tmp_path / name / "results.json").read_text()) for name in ("full", "stopped")]
    assert results[0]["complete"] and _without_timing(results[0]) == _without_timing(results[1])


def test_study_config_declares_every_control():
    path = pathlib.Path(__file__).resolve().parents[1] / "configs" / "dreg" / "fashion_mnist_study.py"
    config = config_module(path).get_config()
    config.data.source = "digits"  # the real data's folder may be absent
    dreg_study.validate(config, num_devices=8)
    assert tuple(config.dreg_study.methods) == ("B0", "B1", "B2", "DReg", "B3", "B4")
    config.dreg_study.overrides.B1 = {"dreg": {"enabled": True, "matched": True}}
    with pytest.raises(ConfigError, match="'dreg.matched' is not a config field"):
        dreg_study.validate(config, num_devices=8)


def _comparison_runs():
    """B0 at batches 32 and 512 (gap 5-7 points), B1 = B0 + 1 point at 512, DReg = B1 + 2-3 points; 4 seeds."""
    small, large = [0.80, 0.82, 0.81, 0.83], [0.75, 0.76, 0.74, 0.77]
    extra = [0.02, 0.03, 0.02, 0.03]

    def run(method, batch_size, seed, accuracy):
        return {"method": method, "batch_size": batch_size, "seed": seed, "final_accuracy": accuracy}

    return ([run("B0", 32, s, a) for s, a in enumerate(small)] + [run("B0", 512, s, a) for s, a in enumerate(large)]
            + [run("B1", 512, s, a + 0.01) for s, a in enumerate(large)]
            + [run("DReg", 512, s, a + 0.01 + e) for s, (a, e) in enumerate(zip(large, extra))])


def test_paired_difference_is_a_t_interval_over_seeds():
    from scipy import stats
    runs = _comparison_runs()
    difference = dreg_study.paired_difference(runs, "DReg", "B1", 512)
    assert difference["seeds"] == [0, 1, 2, 3]
    half = stats.t.ppf(0.975, 3) * np.std([0.02, 0.03, 0.02, 0.03], ddof=1) / 2
    assert difference["mean"] == pytest.approx(0.025)
    assert (difference["lower"], difference["upper"]) == pytest.approx((0.025 - half, 0.025 + half))
    gap = dreg_study.paired_difference(runs, "B0", "B0", 32, 512)
    assert gap["mean"] == pytest.approx(0.06) and gap["versus_batch_size"] == 512
    runs[-1]["final_accuracy"] = None  # a diverged DReg run drops its seed from the pairs
    assert dreg_study.paired_difference(runs, "DReg", "B1", 512)["seeds"] == [0, 1, 2]
    single = dreg_study.paired_difference(runs[:1] + runs[4:5], "B0", "B0", 32, 512)
    assert single["seeds"] == [0] and single["lower"] is None  # one pair: no interval


def test_compare_reports_the_gap_the_share_closed_and_a_verdict_against_the_controls(tmp_path):
    runs = _comparison_runs()
    [row] = dreg_study.compare(runs, ("B0", "B1", "DReg"), (32, 512), subject="DReg", controls=("B1",))
    assert row["gap"]["mean"] == pytest.approx(0.06)
    assert row["baseline_ratio"] == pytest.approx(np.mean([0.75, 0.76, 0.74, 0.77]) / np.mean([0.80, 0.82, 0.81, 0.83]))
    shares = {d["method"]: d["share_of_gap"] for d in row["versus_reference"]}
    assert shares == pytest.approx({"B1": 0.01 / 0.06, "DReg": 0.035 / 0.06})
    assert [d["versus"] for d in row["subject"]] == ["B0", "B1"]
    assert "DReg closes part of the gap beyond B1" in row["verdict"]
    for r in runs:  # DReg no better than B1 on two seeds: the interval includes 0
        if r["method"] == "DReg" and r["seed"] in (0, 2):
            r["final_accuracy"] -= 0.03
    [row] = dreg_study.compare(runs, ("B0", "B1", "DReg"), (32, 512), subject="DReg", controls=("B1",))
    assert "no evidence that DReg closes any of the gap beyond B1" in row["verdict"]
    [uncontrolled] = dreg_study.compare(runs, ("B0", "B1", "DReg"), (32, 512), subject="DReg")
    assert uncontrolled["verdict"].endswith(dreg_study._points(uncontrolled["subject"][1]))  # no controls: no verdict
    results = {"dataset": "toy", "methods": ["B0", "B1", "DReg"], "seeds": [0, 1, 2, 3], "comparisons": [row]}
    fig = dreg_study.plot_differences(results, str(tmp_path / "differences.png"))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["DReg (n=4)", "B1 (n=4)"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["B0 at this batch", "B0 at batch 32",
                                                                 "its 95% interval"]
    assert ax.get_title().startswith("batch 512: gap +6.00")
    assert (tmp_path / "differences.png").stat().st_size > 0


def test_study_runs_methods_at_their_batch_sizes_and_controls_follow_the_tuned_layer(tmp_path):
    """B3 only at the large batch; B2 replicates the layer DReg was tuned to (here the hidden layer, the only
    candidate's); results.md has the paired comparison and its verdict."""
    config = tiny_config("dreg_study", **{"training.num_epochs": 1.0, "training.num_train_steps": -1})
    config.dreg_study.update(
        methods=("B0", "B2", "DReg", "B3"), subject="DReg",
        overrides={"B0": {}, "B2": {"dreg": {"enabled": True, "coefficient": 0.0}},
                   "DReg": {"dreg": {"enabled": True}}, "B3": {}},
        candidates={"DReg": {"hidden": {"dreg": {"layer": "Dense_0"}}}},
        method_batch_sizes={"B3": (64,)}, layer_follows={"B2": "DReg"},
        batch_sizes=(32, 64), seeds=(0, 1), train_examples=128, validation_examples=64, test_examples=64)
    dreg_study.run(config, str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    cells = {(r["method"], r["batch_size"]) for r in results["runs"]}
    assert ("B3", 32) not in cells and ("B3", 64) in cells and len(results["runs"]) == 14
    assert results["followed_layers"] == {"B2": {"follows": "DReg", "layer": "Dense_0"}}
    with open(tmp_path / "runs" / "B2_bs32_seed0" / "config.json") as f:
        assert json.load(f)["dreg"]["layer"] == "Dense_0"
    [row] = results["comparisons"]
    assert row["batch_size"] == 64 and [d["versus"] for d in row["subject"]] == ["B0", "B2", "B3"]
    table = (tmp_path / "results.md").read_text()
    assert "Verdict: batch 64: gap" in table and "B2 replicates the layer chosen for DReg: 'Dense_0'" in table
    assert (tmp_path / "differences.png").stat().st_size > 0


@pytest.mark.parametrize("field, value, message", [
    ("method_batch_sizes", {"B3": (4096,)}, "must be a non-empty subset"),
    ("method_batch_sizes", {"B0": (32,)}, "the first method 'B0' is the reference"),
    ("layer_follows", {"B2": "B0"}, "maps a method of"),
    ("subject", "DReg2", "'DReg2' is not one of"),
])
def test_study_config_errors_for_batch_sizes_controls_and_subject(field, value, message):
    config = tiny_config("dreg_study", **{"training.num_epochs": 1.0, "training.num_train_steps": -1})
    config.dreg_study.update(methods=("B0", "B2", "DReg", "B3"), batch_sizes=(32, 64),
                             overrides={"B0": {}, "B2": {}, "DReg": {}, "B3": {}})
    config.dreg_study[field] = value
    with pytest.raises(ConfigError, match=message):
        dreg_study.validate(config, num_devices=8)
