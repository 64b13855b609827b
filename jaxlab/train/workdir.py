"""A workdir belongs to one run: one process at a time (a lock), one config (checked on every resume).

`lock(workdir)`: <workdir>/.lock holds {"host", "pid"} of the process training there; a second process stops at
once naming the holder; a lock left by a dead process of this host is taken over. Multi-host runs share one
workdir: process 0 holds the lock for the job.

`reconcile(workdir, config, trained)`: <workdir>/config.json is the config the checkpoints were trained with and is
never overwritten while they exist. A rerun whose config differs in a field that changes what is trained is a
WorkdirError listing the fields (old -> new), unless config.on_config_change says otherwise:
  "error"   (default) stop, and say how to proceed;
  "restart" discard the workdir's checkpoints and logs (config.json kept as config.replaced.json) and train anew;
  "extend"  only the training length (training.num_epochs / num_train_steps) may differ: continue from the last
            checkpoint to the new length (the learning-rate schedule is recomputed for it); the old config is
            kept as config.until_step<k>.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from typing import Any, Iterator

import jax

from jaxlab import config as config_lib
from jaxlab.errors import WorkdirError

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
# Fields that change how a run is observed, not what is trained: they may differ between a run and its resume.
OBSERVATION_FIELDS = ("eval_batch_size", "eval_every_steps", "log_every_steps", "checkpoint_every_steps",
                      "keep_checkpoints", "tensorboard", "on_config_change", "data.dir", "augment.examples_per_chunk")
LENGTH_FIELDS = ("training.num_epochs", "training.num_train_steps")
OUTPUTS = ("checkpoints", "train.jsonl", "eval.jsonl", "eval_per_class.jsonl", "summary.json", "per_class.csv",
           "predictions.npz")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
    """Hold <workdir>/.lock for the block (process 0 of the job; the others share its workdir)."""
    if jax.process_index() != 0:
        yield
        return
    path = os.path.join(workdir, LOCK_FILE)
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(path) as f:
                    holder = json.load(f)
            except (OSError, ValueError):
                holder = {}
            if holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
                os.remove(path)  # stale: its process is gone
                continue
            if holder == me:  # this process already holds it (a notebook that was interrupted)
                break
            raise WorkdirError(f"{workdir} is in use by process {holder.get('pid')} on {holder.get('host')} "
                               f"({path}); wait for it, use another --workdir, or delete {path} if that process "
                               "is gone") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: tree}


def config_differences(old: dict, new: dict, defaults: dict | None = None) -> dict[str, tuple[Any, Any]]:
    """{field: (old, new)} for the fields that differ and change what is trained (not OBSERVATION_FIELDS).

    A field the old config lacks (it was saved before the field existed) that the new one holds at its default is
    not a difference: a new field's default keeps the behaviour of the code before it. `defaults`: a config (as
    JSON) holding them; None: the trainer schema's (jaxlab.config.base_config).
    """
    old, new = _flatten(old), _flatten(new)
    defaults = _flatten(config_json(config_lib.base_config()) if defaults is None else defaults)
    missing = object()
    return {k: (old.get(k, missing), new.get(k, missing)) for k in sorted(set(old) | set(new))
            if old.get(k, missing) != new.get(k, missing)
            and not (k not in old and k in defaults and new[k] == defaults[k])
            and not any(k == f or k.startswith(f + ".") for f in OBSERVATION_FIELDS)}


def config_json(config: Any) -> Any:
    """A config (ConfigDict, dict or any JSON-able value) as plain JSON values, as config.json holds it."""
    return json.loads(config.to_json_best_effort(sort_keys=True) if hasattr(config, "to_json_best_effort")
                      else json.dumps(config, sort_keys=True, default=repr))


def _show(value) -> str:
    return "(absent)" if not isinstance(value, (str, int, float, bool, list, dict, type(None))) else json.dumps(value)


def describe_differences(differences: dict[str, tuple[Any, Any]]) -> str:
    """"field: old -> new; ..." for `config_differences`' result (the error messages' listing)."""
    return "; ".join(f"{k}: {_show(a)} -> {_show(b)}" for k, (a, b) in differences.items())


def trained_step(workdir: str) -> int | None:
    """The newest step of <workdir>/checkpoints (orbax names each step's folder by its number), or None."""
    folder = os.path.join(workdir, "checkpoints")
    steps = [int(name) for name in os.listdir(folder) if name.isdigit()] if os.path.isdir(folder) else []
    return max(steps, default=None)


def reconcile(workdir: str, config) -> None:
    """Check `config` against the config the workdir's checkpoints were trained with, act on
    config.on_config_change (deleting the old run for "restart") and write config.json for a fresh run."""
    trained = trained_step(workdir)
    path = os.path.join(workdir, CONFIG_FILE)
    write = jax.process_index() == 0
    if trained is None or not os.path.exists(path):
        if write:
            with open(path, "w") as f:
                f.write(config.to_json_best_effort(indent=2))
        return
    with open(path) as f:
        stored = json.load(f)
    differences = config_differences(stored, config_json(config))
    if not differences:
        return
    listed = describe_differences(differences)
    mode = config.on_config_change
    if mode == "extend" and set(differences) <= set(LENGTH_FIELDS):
        if write:
            os.replace(path, os.path.join(workdir, f"config.until_step{trained}.json"))
            with open(path, "w") as f:
                f.write(config.to_json_best_effort(indent=2))
        return
    if mode == "restart":
        if write:
            os.replace(path, os.path.join(workdir, "config.replaced.json"))
            for name in OUTPUTS:
                target = os.path.join(workdir, name)
                if os.path.isdir(target):
                    shutil.rmtree(target)
                elif os.path.exists(target):
                    os.remove(target)
            with open(path, "w") as f:
                f.write(config.to_json_best_effort(indent=2))
        return
    length_only = set(differences) <= set(LENGTH_FIELDS)
    raise WorkdirError(
        f"{workdir} holds a run trained to step {trained} with another config ({listed}). Use a new --workdir, "
        "or set --config.on_config_change=restart to discard that run and train anew"
        + (", or --config.on_config_change=extend to continue it to the new length" if length_only else "")
        + (" (extend allows only training.num_epochs / num_train_steps to change)"
           if mode == "extend" and not length_only else "") + ".")
