"""The experiments: one module per `config.experiment`, found by name (jaxlab.experiments.<name>).

Every experiment module has the same four names:

    extend_config(config)                          add its config fragment (fields only it reads) to a base config
    validate(config, *, num_devices, process_count=1)   ConfigError for any bad value, before loading or compiling
    run(config, workdir) -> dict                   the experiment, writing its results into workdir
    __doc__                                        what it does and what it writes

`base_config(name)` is the trainer schema plus that fragment; `run(config, workdir)` runs `config.experiment`.
A new experiment is one new file here: nothing to register. `grid` (the resumable grid of runs), `reports` (the
accuracy-vs-memory plot of both K-prior experiments) and `sweep_report` (the augmentation sweep's report) are
helpers, not experiments.
"""

from __future__ import annotations

import importlib.util
import os
import types

import ml_collections

from jaxlab import config as config_lib
from jaxlab.registry import Registry

HELPERS = ("grid", "reports", "sweep_report")  # not experiments: the grid of runs, plots and reports
EXPERIMENTS = Registry("experiment", "experiment", package=__name__, exclude=HELPERS)


def base_config(name: str) -> ml_collections.ConfigDict:
    """The config every run of experiment `name` starts from: the trainer's fields and the experiment's own."""
    module = EXPERIMENTS.lookup(name)
    config = config_lib.base_config()
    config.experiment = name
    module.extend_config(config)
    return config


def config_module(path: str | os.PathLike) -> types.ModuleType:
    """The config file at `path` (what `--config=` takes: a module with `get_config()`) loaded as a module; a
    config builds on another with `config_module(os.path.join(os.path.dirname(__file__), "other.py"))`."""
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def validate(config, *, num_devices: int, process_count: int = 1) -> None:
    """`config.experiment`'s validator."""
    EXPERIMENTS.lookup(config.experiment).validate(config, num_devices=num_devices, process_count=process_count)


def run(config, workdir: str) -> dict:
    """Run the experiment `config.experiment` into `workdir`."""
    return EXPERIMENTS.lookup(config.experiment).run(config, workdir)
