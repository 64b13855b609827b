"""The experiment registry: `config.experiment` names the function that runs.

Each entry is `run(config, workdir) -> summary dict`. Later modules register their
experiments (augmentation sweeps, K-prior adaptation, DReg studies) with
`@register("name")`.
"""

from __future__ import annotations

from typing import Any, Callable

from jaxlab.registry import Registry

Experiment = Callable[[Any, str], dict]
EXPERIMENTS = Registry("experiment", "experiment")
register = EXPERIMENTS.register


@register("train")
def train(config, workdir: str) -> dict:
    """Plain supervised training and per-class evaluation (jaxlab.train.train_and_evaluate)."""
    from jaxlab.train import train_and_evaluate
    return train_and_evaluate(config, workdir)


@register("augmentation_sweep")
def augmentation_sweep(config, workdir: str) -> dict:
    """One model per (augmentation strength, seed), the class-level analysis, intervention and report."""
    from jaxlab.classwise.sweep import run_sweep
    return run_sweep(config, workdir)


@register("kprior_adaptation")
def kprior_adaptation(config, workdir: str) -> dict:
    """K-prior vs Replay vs Batch on the paper's adaptation tasks over memory sizes and seeds."""
    from jaxlab.kprior.experiments import run_kprior_experiment
    return run_kprior_experiment(config, workdir)


@register("kprior_deep")
def kprior_deep(config, workdir: str) -> dict:
    """K-prior vs Replay vs fine-tuning vs retraining for networks trained through the trainer (add data, continual)."""
    from jaxlab.kprior.deep import run_deep_kprior_experiment
    return run_deep_kprior_experiment(config, workdir)


@register("dreg_study")
def dreg_study(config, workdir: str) -> dict:
    """DReg vs its controls (B0-B4) over batch sizes and seeds at a fixed epoch budget (jaxlab.dreg.study)."""
    from jaxlab.dreg.study import run_study
    return run_study(config, workdir)


def run(config, workdir: str) -> dict:
    """Run the experiment `config.experiment` into `workdir`."""
    return EXPERIMENTS.lookup(config.experiment)(config, workdir)
