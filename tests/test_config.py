"""Config validation fails fast, names the field, and happens before any data or compile."""

import os

import pytest

from jaxlab import config as config_lib
from jaxlab import experiments
from jaxlab.errors import ConfigError, DataError
from jaxlab.train import train_and_evaluate
from tests.helpers import tiny_config


@pytest.mark.parametrize("overrides, field", [
    ({"optimizer.learning_rate": -0.1}, "optimizer.learning_rate"),
    ({"training.batch_size": 100}, "training.batch_size"),        # not divisible by 8 devices
    ({"model.name": "resnet9000"}, "model.name"),
    ({"optimizer.name": "adamax"}, "optimizer.name"),
    ({"schedule.name": "linear"}, "schedule.name"),
    ({"eval_every_steps": -2}, "eval_every_steps"),
    ({"eval_batch_size": 12}, "eval_batch_size"),
    ({"training.label_smoothing": 1.5}, "training.label_smoothing"),
    ({"model.dtype": "float16"}, "model.dtype"),
    ({"model.bn_group_size": 3}, "model.bn_group_size"),  # 64 / 8 devices = 8 examples: not a multiple of 3
    ({"model.bn_group_size": 4, "model.bn_sync": True}, "model.bn_group_size"),
    ({"model.bn_group_size": -1}, "model.bn_group_size"),
])
def test_bad_values_name_the_field(tmp_path, overrides, field):
    workdir = str(tmp_path / "run")
    with pytest.raises(ConfigError) as info:
        train_and_evaluate(tiny_config(**overrides), workdir)
    assert info.value.field == field
    assert f"config.{field}" in str(info.value)
    assert not os.path.exists(workdir), "validation must happen before anything is written"


def test_batch_error_suggests_a_valid_size():
    with pytest.raises(ConfigError, match="multiple of 8, e.g. 104"):
        config_lib.validate(tiny_config(**{"training.batch_size": 100}), num_devices=8)


@pytest.mark.parametrize("overrides, field, error", [
    ({"data.source": "imagenet_from_a_dream"}, "data.source", ConfigError),  # the source registry's lookup
    ({"data.source": "mnist", "data.dir": "/nonexistent/mnist"}, "data.dir", DataError),
    ({"data.source": "npz", "data.path": "/nonexistent/x.npz"}, "data.path", DataError),
])
def test_bad_data_config_names_the_field(tmp_path, overrides, field, error):
    with pytest.raises(error, match=field.replace(".", r"\.")):
        train_and_evaluate(tiny_config(**overrides), str(tmp_path / "run"))


def test_locked_config_rejects_typos():
    config = tiny_config()
    config.lock()
    with pytest.raises(AttributeError):
        config.training.batch_sise = 32


def test_base_config_is_valid():
    config_lib.validate(config_lib.base_config(), num_devices=8)


def test_unknown_experiment_names_the_field_and_the_choices(tmp_path):
    config = tiny_config()
    config.experiment = "nope"
    with pytest.raises(ConfigError, match=r"config\.experiment: unknown experiment 'nope'; choose one of "
                                          r"\['augmentation_sweep', 'dreg_study', 'kprior_adaptation', "
                                          r"'kprior_deep', 'train'\]"):
        experiments.run(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("name", experiments.EXPERIMENTS.names())
def test_each_experiment_adds_only_its_fragment_and_validates(name):
    """Every experiment module has the same entry points; its base config is the trainer schema plus its own
    fields (an ImageNet run's config carries no K-prior solver settings), and it validates."""
    module = experiments.EXPERIMENTS.lookup(name)
    assert all(callable(getattr(module, f)) for f in ("extend_config", "validate", "run"))
    config = experiments.base_config(name)
    assert config.experiment == name
    own = set(config) - set(config_lib.base_config())
    assert own == {"train": {"dreg"}, "augmentation_sweep": {"dreg", "sweep", "classwise"},
                   "dreg_study": {"dreg", "dreg_study"}, "kprior_adaptation": {"kprior"},
                   "kprior_deep": {"kprior"}}[name]
    if name == "kprior_deep":  # its model must be free of BatchNorm and its runs a fixed number of steps
        config.model.name, config.optimizer.weight_decay, config.training.num_train_steps = "mlp", 0.0, 10
    if name == "kprior_adaptation":
        config.model.name = "glm"
    if name == "augmentation_sweep":  # the pipeline must name the swept parameter
        config.augment.pipeline = "rrc(size=8, scale=(crop_scale, 1.0))"
    experiments.validate(config, num_devices=8)


def test_eval_every_steps_has_a_final_only_value(tmp_path):
    """EVAL_FINAL_ONLY evaluates once, after the last step (eval.jsonl has one line); 0 is once per epoch."""
    config = tiny_config(**{"eval_every_steps": config_lib.EVAL_FINAL_ONLY, "training.num_train_steps": 50})
    train_and_evaluate(config, str(tmp_path / "final"))
    assert len((tmp_path / "final" / "eval.jsonl").read_text().splitlines()) == 1
    config.eval_every_steps = 0  # 50 steps of 64 over 1,437 digits: 22 steps per epoch -> at 22, 44 and 50
    train_and_evaluate(config, str(tmp_path / "epochs"))
    assert len((tmp_path / "epochs" / "eval.jsonl").read_text().splitlines()) == 3


def test_a_grid_runs_config_is_a_train_config_without_the_grids_fragments():
    """Each run of a sweep is a `train` run: its config keeps the trainer's fields and config.dreg, drops the
    grid's own (so its identity does not change when the sweep grows)."""
    sweep_config = tiny_config("augmentation_sweep", **{"optimizer.learning_rate": 0.3, "dreg.enabled": True})
    run_config = experiments.EXPERIMENTS.lookup("train").as_train_config(sweep_config)
    assert run_config.experiment == "train" and set(run_config) == set(experiments.base_config("train"))
    assert run_config.optimizer.learning_rate == 0.3 and run_config.dreg.enabled
    run_config.optimizer.learning_rate = 0.1
    assert sweep_config.optimizer.learning_rate == 0.3, "a copy, not a view"


def test_a_train_crop_that_evaluation_does_not_match_fails_before_training(tmp_path):
    """rrc(size=64) on 8x8 digits would train at 64 px and evaluate at 8 px: a ConfigError before any step."""
    config = tiny_config(**{"augment.pipeline": "rrc(size=64)"})
    with pytest.raises(ConfigError, match=r"\(64, 64, 1\).*\(8, 8, 1\)"):
        train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_config_data_num_classes_catches_a_stray_label_in_an_npz(tmp_path):
    import numpy as np
    x = np.zeros((20, 4, 4, 1), np.float32)
    labels = np.arange(20) % 10
    labels[3] = 10
    np.savez(tmp_path / "d.npz", x_train=x, y_train=labels, x_test=x, y_test=np.arange(20) % 10)
    config = tiny_config(**{"data.source": "npz", "data.path": str(tmp_path / "d.npz"), "data.num_classes": 10})
    with pytest.raises(DataError, match=r"train split: 1 of its 20 labels are outside \[0, 10\)"):
        train_and_evaluate(config, str(tmp_path / "run"))


def test_an_empty_split_is_a_data_error():
    import numpy as np

    from jaxlab import data
    x = np.zeros((10, 4, 4, 1), np.float32)
    with pytest.raises(DataError, match="the test split is empty"):
        data.from_arrays(x, np.arange(10) % 2, x[:0], np.zeros(0, np.int64), name="toy")
