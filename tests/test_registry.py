"""Registries: one name, one entry; unknown names raise a ConfigError naming the field."""

import pytest

from jaxlab import data, experiments, kprior, models
from jaxlab.augment import OPS
from jaxlab.errors import ConfigError
from jaxlab.registry import Registry


def test_register_and_lookup():
    ops = Registry("op", "augment.ops")
    ops.register("flip")(len)
    assert ops.lookup("flip") is len and "flip" in ops
    with pytest.warns(RuntimeWarning, match="'flip' was already registered; the new entry replaces it"):
        ops.register("flip")(sum)  # a notebook cell run again with a changed definition
    assert ops.lookup("flip") is sum
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


def test_sources_models_ops_and_losses_share_the_registry_class():
    """One registry style: every name -> object table is a Registry whose misses name their config field."""
    for registry, field in ((data.SOURCES, "data.source"), (models.MODELS, "model.name"),
                            (OPS, "augment.pipeline"), (kprior.LOSSES, "kprior.loss"),
                            (experiments.EXPERIMENTS, "experiment")):
        assert isinstance(registry, Registry)
        with pytest.raises(ConfigError) as error:
            registry.lookup("no_such_entry")
        assert error.value.field == field
    assert kprior.LOSSES.lookup("softmax") is kprior.SOFTMAX and set(kprior.LOSSES) == {"softmax", "sigmoid", "squared"}
