"""The one resumable grid of runs, shared by the augmentation sweep, the DReg study and the deep K-prior runner.

    grid = Grid(workdir, "dreg_study", names=names)
    with grid.watch():                                   # SIGTERM -> Preempted, through jaxlab.train.preemption
        record = grid.run(name, lambda run_dir: {...}, config=run_config)

Layout: <workdir>/runs/<name>/ is a run's working directory (its checkpoints: an interrupted run resumes from
them) and <workdir>/records/<name>.json its record, written atomically once the run finished: the done
marker. A finished run is never run again; its record carries the config it ran with (and its hash), and a
rerun that asks for the same name with another config is a WorkdirError listing the fields that differ (the
workdir holds results of other settings: use a new workdir). Fields that only observe (logging) and fields added
to the schema since, at their defaults, are not differences (`jaxlab.train.workdir.config_differences`). Every message goes through `Grid.log` (elapsed time, progress and an ETA).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from typing import Any, Callable, Iterator

import jax

from jaxlab import parallel
from jaxlab.errors import WorkdirError
from jaxlab.train import preemption
from jaxlab.train.metrics import write_json
from jaxlab.train.workdir import config_differences, config_json, describe_differences


def config_hash(config: Any) -> str:
    """A short hash of a config (ConfigDict, dict or any JSON-able value): the identity of a run's settings."""
    return hashlib.sha1(json.dumps(config_json(config), sort_keys=True).encode()).hexdigest()[:12]


class Grid:
    """Named runs under one workdir, each run once; see the module docstring."""

    def __init__(self, workdir: str, experiment: str, *, names=(), defaults: Any = None):
        """`names`: the runs this call will ask for, where known in advance (progress lines then give an ETA).
        `defaults`: a run config with every field at its default, laid out as the configs given to `run` (None:
        they are trainer configs, jaxlab.config.base_config's): a record written before a field existed is the
        same run while the field keeps its default."""
        self.workdir, self.experiment, self.names = workdir, experiment, list(names)
        self.defaults = None if defaults is None else config_json(defaults)
        self.records_dir = os.path.join(workdir, "records")
        os.makedirs(self.records_dir, exist_ok=True)
        self._start = time.perf_counter()
        self._ran: list[float] = []  # seconds of each run trained in this call (the ETA's basis)
        self._stop: dict[str, bool] = {"stop": False}

    def run_dir(self, name: str) -> str:
        return os.path.join(self.workdir, "runs", name)

    def _record_path(self, name: str) -> str:
        return os.path.join(self.records_dir, name.replace("/", "__") + ".json")

    def record(self, name: str) -> dict | None:
        """The finished run's record, or None."""
        path = self._record_path(name)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)["record"]

    def done(self, name: str) -> bool:
        return os.path.exists(self._record_path(name))

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        """SIGTERM inside the block stops the grid: the trainer checkpoints, `run` raises Preempted."""
        with preemption.watch() as flag:
            self._stop = flag
            yield

    def run(self, name: str, fn: Callable[[str], dict], *, config: Any = None, keep_run_dir: bool = True) -> dict:
        """The record of run `name`: stored, or `fn(run_dir)` (a JSON-able dict) run now and stored.

        `fn` raises Preempted when SIGTERM stopped it (the trainer's checkpoint is in run_dir); `config`, when
        given, is hashed into the record and checked on reuse. keep_run_dir=False deletes run_dir once the
        record is written (the record and whatever `fn` wrote elsewhere are the run's results).
        """
        key = None if config is None else config_hash(config)
        path = self._record_path(name)
        if os.path.exists(path):
            with open(path) as f:
                stored = json.load(f)
            if key is not None and stored.get("config_hash") not in (None, key):
                differences = config_differences(stored.get("config") or {}, config_json(config), self.defaults)
                if differences or stored.get("config") is None:
                    listed = describe_differences(differences)
                    raise WorkdirError(f"{self.workdir} already holds run {name!r} finished with another config "
                                       f"({listed or 'fields the run does not record'}); use a new --workdir "
                                       f"(or delete {path} to run it again)")
            return stored["record"]
        if parallel.any_process(self._stop["stop"]):  # every host stops before the same run
            raise preemption.Preempted(f"SIGTERM: stopped before run {name}")
        self.log(f"run {name}{self._progress()}")
        start = time.perf_counter()
        record = fn(self.run_dir(name))
        if jax.process_index() == 0:  # one writer on a filesystem shared by the hosts
            write_json(path, {"name": name, "config_hash": key, "record": record,
                              "config": None if config is None else config_json(config)})
        if not keep_run_dir and jax.process_index() == 0:
            shutil.rmtree(self.run_dir(name), ignore_errors=True)
        self._ran.append(time.perf_counter() - start)
        return record

    def _progress(self) -> str:
        """' (k of n done, ETA m min)' over `names`; the ETA from this call's mean run time."""
        if not self.names:
            return ""
        remaining = sum(not self.done(n) for n in self.names)
        eta = f", ETA {sum(self._ran) / len(self._ran) * remaining / 60:.1f} min" if self._ran else ""
        return f" ({len(self.names) - remaining} of {len(self.names)} done{eta})"

    def log(self, message: str) -> None:
        print(f"[{self.experiment} {time.perf_counter() - self._start:6.0f} s] {message}", flush=True)


def require_finished(result: dict, run_dir: str) -> dict:
    """A finished trainer result, or Preempted when the run stopped early (SIGTERM, or a max_steps slice): its
    checkpoint is in run_dir, and rerunning the same command continues it."""
    if not result.get("finished"):
        reason = "SIGTERM" if result.get("preempted") else "stopped early"
        raise preemption.Preempted(f"{reason}: {run_dir} checkpointed at step {result['step']} of "
                                   f"{result['total_steps']}; rerun the same command to continue")
    return result
