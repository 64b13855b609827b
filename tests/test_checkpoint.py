"""Checkpoint integrity: checksum manifests, fallback to the newest intact step, clear errors."""

import glob
import os
import re
import shutil
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import parallel
from jaxlab.errors import DataError
from jaxlab.train import train_and_evaluate
from jaxlab.train.checkpoint import MANIFEST, CheckpointError, Checkpointer, CheckpointWarning, verify_manifest
from jaxlab.train.state import TrainState
from tests.helpers import tiny_config


def _state(step, scale=1.0):
    return TrainState(step=jnp.int32(step), params={"w": jnp.full((4, 3), scale * step, jnp.float32),
                                                   "b": jnp.arange(3, dtype=jnp.float32) * scale},
                      batch_stats={}, opt_state={"mu": jnp.zeros((4, 3), jnp.float32)},
                      rng=jnp.array([0, step], jnp.uint32))


def _save(workdir, steps, keep=3, scale=1.0):
    checkpointer = Checkpointer(str(workdir), keep=keep)
    for step in steps:
        checkpointer.save(_state(step, scale), {"epoch": 0, "position": step})
    checkpointer.close()
    return checkpointer


def _restore(workdir, close=True):
    checkpointer = Checkpointer(str(workdir), keep=3)
    restored = checkpointer.restore_latest(_state(0), parallel.make_mesh())
    if close:
        checkpointer.close()
    return checkpointer, restored


def _data_file(step_dir):
    """The largest array data file of a checkpoint step (orbax's ocdbt chunks)."""
    return max((f for f in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)),
               key=os.path.getsize)


def _damage(step_dir, how):
    path = _data_file(step_dir)
    if how == "flip":
        raw = bytearray(open(path, "rb").read())
        raw[len(raw) // 2] ^= 0xFF
        with open(path, "wb") as f:
            f.write(raw)
    elif how == "truncate":
        os.truncate(path, os.path.getsize(path) // 2)
    else:
        os.remove(path)


# ---------------------------------------------------------------- the Checkpointer alone


def test_manifests_written_once_saved_and_removed_with_their_step(tmp_path):
    checkpointer = _save(tmp_path, [1, 2, 3, 4], keep=2)
    assert sorted(checkpointer._manager.all_steps()) == [3, 4]
    assert sorted(os.listdir(checkpointer.directory)) == ["3", "4"]  # max_to_keep took steps 1, 2 with their manifests
    for step in (3, 4):
        assert os.path.isfile(os.path.join(checkpointer.directory, str(step), MANIFEST))
        assert verify_manifest(os.path.join(checkpointer.directory, str(step))) is None


@pytest.mark.parametrize("how,what", [("flip", "checksum"), ("truncate", "bytes instead of"), ("delete", "missing")])
def test_damaged_latest_step_falls_back_to_previous(tmp_path, how, what):
    _save(tmp_path, [1, 2, 3])
    step_dir = os.path.join(tmp_path, "checkpoints", "3")
    _damage(step_dir, how)
    with pytest.warns(CheckpointWarning, match=f"step 3 at {re.escape(step_dir)} is unusable: .*{what}.*"
                                               f"resuming from step 2"):
        checkpointer, (state, data_state) = _restore(tmp_path, close=False)
    assert checkpointer.restored_step == 2 and list(checkpointer.skipped) == [3]
    chex.assert_trees_all_equal(jax.device_get(state), jax.device_get(_state(2)))
    assert data_state == {"epoch": 0, "position": 2}
    # The damaged step is kept aside for inspection and the resumed run can write step 3 again.
    assert os.path.isdir(os.path.join(tmp_path, "checkpoints_damaged", "3"))
    assert checkpointer.latest_step() == 2
    checkpointer.save(_state(3), {"epoch": 0, "position": 3})
    checkpointer.close()
    _, (state, _) = _restore(tmp_path)
    chex.assert_trees_all_equal(jax.device_get(state), jax.device_get(_state(3)))


def test_step_without_manifest_is_used_when_it_restores_finite(tmp_path):
    _save(tmp_path, [1, 2])
    os.remove(os.path.join(tmp_path, "checkpoints", "2", MANIFEST))  # killed right after orbax finished
    with pytest.warns(CheckpointWarning, match="step 2 .* has no checksum manifest"):
        checkpointer, (state, _) = _restore(tmp_path)
    assert checkpointer.restored_step == 2
    chex.assert_trees_all_equal(jax.device_get(state), jax.device_get(_state(2)))
    assert verify_manifest(os.path.join(tmp_path, "checkpoints", "2")) is None  # recorded now


def test_step_without_manifest_that_orbax_cannot_read_falls_back(tmp_path):
    _save(tmp_path, [1, 2])
    step_dir = os.path.join(tmp_path, "checkpoints", "2")
    os.remove(os.path.join(step_dir, MANIFEST))
    _damage(step_dir, "truncate")
    with pytest.warns(CheckpointWarning, match="step 2 .* orbax cannot restore it"):
        checkpointer, (state, _) = _restore(tmp_path)
    assert checkpointer.restored_step == 1
    chex.assert_trees_all_equal(jax.device_get(state), jax.device_get(_state(1)))


def test_non_finite_checkpoint_is_treated_as_damaged(tmp_path):
    _save(tmp_path, [1])
    checkpointer = Checkpointer(str(tmp_path), keep=3)
    checkpointer.save(_state(2, scale=float("nan")), {"epoch": 0, "position": 2})
    checkpointer.close()
    with pytest.warns(CheckpointWarning, match=r"step 2 .* non-finite values in \['params'\]"):
        checkpointer, (state, _) = _restore(tmp_path)
    assert checkpointer.restored_step == 1


def test_no_intact_checkpoint_is_a_clear_error(tmp_path):
    _save(tmp_path, [1, 2])
    for step in (1, 2):
        _damage(os.path.join(tmp_path, "checkpoints", str(step)), "flip")
    with pytest.warns(CheckpointWarning), pytest.raises(CheckpointError) as error:
        _restore(tmp_path)
    message = str(error.value)
    assert "step 2:" in message and "step 1:" in message and "new workdir" in message
    assert os.path.join(tmp_path, "checkpoints") in message
    assert isinstance(error.value, DataError) and isinstance(error.value, RuntimeError)


def test_checkpoints_path_that_is_a_file_is_an_immediate_error(tmp_path):
    (tmp_path / "checkpoints").write_text("not a directory")
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'checkpoints'} exists but is not a directory"):
        Checkpointer(str(tmp_path))
    assert time.perf_counter() - start < 5


# ---------------------------------------------------------------- through the trainer

_CONFIG = {"training.num_train_steps": 6, "checkpoint_every_steps": 2, "keep_checkpoints": 3}


def _params(result):
    return jax.tree.map(np.asarray, jax.device_get(result["state"].params))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A clean 6-step run with checkpoints at steps 2, 4 and 6, its final params, and the final params of a
    clean run stopped at step 4 (max_steps) and resumed: what falling back to step 4 must reproduce."""
    workdir = str(tmp_path_factory.mktemp("clean") / "run")
    result = train_and_evaluate(tiny_config(**_CONFIG), workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4", "6"]
    reference = str(tmp_path_factory.mktemp("reference") / "run")
    assert train_and_evaluate(tiny_config(**_CONFIG), reference, max_steps=4)["step"] == 4
    resumed = train_and_evaluate(tiny_config(**_CONFIG), reference)
    return workdir, _params(result), _params(resumed)


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_training_resumes_from_previous_checkpoint_when_latest_is_damaged(tmp_path, trained, how):
    clean, final_params, expected = trained
    workdir = str(tmp_path / "run")
    shutil.copytree(clean, workdir)
    _damage(os.path.join(workdir, "checkpoints", "6"), how)
    with pytest.warns(CheckpointWarning) as warned:
        result = train_and_evaluate(tiny_config(**_CONFIG), workdir)
    messages = [str(w.message) for w in warned]
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"checkpoint step 6 at {os.path.join(workdir, 'checkpoints', '6')} is unusable")
    assert messages[0].endswith("resuming from step 4"), messages
    assert result["step"] == 6 and result["finished"]
    chex.assert_trees_all_equal(_params(result), expected)
    chex.assert_trees_all_equal(_params(result), final_params)
    assert verify_manifest(os.path.join(workdir, "checkpoints", "6")) is None  # step 6 written again, intact


def test_training_with_every_checkpoint_damaged_is_a_clear_error(tmp_path, trained):
    workdir = str(tmp_path / "run")
    shutil.copytree(trained[0], workdir)
    for step in (2, 4, 6):
        _damage(os.path.join(workdir, "checkpoints", str(step)), "flip")
    with pytest.warns(CheckpointWarning), pytest.raises(CheckpointError, match="no usable checkpoint") as error:
        train_and_evaluate(tiny_config(**_CONFIG), workdir)
    assert all(f"step {s}:" in str(error.value) for s in (2, 4, 6)) and "delete" in str(error.value)


def test_training_with_a_file_named_checkpoints_fails_at_once(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "checkpoints").write_text("")
    start = time.perf_counter()
    with pytest.raises(DataError, match="checkpoints exists but is not a directory"):
        train_and_evaluate(tiny_config(**_CONFIG), str(workdir))
    assert time.perf_counter() - start < 60
