"""config.dreg -> what the trainer needs: the wrapped model, the penalty as an ExtraLoss, train metrics, the export.

train_and_evaluate calls `from_config` when config.dreg.enabled:
- DReg: the layer replicated (`Replicated`), extra loss lambda(step) * penalty(W1, W2), and the
  train metrics "dreg_penalty" (unweighted penalty) and "dreg_cosine" (cos(vec W1, vec W2)).
- control B1 (config.dreg.matched_single): the single layer reparametrised (`Matched`), no penalty.
Either way the trained params fold back into the plain architecture (`save_plain_variables`), so
a DReg-trained model is used, served or fine-tuned as the model without the copy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.serialization
import jax

from jaxlab.dreg.penalty import PENALTIES, coefficient_schedule, cosine, dreg_extra_loss
from jaxlab.dreg.replicate import Matched, Replicated, replicate_model, replicated_kernels

FOLDED_FILE = "folded_params.msgpack"


@dataclasses.dataclass(frozen=True)
class DRegSetup:
    model: Replicated | Matched
    extra_loss: Callable | None                       # ExtraLoss(params, batch, rng); None for B1
    param_metrics: Callable[[Any], dict] | None       # params -> {name: scalar} logged as train metrics


def from_config(dreg_config, model, input_shape: tuple[int, ...], total_steps: int) -> DRegSetup:
    """The DReg (or B1) model for `model` and its loss terms, from a validated config.dreg."""
    wrapped = replicate_model(model, input_shape, dreg_config.layer or None, dreg_config.combine,
                              dreg_config.init, dreg_config.matched_single)
    if dreg_config.matched_single:
        return DRegSetup(wrapped, None, None)
    coefficient = (dreg_config.coefficient if dreg_config.schedule == "constant" else
                   coefficient_schedule(dreg_config.coefficient, dreg_config.schedule,
                                        warmup_steps=dreg_config.warmup_steps, total_steps=total_steps))
    penalty = PENALTIES.lookup(dreg_config.penalty)

    def param_metrics(params) -> dict:
        w1, w2 = replicated_kernels(params, wrapped.path)
        return {"dreg_penalty": penalty(w1, w2), "dreg_cosine": cosine(w1, w2)}

    return DRegSetup(wrapped, dreg_extra_loss(wrapped.path, dreg_config.penalty, coefficient), param_metrics)


def add_losses(*losses: Callable | None) -> Callable | None:
    """The sum of the given ExtraLosses (None entries skipped); None if there are none."""
    losses = [loss for loss in losses if loss is not None]
    if len(losses) <= 1:
        return losses[0] if losses else None
    return lambda params, batch, rng: sum(loss(params, batch, rng) for loss in losses)


def save_plain_variables(path: str, model: Replicated | Matched, params, batch_stats) -> None:
    """Write {"params": model.export(params), "batch_stats"} (flax msgpack) for the plain architecture.

    Read back with flax.serialization.msgpack_restore(open(path, "rb").read()) and use with
    model.base.apply (the model without DReg).
    """
    params, batch_stats = jax.device_get((params, batch_stats))
    variables = {"params": model.export(params), **({"batch_stats": batch_stats} if batch_stats else {})}
    with open(path, "wb") as f:
        f.write(flax.serialization.msgpack_serialize(flax.serialization.to_state_dict(variables)))
