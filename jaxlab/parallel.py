"""Data parallelism over a one-axis ("data",) mesh of every device of every process.

The per-device code is written pmap-style and run with `jax.shard_map`: the batch is
split along "data", parameters are replicated. Host batches become global arrays with
`jax.make_array_from_process_local_data`, so the same code runs on one CPU, eight
GPUs, or a multi-host pod after `initialize_distributed()`.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "data"
BATCH = P(AXIS)
REPLICATED = P()


def initialize_distributed() -> None:
    """Join a multi-process run when the environment describes one (several SLURM tasks,
    a TPU pod's worker list, JAX_COORDINATOR_ADDRESS, or JAXLAB_DISTRIBUTED=1); a no-op
    for a single process. Call it on every host before any other JAX call, else the
    hosts wait on each other forever."""
    multi = (
        os.environ.get("JAXLAB_DISTRIBUTED") == "1"
        or "JAX_COORDINATOR_ADDRESS" in os.environ
        or int(os.environ.get("SLURM_NTASKS", "1")) > 1
        or "TPU_WORKER_HOSTNAMES" in os.environ
        or "MEGASCALE_COORDINATOR_ADDRESS" in os.environ
    )
    if multi and not jax.distributed.is_initialized():
        jax.distributed.initialize()


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A ("data",) mesh over the first `num_devices` devices (all by default), in
    process order, so each host's devices hold a contiguous slice of the batch."""
    devices = jax.devices()
    if num_devices is not None:
        if not 0 < num_devices <= len(devices):
            raise ValueError(f"num_devices={num_devices} but {len(devices)} devices are available")
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (AXIS,))


def data_parallel(fn: Callable, mesh: Mesh, in_specs: Any, out_specs: Any,
                  donate_argnums: tuple[int, ...] = ()) -> Callable:
    """jit(shard_map(fn)): `fn` sees its device's shard of every BATCH argument."""
    return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs),
                   donate_argnums=donate_argnums)


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Host-local numpy batch -> global arrays split along "data" across all hosts."""
    sharding = NamedSharding(mesh, BATCH)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a pytree (identical on every host) on every device of the mesh."""
    sharding = NamedSharding(mesh, REPLICATED)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def fetch(tree: Any) -> Any:
    """Global arrays -> numpy on every host (batch-sharded arrays are gathered)."""
    def get(x):
        if x.is_fully_addressable:
            return np.asarray(x)
        if x.sharding.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return multihost_utils.process_allgather(x, tiled=True)
    return jax.tree.map(get, tree)
