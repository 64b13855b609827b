"""Every config in configs/ loads, validates, and builds its augmentation pipeline."""

import pathlib

import pytest

from jaxlab import experiments
from jaxlab.augment import build_eval_transform, build_pipeline

CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[1] / "configs").rglob("*.py"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_is_valid(path):
    module = experiments.config_module(path)
    assert module.__doc__ and "python -m jaxlab.main" in module.__doc__, "docstring must give the command"
    config = module.get_config()
    if config.data.source != "digits":  # real-data configs point at folders users may not have
        config.data.source = "digits"
    if config.experiment == "augmentation_sweep":
        config.classwise.real_json = ""  # a path on the user's machine
    experiments.validate(config, num_devices=8)  # the experiment's validator, the trainer's fields included
    if config.augment.pipeline:
        build_pipeline(config.augment.pipeline, 10, tables=config.augment.tables.to_dict())
    build_eval_transform(config.augment.eval_pipeline, 10)


def test_cifar100_superclasses_have_five_classes_each():
    path = next(p for p in CONFIGS if p.stem == "cifar100")
    module = experiments.config_module(path)
    groups = module.CIFAR100_SUPERCLASS
    assert len(groups) == 100 and sorted(groups) == sorted(list(range(20)) * 5)
    # apple -> fruit and vegetables (4), maple / oak / palm / pine / willow -> trees (17)
    assert groups[0] == 4 and {groups[k] for k in (47, 52, 56, 59, 96)} == {17}


def _load(stem):
    path = next(p for p in CONFIGS if p.stem == stem and p.parent.name == "dreg")
    module = experiments.config_module(path)
    return module


@pytest.mark.parametrize("stem,arg,batch,optimizer,dreg", [
    ("cifar10_resnet18", "128", 128, "nesterov", False),
    ("cifar10_resnet18", "8192,dreg", 8192, "nesterov", True),
    ("cifar10_resnet18", "4096,lars", 4096, "lars", False),
    ("imagenet_resnet50", "dreg", 8192, "momentum", True),
    ("imagenet_resnet50", "b256", 256, "momentum", False),
])
def test_dreg_accelerator_configs_take_their_arguments(stem, arg, batch, optimizer, dreg):
    config = _load(stem).get_config(arg)
    assert (config.training.batch_size, config.optimizer.name, config.dreg.enabled) == (batch, optimizer, dreg)
    config.data.source = "digits"
    experiments.validate(config, num_devices=8)


def test_dreg_config_arguments_are_checked():
    with pytest.raises(ValueError, match="batch size"):
        _load("cifar10_resnet18").get_config("100,dreg")
    with pytest.raises(ValueError, match="options"):
        _load("imagenet_resnet50").get_config("dreeg")


def test_config_module_loads_a_config_file_that_builds_on_another():
    """split_mnist.py reuses mnist_add_data.py through config_module: the same data, network and optimiser."""
    root = pathlib.Path(__file__).resolve().parents[1] / "configs" / "kprior"
    add_data = experiments.config_module(root / "mnist_add_data.py")
    split = experiments.config_module(root / "split_mnist.py").get_config()
    assert add_data.__name__ == "mnist_add_data" and "python -m jaxlab.main" in add_data.__doc__
    assert split.model.name == add_data.get_config().model.name == "lenet"
    assert split.kprior.tasks == ("continual", "continual_multihead")
