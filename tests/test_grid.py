"""The one resumable grid of runs and the one preemption flag (no training: runs are plain functions)."""

import json
import os
import signal

import pytest

from jaxlab import config as config_lib
from jaxlab.errors import WorkdirError
from jaxlab.experiments.grid import Grid, config_hash, require_finished
from jaxlab.train import Preempted
from jaxlab.train import preemption
from jaxlab.train.workdir import config_json
from tests.helpers import tiny_config


def test_a_finished_run_is_never_run_again_and_its_record_survives_a_new_grid(tmp_path, capsys):
    calls = []

    def fn(run_dir):
        calls.append(run_dir)
        os.makedirs(run_dir)
        return {"accuracy": 0.5}

    grid = Grid(str(tmp_path), "test", names=["a", "b/c"])
    assert grid.run("a", fn) == {"accuracy": 0.5} and grid.done("a") and not grid.done("b/c")
    assert calls == [str(tmp_path / "runs" / "a")] and os.path.isdir(calls[0])
    grid.run("b/c", fn, keep_run_dir=False)
    assert not os.path.exists(tmp_path / "runs" / "b" / "c"), "keep_run_dir=False deletes the run's folder"
    again = Grid(str(tmp_path), "test")
    assert again.run("a", fn) == {"accuracy": 0.5} and again.record("b/c") == {"accuracy": 0.5}
    assert len(calls) == 2 and again.record("never") is None
    assert "(0 of 2 done)" in capsys.readouterr().out  # progress over the announced names


def test_progress_gives_an_eta_from_this_calls_runs(tmp_path, capsys):
    grid = Grid(str(tmp_path), "test", names=["r0", "r1", "r2"])
    grid.run("r0", lambda run_dir: {})
    grid.run("r1", lambda run_dir: {})
    assert "(1 of 3 done, ETA 0.0 min)" in capsys.readouterr().out


def test_a_run_asked_for_with_another_config_is_an_error(tmp_path):
    grid = Grid(str(tmp_path), "test")
    config = tiny_config()
    grid.run("r", lambda run_dir: {"x": 1}, config=config)
    assert grid.run("r", lambda run_dir: {"x": 2}, config=tiny_config()) == {"x": 1}  # same config: reused
    config.optimizer.learning_rate = 0.5
    with pytest.raises(WorkdirError, match=r"holds run 'r' finished with another config "
                                           r"\(optimizer.learning_rate: 0.05 -> 0.5\)"):
        grid.run("r", lambda run_dir: {"x": 3}, config=config)


def test_a_run_finished_before_a_field_existed_is_reused_while_the_field_keeps_its_default(tmp_path):
    """A record written by an older jaxlab lacks fields added since (here model.bn_group_size): at their defaults
    they keep the old behaviour, so the run is reused; set to another value, they are a difference."""
    grid = Grid(str(tmp_path), "test")
    grid.run("r", lambda run_dir: {"x": 1}, config=tiny_config())
    path = tmp_path / "records" / "r.json"
    stored = json.loads(path.read_text())
    del stored["config"]["model"]["bn_group_size"]
    stored["config_hash"] = config_hash(stored["config"])
    path.write_text(json.dumps(stored))
    assert grid.run("r", lambda run_dir: {"x": 2}, config=tiny_config()) == {"x": 1}
    with pytest.raises(WorkdirError, match=r"model.bn_group_size: \(absent\) -> 8"):
        grid.run("r", lambda run_dir: {"x": 3}, config=tiny_config(**{"model.bn_group_size": 8}))


def test_a_grid_with_its_own_run_layout_names_its_defaults(tmp_path):
    """Run configs laid out as {"config": trainer config, ...} (the deep K-prior's): the grid's `defaults` in that
    layout let a record written before model.bn_group_size existed be reused."""
    def settings(**overrides):
        return {"config": config_json(tiny_config(**overrides)), "seed": 0}

    stored = settings()
    del stored["config"]["model"]["bn_group_size"]
    Grid(str(tmp_path), "test").run("r", lambda run_dir: {"x": 1}, config=stored)
    with pytest.raises(WorkdirError, match="config.model.bn_group_size"):  # the trainer schema is not this layout
        Grid(str(tmp_path), "test").run("r", lambda run_dir: {"x": 2}, config=settings())
    grid = Grid(str(tmp_path), "test", defaults={"config": config_lib.base_config().to_dict()})
    assert grid.run("r", lambda run_dir: {"x": 2}, config=settings()) == {"x": 1}


def test_config_hash_depends_on_every_value():
    assert config_hash(tiny_config()) == config_hash(tiny_config())
    assert config_hash(tiny_config()) != config_hash(tiny_config(seed=1))
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1}) != config_hash({"a": 1, "b": 3})


def test_sigterm_stops_the_grid_before_its_next_run(tmp_path):
    grid = Grid(str(tmp_path), "test")
    with grid.watch():
        grid.run("first", lambda run_dir: os.kill(os.getpid(), signal.SIGTERM) or {"done": True})
        with pytest.raises(Preempted, match="before run second"):
            grid.run("second", lambda run_dir: {})
    assert grid.done("first") and not grid.done("second")
    assert signal.getsignal(signal.SIGTERM) is not None and not preemption._active  # the handler is restored


def test_nested_watches_share_the_outer_flag():
    previous = signal.getsignal(signal.SIGTERM)
    with preemption.watch() as outer:
        with preemption.watch() as inner:
            assert inner is outer
            os.kill(os.getpid(), signal.SIGTERM)
        assert outer["stop"]
    assert signal.getsignal(signal.SIGTERM) == previous


def test_require_finished_turns_a_stopped_run_into_preempted():
    finished = {"finished": True, "step": 4, "total_steps": 4}
    assert require_finished(finished, "run") is finished
    with pytest.raises(Preempted, match="SIGTERM: run checkpointed at step 2 of 4"):
        require_finished({"finished": False, "preempted": True, "step": 2, "total_steps": 4}, "run")
    with pytest.raises(Preempted, match="stopped early"):
        require_finished({"finished": False, "step": 3, "total_steps": 4}, "run")
