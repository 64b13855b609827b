"""Every config in configs/ loads, validates, and builds its augmentation pipeline."""

import importlib.util
import pathlib

import pytest

from jaxlab import config as config_lib
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
    config_lib.validate(config, num_devices=8)
    if config.augment.pipeline:
        build_pipeline(config.augment.pipeline, 10, tables=config.augment.tables.to_dict())
    build_eval_transform(config.augment.eval_pipeline, 10)
