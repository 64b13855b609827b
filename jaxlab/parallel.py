"""Data parallelism over a one-axis ("data",) mesh of every device of every process.

The per-device code is written pmap-style and run with `jax.shard_map`: the batch is
split along "data", parameters are replicated. Host batches become global arrays with
`jax.make_array_from_process_local_data`, so the same code runs on one CPU, eight
GPUs, or a multi-host pod after `initialize_distributed()` (which reads the launcher's environment
through the pure `distributed_settings`). `any_process` is the hosts' one agreed decision: stop when
any host was told to.
"""

from __future__ import annotations

import collections

import os
from typing import Any, Callable, Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "data"
BATCH = P(AXIS)
REPLICATED = P()


def distributed_settings(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """How this process joins a multi-process run, read from `environ` (pure: no JAX call).

    Returns None for a single process, else keyword arguments for `jax.distributed.initialize`:
    coordinator_address, num_processes, process_id, local_device_ids (None: every device this process
    sees) and cluster_detection_method ("deactivate" when everything is given here; None lets JAX detect
    the rest, e.g. a TPU pod's workers). Sources, first match wins:

    - JAXLAB_NUM_PROCESSES + JAXLAB_PROCESS_ID + JAX_COORDINATOR_ADDRESS (host:port): any launcher.
    - SLURM with more than one task: process id / count from SLURM_PROCID / SLURM_NTASKS, the coordinator
      on the step's first node (port JAX_COORDINATOR_PORT, else derived from the job id, as JAX does), and
      local_device_ids from the GPUs this task sees (CUDA_VISIBLE_DEVICES, ROCR_/HIP_VISIBLE_DEVICES) and
      the number of tasks on its node: every task sees all the node's GPUs -> task SLURM_LOCALID takes its
      own equal share of them (one task per node: all of them); SLURM bound the task to its GPUs
      (--gpus-per-task, --gpu-bind) -> all the GPUs it sees. JAX's own SLURM detection would always pick
      the single device SLURM_LOCALID: an "invalid device ordinal" under --gpus-per-task (each task sees
      one GPU, numbered 0) and one GPU per node with one task per node. JAX_LOCAL_DEVICE_IDS overrides.
    - JAX_COORDINATOR_ADDRESS, JAXLAB_DISTRIBUTED=1, TPU_WORKER_HOSTNAMES or MEGASCALE_COORDINATOR_ADDRESS:
      JAX detects the rest itself (Cloud TPU, Open MPI, k8s).
    """
    if "JAXLAB_NUM_PROCESSES" in environ:
        num_processes = int(environ["JAXLAB_NUM_PROCESSES"])
        if num_processes <= 1:
            return None
        if "JAX_COORDINATOR_ADDRESS" not in environ or "JAXLAB_PROCESS_ID" not in environ:
            raise ValueError("JAXLAB_NUM_PROCESSES needs JAXLAB_PROCESS_ID and JAX_COORDINATOR_ADDRESS (host:port)")
        return dict(coordinator_address=environ["JAX_COORDINATOR_ADDRESS"], num_processes=num_processes,
                    process_id=int(environ["JAXLAB_PROCESS_ID"]),
                    local_device_ids=_device_ids(environ.get("JAX_LOCAL_DEVICE_IDS")),
                    cluster_detection_method="deactivate")
    num_tasks = int(environ.get("SLURM_STEP_NUM_TASKS", environ.get("SLURM_NTASKS", "1")))
    if num_tasks > 1 and "SLURM_PROCID" in environ:
        return dict(coordinator_address=environ.get("JAX_COORDINATOR_ADDRESS") or _slurm_coordinator(environ),
                    num_processes=num_tasks, process_id=int(environ["SLURM_PROCID"]),
                    local_device_ids=_slurm_local_device_ids(environ), cluster_detection_method="deactivate")
    if (environ.get("JAXLAB_DISTRIBUTED") == "1" or any(k in environ for k in (
            "JAX_COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS"))):
        return dict(coordinator_address=None, num_processes=None, process_id=None, local_device_ids=None,
                    cluster_detection_method=None)
    return None


def _device_ids(text: str | None) -> list[int] | None:
    return [int(i) for i in text.split(",")] if text else None


def _first_slurm_host(node_list: str) -> str:
    """The first host of a SLURM node list: "gpu[003-004,9]-ib,login1" -> "gpu003-ib"."""
    host, depth, taking = [], 0, False
    for ch in node_list:
        if ch == "[":
            depth, taking = 1, True
        elif ch == "]":
            depth = 0
        elif depth:
            taking = taking and ch not in ",-"
            if taking:
                host.append(ch)
        elif ch == ",":
            break
        else:
            host.append(ch)
    return "".join(host)


def _slurm_coordinator(environ: Mapping[str, str]) -> str:
    node_list = environ.get("SLURM_STEP_NODELIST") or environ["SLURM_JOB_NODELIST"]
    port = environ.get("JAX_COORDINATOR_PORT") or str(int(environ["SLURM_JOB_ID"]) % 2**12 + 65535 - 2**12 + 1)
    return f"{_first_slurm_host(node_list)}:{port}"


def _slurm_tasks_on_node(environ: Mapping[str, str]) -> int:
    """This node's task count from SLURM_STEP_TASKS_PER_NODE / SLURM_TASKS_PER_NODE ("4(x2),3")."""
    spec = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE")
    if not spec:
        return int(environ.get("SLURM_NTASKS_PER_NODE", "1"))
    counts = []
    for part in spec.split(","):
        count, _, repeat = part.partition("(x")
        counts += [int(count)] * (int(repeat.rstrip(")")) if repeat else 1)
    return counts[min(int(environ.get("SLURM_NODEID", "0")), len(counts) - 1)]


def _slurm_local_device_ids(environ: Mapping[str, str]) -> list[int] | None:
    if "JAX_LOCAL_DEVICE_IDS" in environ:
        return _device_ids(environ["JAX_LOCAL_DEVICE_IDS"])
    tasks, local = _slurm_tasks_on_node(environ), int(environ.get("SLURM_LOCALID", "0"))
    visible = next((environ[k] for k in ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")
                    if k in environ), None)
    if visible is None:  # SLURM does not manage the GPUs: each task sees them all; JAX's convention
        return None if tasks == 1 else [local]
    seen = len([d for d in visible.split(",") if d.strip() and d != "NoDevFiles"])
    bound = environ.get("SLURM_GPUS_PER_TASK", "").isdigit() and int(environ["SLURM_GPUS_PER_TASK"]) == seen
    if tasks == 1 or seen == 0 or bound or seen < tasks:
        return None  # this task's own GPUs (or a CPU run): use every one it sees
    if seen % tasks:
        raise ValueError(f"{tasks} SLURM tasks on this node share {seen} GPUs ({visible}), which do not split "
                         "evenly: use --ntasks-per-node=1 or as many tasks per node as GPUs")
    share = seen // tasks
    return list(range(local * share, (local + 1) * share))


def initialize_distributed(environ: Mapping[str, str] | None = None) -> None:
    """Join a multi-process run when the environment describes one (`distributed_settings`: several
    SLURM tasks, a TPU pod's worker list, JAX_COORDINATOR_ADDRESS, JAXLAB_NUM_PROCESSES, or
    JAXLAB_DISTRIBUTED=1); a no-op for a single process. Call it on every host before any other JAX
    call, else the hosts wait on each other forever."""
    settings = distributed_settings(os.environ if environ is None else environ)
    if settings is not None and not jax.distributed.is_initialized():
        jax.distributed.initialize(**settings)


def any_process(flag: bool) -> bool:
    """True on every process when `flag` is True on any of them: a decision (stop, e.g. on one host's
    SIGTERM) all hosts take together, at the same step, so none leaves a collective the others still wait
    in. Every process must call it at the same points; one tiny all-gather, none for a single process."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.any(multihost_utils.process_allgather(np.int32(bool(flag)))))


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


class DeviceBuffer:
    """Batches already on the devices ahead of the step that uses them (a device-side double buffer).

    `next(buffer)` returns the oldest sharded batch and starts moving the following ones (`size` in flight
    beyond the one handed out): with JAX's asynchronous dispatch the host-to-device copy of batch t + 1
    overlaps step t.
    `get_state()` is the host iterator's state after the batches handed out so far (not the ones in flight),
    so a checkpoint resumes at the first batch no step has used. `limit` batches at most are moved.
    """

    def __init__(self, batches, mesh: Mesh, *, size: int = 1, limit: int | None = None):
        self._batches, self._mesh, self._size, self._left = batches, mesh, size, limit
        self._queue: collections.deque = collections.deque()
        self._state = batches.get_state()

    def _fill(self) -> None:
        while len(self._queue) < self._size and (self._left is None or self._left > 0):
            batch = next(self._batches)
            self._queue.append((shard_batch(batch, self._mesh), self._batches.get_state()))
            self._left = None if self._left is None else self._left - 1

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, jax.Array]:
        self._fill()
        if not self._queue:
            raise StopIteration
        batch, self._state = self._queue.popleft()
        self._fill()
        return batch

    def get_state(self) -> dict:
        return self._state


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
