"""Registries: one name, one entry; unknown names raise a ConfigError naming the field."""

import pytest

from jaxlab import experiments, models
from jaxlab.errors import ConfigError
from jaxlab.registry import Registry


def test_register_and_lookup():
    ops = Registry("op", "augment.ops")
    ops.register("flip")(len)
    assert ops.lookup("flip") is len and "flip" in ops
    with pytest.raises(ValueError, match="already registered"):
        ops.register("flip")(len)
    with pytest.raises(ConfigError, match=r"config\.augment\.ops: unknown op 'crop'; choose one of \['flip'\]"):
        ops.lookup("crop")


def test_register_takes_an_object_too():
    losses = Registry("loss", "kprior.loss")
    assert losses.register("l2", sum) is sum and losses.lookup("l2") is sum


def test_a_package_registry_finds_modules_by_name():
    """Experiments are found as modules of jaxlab.experiments (no registration); helpers are not experiments."""
    names = experiments.EXPERIMENTS.names()
    assert names == ["augmentation_sweep", "dreg_study", "kprior_adaptation", "kprior_deep", "train"]
    assert experiments.EXPERIMENTS.lookup("dreg_study").__name__ == "jaxlab.experiments.dreg_study"
    with pytest.raises(ConfigError, match="unknown experiment 'grid'"):
        experiments.EXPERIMENTS.lookup("grid")


def test_project_registries_are_filled():
    assert "train" in experiments.EXPERIMENTS.names()
    assert {"glm", "mlp", "cnn", "resnet18_cifar", "resnet34_cifar", "resnet18_imagenet",
            "resnet50_imagenet"} <= set(models.MODELS)
