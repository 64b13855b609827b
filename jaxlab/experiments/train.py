"""The `train` experiment: one supervised training run with per-class evaluation, optionally with DReg.

    python -m jaxlab.main --config=configs/default.py --config.experiment=train

Fragment: config.dreg. With config.dreg.enabled the model's layer is replicated and trained with the DReg
penalty (Yuan et al. 2020; jaxlab.dreg), through the trainer's extension point: the train metrics add
dreg_penalty / dreg_cosine, checkpoints hold the replicated params, and the plain architecture's folded params
are written to <workdir>/folded_params.msgpack (summary.json's "dreg" entry says so). Writes what
`jaxlab.train.train_and_evaluate` writes: summary.json, per_class.csv, predictions.npz, train.jsonl,
eval.jsonl, eval_per_class.jsonl, checkpoints/.
"""

from __future__ import annotations

import copy
import functools
import os
import warnings

import flax.serialization
import jax
import ml_collections

from jaxlab import config as config_lib
from jaxlab import dreg, parallel
from jaxlab.errors import ConfigError, require
from jaxlab.experiments.grid import require_finished
from jaxlab.train import Extension, RunInfo, train_and_evaluate
from jaxlab.train import validate as validate_training

FOLDED_FILE = "folded_params.msgpack"


def extend_config(config) -> None:
    """config.dreg: DReg on (or off) for this training run."""
    config.dreg = ml_collections.ConfigDict(dict(
        enabled=False,
        layer="",                 # parameter path of the Dense/Conv to replicate; "" = the final classifier
        combine="sum",            # sum | mean | two_heads (jaxlab.dreg.COMBINES)
        init="independent",       # independent | variance_preserving | split (jaxlab.dreg.INITS)
        penalty="squared_cosine",  # jaxlab.dreg.PENALTIES
        coefficient=1e-2,         # lambda (0 = the copy without penalty, control B2)
        schedule="constant",      # constant | linear_warmup | cosine_decay (of lambda)
        warmup_steps=0,
        matched_single=False,     # control B1: no copy; the single layer reparametrised to match the copies'
                                  # effective LR, weight decay and init variance (jaxlab.dreg.Matched)
    ))


def validate_dreg(dreg_config) -> None:
    """config.dreg's values. Warns for the negative_squared_distance penalty under sum/mean, which does not
    change the network's function (jaxlab.dreg.replicate)."""
    for field, choices in (("combine", tuple(dreg.COMBINES)), ("init", dreg.INITS),
                           ("penalty", tuple(dreg.PENALTIES)), ("schedule", dreg.SCHEDULES)):
        value = dreg_config[field]
        require(value in choices, f"dreg.{field}", f"unknown {field} {value!r}; choose one of {choices}")
    require(dreg_config.coefficient >= 0, "dreg.coefficient",
            f"must be >= 0 (0 trains the copy without penalty), got {dreg_config.coefficient}")
    require(dreg_config.warmup_steps >= 0, "dreg.warmup_steps", "must be >= 0")
    require(dreg_config.schedule != "linear_warmup" or dreg_config.warmup_steps > 0, "dreg.warmup_steps",
            "schedule='linear_warmup' needs warmup_steps > 0")
    if (dreg_config.enabled and not dreg_config.matched_single and dreg_config.combine in ("sum", "mean")
            and dreg_config.penalty == "negative_squared_distance"):
        warnings.warn(f"config.dreg.penalty='negative_squared_distance' with combine={dreg_config.combine!r} is a "
                      "NO-OP on the network's function: W1 + W2 follows the unpenalised trajectory while W1 - W2 "
                      "grows without bound (and eventually overflows). Use squared_cosine unless this is the "
                      "no-op control.", UserWarning, stacklevel=3)


def validate(config, *, num_devices: int, process_count: int = 1) -> None:
    validate_training(config, num_devices=num_devices, process_count=process_count)
    validate_dreg(config.dreg)


def save_plain_variables(path: str, model: dreg.Replicated | dreg.Matched, params, batch_stats) -> None:
    """Write {"params": model.export(params), "batch_stats"} (flax msgpack) for the plain architecture.

    Read back with flax.serialization.msgpack_restore(open(path, "rb").read()) and use with
    model.base.apply (the model without DReg).
    """
    params, batch_stats = jax.device_get((params, batch_stats))
    variables = {"params": model.export(params), **({"batch_stats": batch_stats} if batch_stats else {})}
    with open(path, "wb") as f:
        f.write(flax.serialization.msgpack_serialize(flax.serialization.to_state_dict(variables)))


def _copy_metrics(path: str, penalty, params) -> dict:
    """The copies' penalty and cosine (train metrics dreg_penalty, dreg_cosine)."""
    w1, w2 = dreg.replicated_kernels(params, path)
    return {"dreg_penalty": penalty(w1, w2), "dreg_cosine": dreg.cosine(w1, w2)}


def dreg_extension(dreg_config):
    """The trainer extension of a validated config.dreg: DReg (the layer replicated, loss lambda(step) *
    penalty(W1, W2), metrics dreg_penalty and dreg_cosine) or control B1 (matched_single: the layer
    reparametrised, no penalty); either way the trained params fold back into the plain architecture."""
    settings = dreg_config.to_dict()

    def factory(info: RunInfo) -> Extension:
        try:  # the layer is checked by tracing the model abstractly: before anything compiles
            layer = dreg.target_layer(info.model, info.input_shape, settings["layer"] or None, settings["combine"])
        except ValueError as error:
            raise ConfigError("dreg.layer", str(error)) from None
        model = dreg.replicate_model(info.model, info.input_shape, layer, settings["combine"], settings["init"],
                                     settings["matched_single"])
        if settings["matched_single"]:
            loss = param_metrics = None
        else:
            coefficient = (settings["coefficient"] if settings["schedule"] == "constant" else
                           dreg.coefficient_schedule(settings["coefficient"], settings["schedule"],
                                                     warmup_steps=settings["warmup_steps"],
                                                     total_steps=info.total_steps))
            loss = dreg.dreg_extra_loss(model.path, settings["penalty"], coefficient)
            param_metrics = functools.partial(_copy_metrics, model.path, dreg.PENALTIES.lookup(settings["penalty"]))

        def finish(workdir: str, state, write: bool) -> dict:
            entry = {**settings, "layer": model.path, "plain_params": FOLDED_FILE}
            if param_metrics is not None:
                entry.update({k: float(v) for k, v in jax.device_get(param_metrics(state.params)).items()})
            if write:
                save_plain_variables(os.path.join(workdir, FOLDED_FILE), model, state.params, state.batch_stats)
            return entry

        return Extension("dreg", model=model, loss=loss, param_metrics=param_metrics, finish=finish)

    return factory


def as_train_config(config) -> ml_collections.ConfigDict:
    """The `train` experiment's config inside a grid experiment's config (its fields, experiment="train"): the
    config of one run, without the grid's own fragments, so a run's identity (jaxlab.experiments.grid's config
    hash) does not change when the grid around it grows."""
    run_config = config_lib.base_config()
    extend_config(run_config)
    for key in run_config:
        if key != "experiment" and key in config:
            run_config[key] = copy.deepcopy(config[key])
    return run_config


def extensions_from_config(config) -> list:
    """The extensions config asks for: DReg when config has a dreg fragment with enabled=True."""
    return [dreg_extension(config.dreg)] if "dreg" in config and config.dreg.enabled else []


def train_run(config, workdir: str, **kwargs) -> dict:
    """`train_and_evaluate` with the config's extensions (DReg); raises Preempted when SIGTERM stopped it.
    The runner of every trained model of the grid experiments (sweep, DReg study, deep K-prior)."""
    extensions = extensions_from_config(config) + list(kwargs.pop("extensions", ()))
    return require_finished(train_and_evaluate(config, workdir, extensions=extensions, **kwargs), workdir)


def run(config, workdir: str) -> dict:
    """Train and evaluate one model (resuming from workdir's checkpoint); the summary (also summary.json)."""
    mesh = parallel.make_mesh()
    validate(config, num_devices=mesh.size, process_count=jax.process_count())
    return train_and_evaluate(config, workdir, mesh=mesh, extensions=extensions_from_config(config))
