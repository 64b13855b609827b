"""Orbax checkpoints of the train state plus the data iterator's position.

A run restarted with the same workdir restores the latest checkpoint and continues;
saves are asynchronous, and only checkpoints of finite states are ever written.
"""

from __future__ import annotations

import os
from typing import Any

import flax.serialization
import jax
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding

from jaxlab import parallel
from jaxlab.train.state import TrainState


class Checkpointer:
    """`save(state, data_state)` / `restore_latest(template)` over `<workdir>/checkpoints`."""

    def __init__(self, workdir: str, *, keep: int = 2):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, state: TrainState, data_state: dict[str, Any]) -> int:
        step = int(jax.device_get(state.step))
        if step != self._manager.latest_step():
            self._manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
                data=ocp.args.JsonSave(data_state)))
        return step

    def restore_latest(self, template: TrainState, mesh: Mesh) -> tuple[TrainState, dict[str, Any]] | None:
        """The latest checkpoint placed replicated on `mesh`, or None if there is none."""
        step = self._manager.latest_step()
        if step is None:
            return None
        sharding = NamedSharding(mesh, parallel.REPLICATED)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                                flax.serialization.to_state_dict(template))
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()))
        return flax.serialization.from_state_dict(template, restored["state"]), dict(restored["data"])

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
