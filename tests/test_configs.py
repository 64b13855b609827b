"""Every config in configs/ loads, validates, and builds its augmentation pipeline."""

import importlib.util
import pathlib

import pytest

from jaxlab import experiments
from jaxlab.augment import build_eval_transform, build_pipeline

CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[1] / "configs").rglob("*.py"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_is_valid(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    groups = module.CIFAR100_SUPERCLASS
    assert len(groups) == 100 and sorted(groups) == sorted(list(range(20)) * 5)
    # apple -> fruit and vegetables (4), maple / oak / palm / pine / willow -> trees (17)
    assert groups[0] == 4 and {groups[k] for k in (47, 52, 56, 59, 96)} == {17}


def _load(stem):
    path = next(p for p in CONFIGS if p.stem == stem and p.parent.name == "dreg")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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
