"""Command line: `python -m jaxlab.main --config=configs/<name>.py --workdir=<dir>`.

Kept thin on purpose: everything it does is one call to `jaxlab.experiments.run` (the module
`jaxlab.experiments.<config.experiment>`), which notebooks can call directly.

Exit status: 0 done (or a sweep shard done), 2 a user error reported on one line (a bad config, a bad or missing
dataset, a diverged run, a workdir in use or trained with another config, a full disk; internal errors keep
their traceback), 143 (128 + SIGTERM) when SIGTERM stopped the run after a checkpoint: a scheduler sees it as
preempted (SLURM's --requeue reruns it, and the rerun resumes). With no flags it runs configs/default.py into
workdirs/default. Override any field with `--config.a.b=value`; configs are locked,
so a misspelt field is an error.
"""

from __future__ import annotations

import errno
import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from jaxlab import experiments, parallel
from jaxlab.errors import ConfigError, DataError, NonFiniteError, WorkdirError

USER_ERROR = 2
PREEMPTED = 128 + 15  # SIGTERM's exit status, as if the signal had ended the process
USER_ERRORS = (ConfigError, DataError, NonFiniteError, WorkdirError)
# Operating-system errors a user fixes (a full disk, a read-only or missing folder, a file where a folder goes).
USER_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.ENOTDIR, errno.EISDIR, errno.EEXIST)

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "default.py")

_CONFIG = config_flags.DEFINE_config_file(
    "config", default=DEFAULT_CONFIG, lock_config=True,
    help_string="Path to a config file (get_config(); configs/*.py, each docstring gives its command). Override any "
                "field with --config.a.b=value. The fields are documented where they are defined: the trainer's in "
                "jaxlab/config.py (base_config), each experiment's fragment in jaxlab/experiments/<experiment>.py "
                "(extend_config); --print_config shows the resolved config.")
_PRINT_CONFIG = flags.DEFINE_bool(
    "print_config", False, "Print the resolved config (the file with every --config.* override) and exit.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, metrics and results (default: workdirs/<config name>).")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache", os.path.join(os.environ.get("JAXLAB_CACHE_DIR", os.path.expanduser("~/.cache/jaxlab")), "xla"),
    "Persistent XLA compilation cache ('' disables): sweeps and reruns reuse compiled steps.")


def default_workdir(config_path: str) -> str:
    name = os.path.splitext(os.path.basename(config_path.split(":")[0]))[0]
    return os.path.join("workdirs", name)


def enable_compilation_cache(directory: str) -> None:
    """Cache every compiled program on disk (keyed by its HLO and the JAX version), however fast it compiled."""
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def one_line(error: BaseException) -> str:
    """An exception's message on one line (a KeyError's repr quotes and newlines removed)."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(str(message).split())


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a one-line error (exit 2) for a misspelt override, a bad value or a missing
    config file instead of the config library's traceback."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, KeyError, AttributeError, OSError, TypeError, ValueError) as e:
        _exit_user_error(e.__cause__ or e)


def _exit_user_error(error: BaseException) -> None:
    sys.stderr.write(f"error: {one_line(error)}\n")
    sys.exit(USER_ERROR)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # keep orbax's INFO chatter out of the progress output
        logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    try:
        config.experiment  # noqa: B018  (a config file that failed to load raises on first use)
    except OSError as e:
        _exit_user_error(e.__cause__ or e)
    if _PRINT_CONFIG.value:
        print(config)
        return
    if _COMPILATION_CACHE.value:
        enable_compilation_cache(_COMPILATION_CACHE.value)
    parallel.initialize_distributed()
    workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].config_filename)
    try:
        result = experiments.run(config, workdir)
    except USER_ERRORS as e:
        _exit_user_error(e)
    except OSError as e:
        if e.errno not in USER_OS_ERRORS:
            raise
        _exit_user_error(e)
    if result.get("preempted"):
        sys.exit(PREEMPTED)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
