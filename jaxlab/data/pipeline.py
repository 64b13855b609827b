"""Host-side batching: deterministic resumable training batches and exact, padded evaluation batches.

Both split every global batch into contiguous per-host slices, so host `p` of `P` reads only
examples `[p * B/P, (p + 1) * B/P)` of each global batch of size B.
"""

from __future__ import annotations

import functools
import queue
import threading
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.data.dataset import Source
from jaxlab.errors import DataError


def _host_slice(global_batch_size: int, process_index: int | None, process_count: int | None) -> slice:
    """This host's contiguous part of every global batch."""
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if global_batch_size <= 0 or global_batch_size % count:
        raise DataError(f"the global batch size {global_batch_size} must be positive and divisible by "
                        f"the {count} processes")
    if not 0 <= index < count:
        raise DataError(f"process_index={index} is not in [0, {count})")
    per_host = global_batch_size // count
    return slice(index * per_host, (index + 1) * per_host)


@functools.lru_cache(maxsize=4)
def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
    perm.flags.writeable = False  # shared by every batch of the epoch
    return perm


def _train_batch(source: Source, global_batch_size: int, seed: int, host: slice, step: int) -> dict[str, np.ndarray]:
    """This host's slice of the global batch at `step`: a slice of the epoch's permutation (remainder dropped)."""
    steps_per_epoch = len(source) // global_batch_size
    epoch, offset = divmod(step, steps_per_epoch)
    indices = _epoch_permutation(len(source), seed, epoch)[offset * global_batch_size:][:global_batch_size]
    return source.__getitems__(indices[host])


class StepStream:
    """A batch stream whose batch at step t is a function of (seed, t) alone: its position is {"step", "seed"}.
    Subclasses keep `_step` (the step of the next batch) and `_seed`, and define `close()` (stop their background
    work; a later __next__ restarts it at `_step`)."""

    _step: int
    _seed: int

    def get_state(self) -> dict:
        """JSON-serialisable position in the stream."""
        return {"step": self._step, "seed": self._seed}

    def set_state(self, state: dict) -> None:
        """Continue with the batch at state["step"] of the stream drawn from state["seed"]."""
        self.close()
        self._step, self._seed = int(state["step"]), int(state["seed"])


class TrainBatches(StepStream):
    """Deterministic, resumable, per-host training batches (an infinite iterator).

    The global batch at step t depends only on (seed, t): epoch e = t // steps_per_epoch shuffles
    the split with np.random.default_rng([seed, e]) and the last N % B examples of each epoch are
    dropped. Each host yields only its slice of the global batch. With prefetch > 0 a background
    thread prepares that many batches ahead; results are identical to prefetch=0.
    """

    def __init__(self, source: Source, global_batch_size: int, seed: int, *, start_step: int = 0,
                 process_index: int | None = None, process_count: int | None = None, prefetch: int = 2):
        self._thread = None  # set first: __del__ runs even if __init__ raises
        host = _host_slice(global_batch_size, process_index, process_count)
        if len(source) < global_batch_size:
            raise DataError(f"the split has {len(source)} examples, fewer than the global batch size "
                            f"{global_batch_size}; use a smaller batch")
        self.steps_per_epoch = len(source) // global_batch_size
        self._batch = functools.partial(_train_batch, source, global_batch_size)
        self._host = host
        self._seed = int(seed)
        self._step = start_step  # the step of the next batch __next__ returns
        self._prefetch = prefetch

    def __iter__(self) -> TrainBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if not self._prefetch:
            batch = self._batch(self._seed, self._host, self._step)
        else:
            if self._thread is None:
                self._start()
            batch = self._queue.get()
            if isinstance(batch, Exception):
                self.close()
                raise batch
        self._step += 1
        return batch

    def close(self) -> None:
        """Stop the prefetch thread (a later __next__ restarts it)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def __del__(self):
        self.close()

    def _start(self) -> None:
        self._stop = threading.Event()
        self._queue = queue.Queue(maxsize=self._prefetch)
        produce = functools.partial(self._batch, self._seed, self._host)
        self._thread = threading.Thread(target=_produce, args=(produce, self._step, self._queue, self._stop),
                                        daemon=True)
        self._thread.start()


def _produce(batch_at, step: int, out: queue.Queue, stop: threading.Event) -> None:
    """Prefetch thread: put batch_at(step), batch_at(step + 1), ... (or the first error) until stopped."""
    while not stop.is_set():
        try:
            item = batch_at(step)
        except Exception as e:  # handed to the consumer, which re-raises it
            item = e
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                break
            except queue.Full:
                continue
        if isinstance(item, Exception):
            return
        step += 1


def num_eval_batches(num_examples: int, global_batch_size: int) -> int:
    """Number of global batches eval_batches yields: ceil(num_examples / global_batch_size)."""
    return -(-num_examples // global_batch_size)


def eval_batches(source: Source, global_batch_size: int, *, process_index: int | None = None,
                 process_count: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Every example exactly once, in order, in fixed-size batches: this host's slice of each global batch.

    The last global batch is padded with example 0 and "mask" is 1.0 for real examples, 0.0 for
    padding, so metrics are exact and every host runs the same number of batches.
    """
    host = _host_slice(global_batch_size, process_index, process_count)
    num_examples = len(source)
    for b in range(num_eval_batches(num_examples, global_batch_size)):
        indices = np.arange(b * global_batch_size, (b + 1) * global_batch_size)[host]
        real = indices < num_examples
        batch = source.__getitems__(np.where(real, indices, 0))
        batch["mask"] = real.astype(np.float32)
        yield batch


def to_float(images):
    """Model input as float32 (jit-safe): uint8 pixels are scaled to [0, 1], other dtypes kept as values."""
    images = jnp.asarray(images)
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)
