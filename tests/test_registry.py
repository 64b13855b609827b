"""Registries: one name, one entry; unknown names raise a ConfigError naming the field."""

import pytest

from jaxlab import experiments, models
from jaxlab.config import ConfigError
from jaxlab.registry import Registry


def test_register_and_lookup():
    ops = Registry("op", "augment.ops")
    ops.register("flip")(len)
    assert ops.lookup("flip") is len and "flip" in ops
    with pytest.raises(ValueError, match="already registered"):
        ops.register("flip")(len)
    with pytest.raises(ConfigError, match=r"config\.augment\.ops: unknown op 'crop'; choose one of \['flip'\]"):
        ops.lookup("crop")


def test_project_registries_are_filled():
    assert "train" in experiments.EXPERIMENTS
    assert {"glm", "mlp", "cnn", "resnet18_cifar", "resnet34_cifar", "resnet18_imagenet",
            "resnet50_imagenet"} <= set(models.MODELS)
