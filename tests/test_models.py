"""Models: shapes and dtypes, torchvision parameter counts, polynomial features, GLM, BatchNorm sync."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util
from jax.sharding import NamedSharding, PartitionSpec as P
from sklearn.preprocessing import PolynomialFeatures

from jaxlab import models


def model_config(name, **overrides):
    config = ml_collections.ConfigDict(dict(name=name, dtype="float32", bn_sync=False, bn_group_size=0, hidden_sizes=(100, 100),
                                            width=32, polynomial_degree=1))
    config.update(overrides)
    return config


# Small inputs and widths per model so every test runs in seconds on CPU.
SMALL = {
    "glm": ((8, 8, 1), dict(polynomial_degree=2)),
    "mlp": ((8, 8, 1), dict(hidden_sizes=(16, 8))),
    "cnn": ((8, 8, 1), dict(width=4)),
    "lenet": ((28, 28, 1), dict(width=6)),
}
SMALL_DEFAULT = ((32, 32, 3), dict(width=4))


def abstract_variables(model, shape):
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape)), train=False))


def num_params(model, shape):
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(abstract_variables(model, shape)["params"]))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_init_and_apply_shapes_and_dtypes(name, dtype):
    """Traced with jax.eval_shape (no compute), so every model and dtype stays cheap on CPU."""
    shape, overrides = SMALL.get(name, SMALL_DEFAULT)
    model = models.create_model(model_config(name, dtype=dtype, **overrides), num_classes=5)
    x = jax.ShapeDtypeStruct((4, *shape), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))

    def train_and_eval(variables, x):
        train = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return train, model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])

    (logits, mutated), (eval_logits, intermediates) = jax.eval_shape(train_and_eval, variables, x)
    # Same shapes and dtypes as the initial batch_stats; {} for models without BatchNorm.
    spec = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)
    assert spec(dict(mutated)) == spec({k: v for k, v in variables.items() if k != "params"})
    chex.assert_shape([logits, eval_logits], (4, 5))
    chex.assert_type([logits, eval_logits], jnp.float32)
    # Every layer computes in the compute dtype; only the returned logits are float32.
    layers = {k: v for k, v in intermediates["intermediates"].items() if k != "__call__"}
    assert layers and all(leaf.dtype == jnp.dtype(dtype) for leaf in jax.tree.leaves(layers))


def test_mlp_forward():
    model = models.create_model(model_config("mlp", hidden_sizes=(7, 6)), 3)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 2, 5))
    params = model.init(jax.random.PRNGKey(1), x)["params"]
    h = np.asarray(x).reshape(4, 10)
    for layer in ("Dense_0", "Dense_1"):
        h = np.maximum(h @ params[layer]["kernel"] + params[layer]["bias"], 0)
    expected = h @ params["Dense_2"]["kernel"] + params["Dense_2"]["bias"]
    np.testing.assert_allclose(model.apply({"params": params}, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, num_classes, shape, expected", [
    ("resnet18_imagenet", 1000, (224, 224, 3), 11_689_512),  # torchvision.models.resnet18
    ("resnet50_imagenet", 1000, (224, 224, 3), 25_557_032),  # torchvision.models.resnet50
    ("resnet18_cifar", 10, (32, 32, 3), 11_173_962),
    ("resnet34_cifar", 10, (32, 32, 3), 21_282_122),
])
def test_resnet_parameter_counts_match_torchvision(name, num_classes, shape, expected):
    assert num_params(models.create_model(model_config(name, width=64), num_classes), shape) == expected
    # width=0 (the base config's default) means the model's standard width.
    assert num_params(models.create_model(model_config(name, width=0), num_classes), shape) == expected


def test_mlp_and_glm_parameter_counts():
    mlp = models.create_model(model_config("mlp", hidden_sizes=(100,)), 2)  # K-priors USPS 256-100-2
    assert num_params(mlp, (256,)) == 256 * 100 + 100 + 100 * 2 + 2
    glm = models.create_model(model_config("glm"), 2)  # K-priors Adult: bias + 123 features, 2 outputs
    assert num_params(glm, (123,)) == (1 + 123) * 2


def output_shapes(model, shape):
    """{"layer2_0/conv1": (1, H, W, C), ...}: every submodule's output shape for one input, traced abstractly."""
    variables = abstract_variables(model, shape)
    _, state = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, *shape)), capture_intermediates=True,
                                                    mutable=["intermediates"]), variables)
    flat = traverse_util.flatten_dict(state["intermediates"], sep="/")
    return {path.removesuffix("/__call__"): out[0].shape for path, out in flat.items()}


def test_resnet_feature_map_sizes():
    """ImageNet stem: 224 -> 112 (conv) -> 56 (pool) -> ... -> 7; bottlenecks stride on the 3x3 conv (v1.5)."""
    shapes = output_shapes(models.create_model(model_config("resnet50_imagenet", width=4), 10), (224, 224, 3))
    assert shapes["bn1"] == (1, 112, 112, 4) and shapes["layer1_0"] == (1, 56, 56, 16)
    assert shapes["layer2_0/conv1"] == (1, 56, 56, 8) and shapes["layer2_0/conv2"] == (1, 28, 28, 8)
    assert shapes["layer2_0/downsample_conv"] == (1, 28, 28, 32) and "layer2_1/downsample_conv" not in shapes
    assert shapes["layer4_2"] == (1, 7, 7, 128)

    shapes = output_shapes(models.create_model(model_config("resnet18_cifar", width=4), 10), (32, 32, 3))
    assert shapes["layer1_0"] == (1, 32, 32, 4) and "layer1_0/downsample_conv" not in shapes
    assert shapes["layer4_1"] == (1, 4, 4, 32)


def test_conv_init_is_he_normal_fan_out():
    kernel = models.layers.conv_kernel_init(jax.random.PRNGKey(0), (3, 3, 32, 64))
    np.testing.assert_allclose(np.mean(kernel), 0.0, atol=2e-3)
    np.testing.assert_allclose(np.std(kernel), np.sqrt(2.0 / (3 * 3 * 64)), rtol=0.03)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_polynomial_features_match_sklearn(degree):
    x = np.random.default_rng(0).normal(size=(5, 3, 2)).astype(np.float32)
    expected = PolynomialFeatures(degree, include_bias=True).fit_transform(x.reshape(5, -1))
    got = jax.jit(models.polynomial_features, static_argnums=1)(x, degree)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_glm_zero_init_gives_uniform_softmax():
    model = models.create_model(model_config("glm", polynomial_degree=2), 3)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 6))
    probs = jax.nn.softmax(model.apply(model.init(jax.random.PRNGKey(1), x), x))
    np.testing.assert_allclose(probs, np.full((4, 3), 1 / 3), rtol=1e-6)


def test_glm_is_linear_in_polynomial_features():
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    features = PolynomialFeatures(2).fit_transform(x)
    weights = np.random.default_rng(1).normal(size=(features.shape[1], 3)).astype(np.float32)
    model = models.create_model(model_config("glm", polynomial_degree=2), 3)
    logits = model.apply({"params": {"Dense_0": {"kernel": weights}}}, x)
    np.testing.assert_allclose(logits, features @ weights, rtol=1e-4, atol=1e-4)


def test_unknown_model_name():
    with pytest.raises(ValueError, match=r"config\.model\.name.*resnet50_imagenet"):
        models.create_model(model_config("resnet9000"), 10)


def _train_apply(model, variables, x):
    return model.apply(variables, x, train=True, mutable=["batch_stats"])


def _sharded(per_device, out_specs):
    """jit(shard_map) over an 8-device ("data",) mesh: variables replicated, batch split."""
    mesh = jax.make_mesh((8,), ("data",))
    fn = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("data")), out_specs=out_specs))
    return lambda variables, x: fn(jax.device_put(variables, NamedSharding(mesh, P())),
                                   jax.device_put(x, NamedSharding(mesh, P("data"))))


def _sharded_train_apply(model, variables, x):
    """Training-mode apply on each device's shard; running stats averaged over devices."""

    def per_device(variables, x):
        logits, mutated = _train_apply(model, variables, x)
        return logits, jax.lax.pmean(mutated["batch_stats"], "data")

    return _sharded(per_device, (P("data"), P()))(variables, x)


def test_batch_norm_statistics_per_device_or_synced():
    local = models.create_model(model_config("cnn", width=4), 5)
    synced = models.create_model(model_config("cnn", width=4, bn_sync=True), 5)
    # Each device's chunk gets its own mean, so per-device statistics differ from global ones.
    x = jax.random.normal(jax.random.PRNGKey(0), (32, 8, 8, 1)) + jnp.linspace(-2, 2, 32).reshape(32, 1, 1, 1)
    variables = local.init(jax.random.PRNGKey(1), x[:1])
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

    global_logits, global_stats = _train_apply(local, variables, x)
    logits, stats = _sharded_train_apply(synced, variables, x)
    close(logits, global_logits)
    chex.assert_trees_all_close(stats, global_stats["batch_stats"], rtol=1e-4, atol=1e-5)

    logits, stats = _sharded_train_apply(local, variables, x)
    assert not np.allclose(logits, global_logits, rtol=1e-3, atol=1e-3)
    chunks = [_train_apply(local, variables, chunk) for chunk in jnp.split(x, 8)]
    close(logits, jnp.concatenate([c[0] for c in chunks]))
    chunk_mean = jax.tree.map(lambda *cs: np.mean(cs, axis=0), *[c[1]["batch_stats"] for c in chunks])
    chex.assert_trees_all_close(stats, chunk_mean, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(models.MODELS))
@pytest.mark.parametrize("bn_sync", [False, True])
def test_bn_sync_reduces_across_devices_only_when_set(name, bn_sync):
    """Traced only: the per-device training step has cross-device sums iff the model has synced BatchNorm."""
    shape, overrides = SMALL.get(name, SMALL_DEFAULT)
    model = models.create_model(model_config(name, bn_sync=bn_sync, **overrides), 5)
    mesh = jax.make_mesh((8,), ("data",))
    x = jax.ShapeDtypeStruct((16, *shape), jnp.float32, sharding=NamedSharding(mesh, P("data")))
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    fn = jax.shard_map(lambda v, x: _train_apply(model, v, x)[0], mesh=mesh, in_specs=(P(), P("data")),
                       out_specs=P("data"))
    has_bn = "batch_stats" in variables
    assert ("psum" in str(jax.make_jaxpr(fn)(variables, x))) == (bn_sync and has_bn)


def test_lenet_logits_and_no_batch_stats():
    model = models.create_model(model_config("lenet", width=0), 10)  # width 0 = LeNet-5's 6
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 28, 28, 1))
    variables = model.init(jax.random.PRNGKey(1), x)
    assert set(variables) == {"params"}
    logits = model.apply(variables, x)
    chex.assert_shape(logits, (2, 10))
    chex.assert_type(logits, jnp.float32)
    # (B, H, W) inputs get a channel axis.
    np.testing.assert_allclose(model.apply(variables, x[..., 0]), logits, rtol=1e-6, atol=1e-6)


def test_lenet_parameter_count():
    model = models.create_model(model_config("lenet", width=6), 10)
    expected = ((5 * 5 * 1 * 6 + 6) + (5 * 5 * 6 * 16 + 16)  # conv1, conv2
                + (16 * 5 * 5 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10))  # dense 120, 84, 10
    assert expected == 61_706
    assert num_params(model, (28, 28, 1)) == expected


def test_lenet_output_is_per_example_and_mode_free():
    """No BatchNorm: f_w(x_i) depends on the params and x_i alone, not on the batch or on `train`."""
    model = models.create_model(model_config("lenet", width=6), 10)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 28, 28, 1))
    variables = model.init(jax.random.PRNGKey(1), x)
    logits = model.apply(variables, x)
    alone = jnp.concatenate([model.apply(variables, x[i:i + 1]) for i in range(4)])
    np.testing.assert_allclose(logits, alone, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.apply(variables, x, train=True), logits, rtol=1e-5, atol=1e-5)


def test_ghost_bn_normalises_each_group_with_its_own_statistics():
    """Groups of 2 of a batch of 6: each group's mean and biased variance over its examples and positions (numpy,
    float64); the running statistics move 0.1 of the way to the mean over groups; evaluation uses them."""
    x = np.random.default_rng(0).normal(2.0, 3.0, (6, 3, 3, 4)).astype(np.float32)
    layer = models.layers.GhostBatchNorm(group_size=2)
    variables = layer.init(jax.random.key(0), x)
    y, mutated = layer.apply(variables, x, mutable=["batch_stats"])
    groups = x.astype(np.float64).reshape(3, 2, 3, 3, 4)
    mean = groups.mean(axis=(1, 2, 3), keepdims=True)
    var = groups.var(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, ((groups - mean) / np.sqrt(var + 1e-5)).reshape(x.shape), atol=2e-5)
    stats = mutated["batch_stats"]
    np.testing.assert_allclose(stats["mean"], 0.1 * mean.mean(axis=(0, 1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * var.mean(axis=(0, 1, 2, 3)), rtol=1e-5)
    evaluated = models.layers.GhostBatchNorm(group_size=2, use_running_average=True).apply(
        {**variables, "batch_stats": stats}, x)
    np.testing.assert_allclose(evaluated, (x - stats["mean"]) / np.sqrt(stats["var"] + 1e-5), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="not a multiple of model.bn_group_size=4"):
        models.layers.GhostBatchNorm(group_size=4).apply(variables, x, mutable=["batch_stats"])


def test_ghost_bn_with_one_group_is_flax_batchnorm():
    """group_size = the whole local batch: the same outputs, gradients and running statistics as nn.BatchNorm."""
    x = jnp.asarray(np.random.default_rng(1).normal(size=(8, 4, 4, 3)), jnp.float32)
    ghost, plain = models.layers.batch_norm(True, jnp.float32, False, 8)(), models.layers.batch_norm(True, jnp.float32,
                                                                                                        False)()
    variables = plain.init(jax.random.key(0), x)
    chex.assert_trees_all_equal_shapes(variables, ghost.init(jax.random.key(0), x))

    def loss(module, params):
        y, mutated = module.apply({**variables, "params": params}, x, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(y)), mutated["batch_stats"]

    (value, stats), grads = jax.value_and_grad(lambda p: loss(ghost, p), has_aux=True)(variables["params"])
    (value_ref, stats_ref), grads_ref = jax.value_and_grad(lambda p: loss(plain, p), has_aux=True)(variables["params"])
    np.testing.assert_allclose(value, value_ref, rtol=1e-5)
    chex.assert_trees_all_close(grads, grads_ref, rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close(stats, stats_ref, rtol=1e-5, atol=1e-7)

