"""Command line: `python -m jaxlab.main --config=configs/<name>.py --workdir=<dir>`.

Kept thin on purpose: everything it does is one call to `jaxlab.experiments.run` (the module
`jaxlab.experiments.<config.experiment>`), which notebooks can call directly. With no flags it runs configs/default.py into
workdirs/default. Override any field with `--config.a.b=value`; configs are locked,
so a misspelt field is an error.
"""

from __future__ import annotations

import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from jaxlab import experiments, parallel
from jaxlab.errors import ConfigError, DataError

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "default.py")

_CONFIG = config_flags.DEFINE_config_file(
    "config", default=DEFAULT_CONFIG, help_string="Path to a config file (get_config()).", lock_config=True)
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


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # keep orbax's INFO chatter out of the progress output
        logging.set_verbosity(logging.WARNING)
    if _COMPILATION_CACHE.value:
        enable_compilation_cache(_COMPILATION_CACHE.value)
    parallel.initialize_distributed()
    workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].config_filename)
    try:
        experiments.run(_CONFIG.value, workdir)
    except (ConfigError, DataError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
