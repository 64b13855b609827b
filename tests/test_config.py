"""Config validation fails fast, names the field, and happens before any data or compile."""

import os

import pytest

from jaxlab import config as config_lib
from jaxlab.data import DataError
from jaxlab.train import train_and_evaluate
from tests.helpers import tiny_config


@pytest.mark.parametrize("overrides, field", [
    ({"optimizer.learning_rate": -0.1}, "optimizer.learning_rate"),
    ({"training.batch_size": 100}, "training.batch_size"),        # not divisible by 8 devices
    ({"model.name": "resnet9000"}, "model.name"),
    ({"optimizer.name": "adamax"}, "optimizer.name"),
    ({"schedule.name": "linear"}, "schedule.name"),
    ({"experiment": "nope"}, "experiment"),
    ({"eval_batch_size": 12}, "eval_batch_size"),
    ({"training.label_smoothing": 1.5}, "training.label_smoothing"),
    ({"model.dtype": "float16"}, "model.dtype"),
])
def test_bad_values_name_the_field(tmp_path, overrides, field):
    workdir = str(tmp_path / "run")
    with pytest.raises(config_lib.ConfigError) as info:
        train_and_evaluate(tiny_config(**overrides), workdir)
    assert info.value.field == field
    assert f"config.{field}" in str(info.value)
    assert not os.path.exists(workdir), "validation must happen before anything is written"


def test_batch_error_suggests_a_valid_size():
    with pytest.raises(config_lib.ConfigError, match="multiple of 8, e.g. 104"):
        config_lib.validate(tiny_config(**{"training.batch_size": 100}), num_devices=8)


@pytest.mark.parametrize("overrides, field", [
    ({"data.source": "imagenet_from_a_dream"}, "data.source"),
    ({"data.source": "mnist", "data.dir": "/nonexistent/mnist"}, "data.dir"),
    ({"data.source": "npz", "data.path": "/nonexistent/x.npz"}, "data.path"),
])
def test_bad_data_config_names_the_field(tmp_path, overrides, field):
    with pytest.raises(DataError, match=field.replace(".", r"\.")):
        train_and_evaluate(tiny_config(**overrides), str(tmp_path / "run"))


def test_locked_config_rejects_typos():
    config = tiny_config()
    config.lock()
    with pytest.raises(AttributeError):
        config.training.batch_sise = 32


def test_base_config_is_valid():
    config_lib.validate(config_lib.base_config(), num_devices=8)
