"""A workdir belongs to one run: a lock against a second process, one config per trained workdir, one log line
per step after a resume, and no non-finite state ever passing as trained."""

import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.errors import NonFiniteError, WorkdirError
from jaxlab.train import loss_term, train_and_evaluate
from jaxlab.train import workdir as workdir_lib
from jaxlab.train.workdir import config_differences, config_json
from jaxlab.train.checkpoint import Checkpointer
from tests.helpers import sigterm_at_batch, tiny_config


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 6-step run; the tests copy it to change it."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    train_and_evaluate(tiny_config(), str(workdir))
    return workdir


def _copy(trained, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(trained, target)
    return target


def test_a_trained_workdir_refuses_another_config_and_keeps_its_config_json(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    before = (workdir / "config.json").read_text()
    with pytest.raises(WorkdirError, match=r"trained to step 6 with another config \(optimizer.learning_rate: "
                                           r"0.05 -> 0.5\). Use a new --workdir, or set "
                                           r"--config.on_config_change=restart"):
        train_and_evaluate(tiny_config(**{"optimizer.learning_rate": 0.5}), str(workdir))
    assert (workdir / "config.json").read_text() == before
    with pytest.raises(WorkdirError, match=r"model.name: \"mlp\" -> \"cnn\""):  # before any restore is tried
        train_and_evaluate(tiny_config(**{"model.name": "cnn"}), str(workdir))
    # observing differently is not training differently: a rerun with other intervals re-evaluates the model
    result = train_and_evaluate(tiny_config(**{"log_every_steps": 3, "eval_batch_size": 32}), str(workdir))
    assert result["step"] == 6 and (workdir / "config.json").read_text() == before


def test_restart_discards_the_old_run_and_extend_continues_it(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    longer = tiny_config(**{"training.num_train_steps": 8})
    with pytest.raises(WorkdirError, match="on_config_change=extend to continue it to the new length"):
        train_and_evaluate(longer, str(workdir))
    longer.on_config_change = "extend"
    extended = train_and_evaluate(longer, str(workdir))
    assert extended["step"] == 8 and [r["step"] for r in _lines(workdir / "train.jsonl")] == [2, 4, 6, 8]
    assert json.loads((workdir / "config.until_step6.json").read_text())["training"]["num_train_steps"] == 6
    assert json.loads((workdir / "config.json").read_text())["training"]["num_train_steps"] == 8
    other = tiny_config(**{"seed": 3, "on_config_change": "extend"})
    with pytest.raises(WorkdirError, match="extend allows only training.num_epochs / num_train_steps"):
        train_and_evaluate(other, str(workdir))
    other.on_config_change = "restart"
    fresh = train_and_evaluate(other, str(workdir))
    clean = train_and_evaluate(tiny_config(**{"seed": 3}), str(tmp_path / "clean"))
    assert fresh["step"] == 6 and np.array_equal(fresh["predictions"], clean["predictions"])
    assert json.loads((workdir / "config.replaced.json").read_text())["training"]["num_train_steps"] == 8


def test_a_second_process_on_the_workdir_stops_at_once_naming_the_holder(tmp_path):
    workdir = tmp_path / "busy"
    workdir.mkdir()
    (workdir / ".lock").write_text(json.dumps({"host": "gpu-node-7", "pid": 4242}))
    with pytest.raises(WorkdirError, match=r"in use by process 4242 on gpu-node-7 .*delete .*\.lock"):
        train_and_evaluate(tiny_config(), str(workdir))
    assert not (workdir / "checkpoints").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_the_lock_is_released(tmp_path):
    workdir = tmp_path / "stale"
    workdir.mkdir()
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead = finished.pid
    (workdir / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead}))
    assert train_and_evaluate(tiny_config(), str(workdir))["finished"]
    assert not (workdir / ".lock").exists()
    with workdir_lib.lock(str(workdir)):
        assert json.loads((workdir / ".lock").read_text())["pid"] == os.getpid()


def test_a_resumed_run_logs_each_step_once(tmp_path, monkeypatch):
    """SIGTERM at step 3 (checkpoint at 3), resume: train.jsonl holds steps 1..6 once each."""
    config = tiny_config(**{"log_every_steps": 1, "checkpoint_every_steps": 2})
    sigterm_at_batch(monkeypatch, 4)  # in step 4's batch: steps 1-4 logged, the stop checkpoints step 4
    assert train_and_evaluate(config, str(tmp_path / "run"))["preempted"]
    monkeypatch.undo()
    train_and_evaluate(config, str(tmp_path / "run"))
    assert [r["step"] for r in _lines(tmp_path / "run" / "train.jsonl")] == [1, 2, 3, 4, 5, 6]
    train_and_evaluate(config, str(tmp_path / "run"))  # a finished run re-evaluated: its final eval once
    assert [r["step"] for r in _lines(tmp_path / "run" / "eval.jsonl")].count(6) == 1


def test_non_finite_parameters_stop_the_run_although_the_loss_is_finite(tmp_path):
    """A loss term worth 0 whose gradient is 0 * inf = NaN: the loss stays finite, the parameters do not. The
    step's fused check stops the run and no non-finite checkpoint is ever written."""
    def poisoned(params, batch, rng, inputs):
        bias = jax.tree.leaves(params)[0]  # a zero-initialised bias: d sqrt|b| / db = inf at 0
        return 0.0 * jnp.sum(jnp.sqrt(jnp.abs(bias)))

    config = tiny_config(**{"checkpoint_every_steps": 1, "log_every_steps": 1})
    with pytest.raises(NonFiniteError, match="loss and gradient norm are finite|gradient norm nan") as error:
        train_and_evaluate(config, str(tmp_path / "nan"), extensions=[loss_term("poisoned", poisoned)])
    assert "learning_rate" in str(error.value) and "normalize" in str(error.value)
    assert Checkpointer(str(tmp_path / "nan")).latest_step() is None


def test_a_workdir_trained_before_a_field_existed_resumes_with_it_at_its_default(trained, tmp_path):
    """config.json written before model.bn_group_size existed: the same config today (the field at its default 0)
    resumes; the field at another value is a difference."""
    workdir = _copy(trained, tmp_path)
    stored = json.loads((workdir / "config.json").read_text())
    del stored["model"]["bn_group_size"]
    (workdir / "config.json").write_text(json.dumps(stored))
    assert config_differences(stored, config_json(tiny_config())) == {}
    differences = config_differences(stored, config_json(tiny_config(**{"model.bn_group_size": 8})))
    assert list(differences) == ["model.bn_group_size"] and differences["model.bn_group_size"][1] == 8
    assert train_and_evaluate(tiny_config(), str(workdir))["step"] == 6

