"""Orbax checkpoints of the train state plus the data iterator's position, each verified by checksums.

A run restarted with the same workdir restores the latest checkpoint and continues;
saves are asynchronous, and only checkpoints of finite states are ever written.

Integrity: once orbax has finished a step (checked at the next `save`, in `wait` and `close`), the
sha256 and size of every file of `<workdir>/checkpoints/<step>/` are written atomically to
`<step>/jaxlab_checksums.json` (inside the step's directory, so orbax's `max_to_keep` cleanup removes a
step and its manifest together). `restore_latest` tries the steps newest first and skips, with a
`CheckpointWarning` naming the step, its path and what is wrong, a step that is damaged (a file missing,
truncated or with another checksum), unreadable, or that restores non-finite params / batch statistics;
skipped steps newer than the one restored are moved to `<workdir>/checkpoints_damaged/` so the run can
write them again. A step without a manifest (the process stopped between orbax finishing it and the
manifest being written; orbax only lists finalized steps, so half-written ones never get here) is
accepted unverified, with a warning, if it restores with finite values, and gets its manifest then.
No usable step at all is a `CheckpointError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from typing import Any

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding

from jaxlab import parallel
from jaxlab.errors import DataError
from jaxlab.train.state import TrainState

MANIFEST = "jaxlab_checksums.json"
_CHUNK = 1 << 20


class CheckpointError(DataError, RuntimeError):
    """The checkpoints of a workdir cannot be used; the message names the path, the steps tried and the fix."""


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (damaged, unreadable, non-finite) or restored without its checksums."""


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _step_files(step_dir: str) -> list[str]:
    """Every file under `step_dir` (relative, '/'-separated, sorted), the manifest left out."""
    files = []
    for root, _, names in os.walk(step_dir):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), step_dir).replace(os.sep, "/")
            if rel != MANIFEST:
                files.append(rel)
    return sorted(files)


def write_manifest(step_dir: str, step: int) -> None:
    """Record size and sha256 of every file of `step_dir` in `<step_dir>/jaxlab_checksums.json` (atomic)."""
    files = {}
    for rel in _step_files(step_dir):
        path = os.path.join(step_dir, rel)
        files[rel] = {"size": os.path.getsize(path), "sha256": _file_digest(path)}
    target = os.path.join(step_dir, MANIFEST)
    tmp = f"{target}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({"step": step, "algorithm": "sha256", "files": files}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def verify_manifest(step_dir: str) -> str | None:
    """What is wrong with `step_dir` according to its manifest (None: intact). Raises FileNotFoundError when
    there is no manifest."""
    path = os.path.join(step_dir, MANIFEST)
    with open(path) as f:
        try:
            files = json.load(f)["files"]
        except (ValueError, KeyError, TypeError) as e:
            return f"its checksum manifest {path} is unreadable ({e})"
    problems = []
    for rel, expected in sorted(files.items()):
        file = os.path.join(step_dir, rel)
        if not os.path.isfile(file):
            problems.append(f"{rel} is missing")
        elif (size := os.path.getsize(file)) != expected["size"]:
            problems.append(f"{rel} has {size} bytes instead of {expected['size']} (truncated or overwritten)")
        elif _file_digest(file) != expected["sha256"]:
            problems.append(f"{rel} fails its sha256 checksum (corrupted bytes)")
    if not problems:
        return None
    more = f" and {len(problems) - 3} more file(s)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


def _non_finite(tree: Any) -> list[str]:
    """Paths of the floating-point leaves of `tree` holding a NaN or inf."""
    bad = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        value = np.asarray(jax.device_get(leaf))
        if np.issubdtype(value.dtype, np.inexact) and not np.all(np.isfinite(value)):
            bad.append(jax.tree_util.keystr(path))
    return bad


class Checkpointer:
    """`save(state, data_state)` / `restore_latest(template, mesh)` over `<workdir>/checkpoints`, each step
    checksummed once written and verified before it is restored (see the module docstring)."""

    def __init__(self, workdir: str, *, keep: int = 2):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.damaged_directory = os.path.join(os.path.abspath(workdir), "checkpoints_damaged")
        if os.path.lexists(self.directory) and not os.path.isdir(self.directory):
            raise CheckpointError(f"{self.directory} exists but is not a directory: checkpoints of this run are "
                                  f"written there. Move or delete it, or use another workdir.")
        self._is_chief = jax.process_index() == 0
        self._pending: list[int] = []   # steps saved by this process whose manifest is not written yet
        self._closed = False
        self.restored_step: int | None = None
        self.skipped: dict[int, str] = {}  # step -> what was wrong, for the steps restore_latest passed over
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def step_directory(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, state: TrainState, data_state: dict[str, Any]) -> int:
        step = int(jax.device_get(state.step))
        if step != self._manager.latest_step():
            self._finish_pending()
            if self._manager.save(step, args=ocp.args.Composite(
                    state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
                    data=ocp.args.JsonSave(data_state))):
                self._pending.append(step)
        return step

    def _finish_pending(self) -> None:
        """Wait for orbax's background save, then write the manifests of the steps it finished."""
        self._manager.wait_until_finished()
        pending, self._pending = self._pending, []
        if not self._is_chief:
            return
        kept = set(self._manager.all_steps())
        for step in pending:
            step_dir = self.step_directory(step)
            if step in kept and os.path.isdir(step_dir):  # not removed by max_to_keep meanwhile
                write_manifest(step_dir, step)

    def restore_latest(self, template: TrainState, mesh: Mesh) -> tuple[TrainState, dict[str, Any]] | None:
        """The newest intact checkpoint placed replicated on `mesh`, or None if there is none. Newer damaged
        ones are reported (CheckpointWarning) and moved aside; CheckpointError if no checkpoint is usable."""
        self._finish_pending()
        steps = sorted(self._manager.all_steps(), reverse=True)
        if not steps:
            return None
        sharding = NamedSharding(mesh, parallel.REPLICATED)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                                flax.serialization.to_state_dict(template))
        self.skipped = {}
        for step in steps:
            step_dir = self.step_directory(step)
            try:
                problem = verify_manifest(step_dir)
                verified = True
            except FileNotFoundError:
                problem, verified = None, False
            except OSError as e:
                problem, verified = f"its files cannot be read ({e})", True
            if problem is None:
                try:
                    restored = self._manager.restore(step, args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()))
                except Exception as e:  # noqa: BLE001 - any failure to read the step makes it unusable
                    problem = f"orbax cannot restore it ({type(e).__name__}: {str(e).splitlines()[0][:300]})"
                else:
                    bad = _non_finite({k: restored["state"].get(k) for k in ("params", "batch_stats")})
                    if bad:
                        problem = f"it restores non-finite values in {', '.join(bad[:3])}"
            if problem is not None:
                if not verified:
                    problem += " (it has no checksum manifest: probably written by a process that was killed)"
                self.skipped[step] = problem
                continue
            if not verified:
                warnings.warn(f"checkpoint step {step} at {step_dir} has no checksum manifest (the process "
                              f"probably stopped right after writing it); it restored with finite values, so "
                              f"it is used and its checksums are recorded now", CheckpointWarning, stacklevel=2)
                if self._is_chief:
                    write_manifest(step_dir, step)
            self._agree(step)
            for skipped, target in self._set_aside(list(self.skipped)).items():
                warnings.warn(f"checkpoint step {skipped} at {self.step_directory(skipped)} is unusable: "
                              f"{self.skipped[skipped]}; moved it to {target} and resuming from step {step}",
                              CheckpointWarning, stacklevel=2)
            self.restored_step = step
            return flax.serialization.from_state_dict(template, restored["state"]), dict(restored["data"])
        for step, problem in self.skipped.items():
            warnings.warn(f"checkpoint step {step} at {self.step_directory(step)} is unusable: {problem}",
                          CheckpointWarning, stacklevel=2)
        self._agree(-1)
        tried = "; ".join(f"step {s}: {p}" for s, p in self.skipped.items())
        self.close()
        raise CheckpointError(f"no usable checkpoint in {self.directory} (tried {tried}). Start the run in a new "
                              f"workdir, or delete {self.directory} to train this one from scratch.")

    def _agree(self, step: int) -> None:
        """With several processes: all must resume from the same step (-1: none), or the collective saves that
        follow would hang; a disagreement (hosts seeing different files) is a CheckpointError on every host."""
        if jax.process_count() == 1:
            return
        chosen = sorted({int(s) for s in np.asarray(multihost_utils.process_allgather(np.int32(step))).ravel()})
        if len(chosen) > 1:
            self.close()
            raise CheckpointError(f"the processes found different usable checkpoints in {self.directory} (steps "
                                  f"{chosen}, -1: none): every host must see the same files (a shared filesystem)")

    def _set_aside(self, steps: list[int]) -> dict[int, str]:
        """Move damaged steps newer than the restored one to `checkpoints_damaged/` (kept for inspection), so
        the resumed run writes those steps again; {step: where it went}."""
        moved = {}
        if not steps:
            return moved
        for step in steps:
            target = os.path.join(self.damaged_directory, str(step))
            n = 1
            while os.path.lexists(target):
                target, n = os.path.join(self.damaged_directory, f"{step}.{n}"), n + 1
            moved[step] = target
        if self._is_chief:
            os.makedirs(self.damaged_directory, exist_ok=True)
            for step, target in moved.items():
                shutil.move(self.step_directory(step), target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("jaxlab_checkpoint_set_aside")
        self._manager.reload()
        return moved

    def wait(self) -> None:
        """Block until the last save is on disk and checksummed."""
        self._finish_pending()

    def close(self) -> None:
        if self._closed:
            return
        self._finish_pending()
        self._manager.close()
        self._closed = True
