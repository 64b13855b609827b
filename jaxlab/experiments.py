"""The experiment registry: `config.experiment` names the function that runs.

Each entry is `run(config, workdir) -> summary dict`. Later modules register their
experiments (augmentation sweeps, K-prior adaptation, DReg studies) with
`@register("name")`.
"""

from __future__ import annotations

from typing import Any, Callable

Experiment = Callable[[Any, str], dict]
EXPERIMENTS: dict[str, Experiment] = {}


def register(name: str) -> Callable[[Experiment], Experiment]:
    def decorator(fn: Experiment) -> Experiment:
        if name in EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is already registered")
        EXPERIMENTS[name] = fn
        return fn
    return decorator


@register("train")
def train(config, workdir: str) -> dict:
    """Plain supervised training and per-class evaluation (jaxlab.train.train_and_evaluate)."""
    from jaxlab.train import train_and_evaluate
    return train_and_evaluate(config, workdir)


def run(config, workdir: str) -> dict:
    """Run the experiment `config.experiment` into `workdir`."""
    if config.experiment not in EXPERIMENTS:
        from jaxlab.config import ConfigError
        raise ConfigError("experiment", f"unknown experiment {config.experiment!r}; "
                          f"choose one of {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[config.experiment](config, workdir)
