"""The trainer's one extension point: how a study plugs into `train_and_evaluate` without the trainer naming it.

A study passes `extensions=[factory, ...]`; once the run's facts are known the trainer calls each
`factory(RunInfo) -> Extension` in order (each sees the model as wrapped by the ones before) and the Extension
may
- wrap the model (`model`: e.g. with one layer replicated),
- add a loss term `loss(params, batch, rng, inputs) -> scalar`, called per device on the local shard of the batch
  (plus batch["step"]), averaged over devices and added to the task loss,
- give that term its own jit inputs (`loss_inputs`, a pytree replicated once onto the mesh and passed to every
  step as an argument, seen as `inputs`: arrays in a closure would be baked into the compiled step as constants,
  so runs that differ only in them would each compile; as arguments they share one program),
- report parameter metrics (`param_metrics(params) -> {name: scalar}`), logged with the train metrics,
- finish the run (`finish(workdir, state, write) -> {key: value}`) after the final evaluation: the dict goes into
  summary.json under the extension's name; `write` is True on the process that writes files (process 0).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import flax.linen as nn
import jax


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What an extension may depend on: the model so far, one example's shape, the classes and the step count."""

    model: nn.Module
    input_shape: tuple[int, ...]
    num_classes: int
    total_steps: int


class LossTerm(Protocol):
    def __call__(self, params, batch: dict[str, jax.Array], rng: jax.Array, inputs: Any) -> jax.Array: ...


@dataclasses.dataclass(frozen=True)
class Extension:
    name: str
    model: nn.Module | None = None
    loss: LossTerm | None = None
    loss_inputs: Any = None
    param_metrics: Callable[[Any], dict[str, jax.Array]] | None = None
    finish: Callable[[str, Any, bool], dict[str, Any]] | None = None


ExtensionFactory = Callable[[RunInfo], Extension]


def loss_term(name: str, loss: LossTerm, loss_inputs: Any = None) -> ExtensionFactory:
    """The factory of an extension that only adds `loss` (with its jit inputs) to the task loss."""
    return lambda info: Extension(name, loss=loss, loss_inputs=loss_inputs)


def build(factories, info: RunInfo) -> tuple[nn.Module, list[Extension]]:
    """Call the factories in order, each on the model wrapped by the ones before: (final model, extensions)."""
    model, extensions = info.model, []
    for factory in factories:
        extension = factory(dataclasses.replace(info, model=model))
        model = extension.model if extension.model is not None else model
        extensions.append(extension)
    names = [e.name for e in extensions]
    if len(set(names)) != len(names):
        raise ValueError(f"extension names must be distinct (they key summary.json): {names}")
    return model, extensions
