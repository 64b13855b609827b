"""Multi-process loading of encoded-image (JPEG) datasets: `JpegSource` (a split), `JpegBatches` (training batches,
same interface as `TrainBatches`) and `train_batches(split, ...)`, which picks the right one for a split.

Records. A split's `records` is any random-access sequence `records[i] -> (encoded image bytes, int label)` with
`len(records)`, picklable (the worker processes get a copy): `FileRecords` (image files, e.g. an ImageFolder tree)
or `TfdsRecords` (a tfds ArrayRecord `data_source` opened with `SkipDecoding`). Decoding happens only in the
workers, through `transform(data, label, index, rng_seed) -> uint8 (S, S, 3)`; `RandomResizedCrop` (training,
optionally with a per-class lower scale bound) and `ResizeCenterCrop` (evaluation) wrap jaxlab.data.jpeg.

Order, sharding and randomness are those of `TrainBatches`, so the two agree on which examples form a batch:
the global batch at step t is slice t % steps_per_epoch of the permutation np.random.default_rng([seed, epoch]) of
the split, epoch = t // steps_per_epoch (the last N % B examples of each epoch are dropped), and host p of P gets
the contiguous part [p B/P, (p + 1) B/P) of it. Example i of epoch e is transformed with
np.random.default_rng((seed, e, i)): the same crops whatever the host count, worker count or prefetch depth.

Workers and resume. The host's batches form a grain `MapDataset` indexed by step (`MapDataset.range(start_step,
...).map(HostBatch)`), read by `mp_prefetch` in `workers` spawned processes: worker w builds whole batches w,
w + W, ... and grain returns them in step order, so the output is independent of the worker count. Since a batch
is a pure function of (seed, step), the resumable state is only the step counter: `get_state()` ->
{"step", "seed"} (the `TrainBatches` format), and `set_state` restarts the pipeline at that step (batches
prefetched but not consumed are discarded and rebuilt). grain's own iterator checkpoints are not used.

Evaluation: `JpegSource.__getitems__(indices)` decodes with `ResizeCenterCrop` in a pool of `workers` spawned
processes (each gets the records once), so `eval_batches(split, ...)` and `all_examples` work unchanged.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from jaxlab.data.dataset import Source
from jaxlab.data.jpeg import random_resized_crop, resize_center_crop
from jaxlab.data.pipeline import StepStream, TrainBatches, _epoch_permutation, _host_slice
from jaxlab.errors import DataError

__all__ = ["FileRecords", "JpegBatches", "JpegSource", "RandomResizedCrop", "Records", "ResizeCenterCrop",
           "TfdsRecords", "default_workers", "train_batches"]

_NO_END = 1 << 62  # the step stream is endless; grain's MapDataset needs a length


class Records(Protocol):
    """Random access to (encoded image bytes, label) pairs; `describe(i)` (optional) names record i in errors."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[bytes, int]: ...


Transform = Callable[[bytes, int, int, tuple[int, int, int]], np.ndarray]


def default_workers() -> int:
    """The CPUs this process may run on (its affinity mask under SLURM / containers), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class FileRecords:
    """Image files under `root`: record i is the bytes of root/paths[i] and labels[i]."""

    root: str
    paths: tuple[str, ...]  # relative to root
    labels: np.ndarray  # (N,) int32

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[bytes, int]:
        path = os.path.join(self.root, self.paths[index])
        try:
            with open(path, "rb") as f:
                return f.read(), int(self.labels[index])
        except OSError as e:
            raise DataError(f"cannot read {path}: {e}") from None

    def describe(self, index: int) -> str:
        return f"{os.path.join(self.root, self.paths[index])} (example {index} of the split)"


class TfdsRecords:
    """A tfds random-access data source opened with `decoders={image_key: tfds.decode.SkipDecoding()}`."""

    def __init__(self, data_source, *, name: str, image_key: str = "image", label_key: str = "label"):
        self.data_source, self.name = data_source, name
        self.image_key, self.label_key = image_key, label_key

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, index: int) -> tuple[bytes, int]:
        example = self.data_source[int(index)]
        return example[self.image_key], int(example[self.label_key])

    def describe(self, index: int) -> str:
        return f"record {index} of {self.name}"


def _describe(records: Records, index: int) -> str:
    describe = getattr(records, "describe", None)
    return describe(index) if describe is not None else f"example {index}"


@dataclasses.dataclass(frozen=True)
class RandomResizedCrop:
    """The training transform: torchvision's RandomResizedCrop(size, (scale_min, scale_max), ratio) on the original
    image. scale_min: one lower bound, or a (num_classes,) array of them looked up by label (class-conditional)."""

    size: int
    scale_min: Any = 0.08  # float or (K,) array
    scale_max: float = 1.0
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self):
        lower = np.asarray(self.scale_min, np.float64)
        if lower.ndim > 1 or not np.all((lower > 0) & (lower <= self.scale_max)):
            raise DataError(f"random-resized-crop scale lower bound(s) must lie in (0, scale_max={self.scale_max}], "
                            f"one value or one per class; got {self.scale_min!r}")
        if self.size <= 0 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise DataError(f"random-resized-crop needs size > 0 and 0 < ratio[0] <= ratio[1]; got size={self.size}, "
                            f"ratio={self.ratio}")
        object.__setattr__(self, "scale_min", lower)

    def __call__(self, data: bytes, label: int, index: int, rng_seed: tuple[int, int, int]) -> np.ndarray:
        lower = self.scale_min[label] if self.scale_min.ndim else self.scale_min
        return random_resized_crop(data, np.random.default_rng(rng_seed), size=self.size,
                                   scale=(float(lower), self.scale_max), ratio=self.ratio, name=f"example {index}")


@dataclasses.dataclass(frozen=True)
class ResizeCenterCrop:
    """The evaluation transform: torchvision's Resize(resize) then CenterCrop(crop) (no randomness)."""

    resize: int = 256
    crop: int = 224

    def __call__(self, data: bytes, label: int, index: int, rng_seed=None) -> np.ndarray:
        return resize_center_crop(data, resize=self.resize, crop=self.crop, name=f"example {index}")


def _examples(records: Records, transform: Transform, indices: np.ndarray,
              seeds: Sequence[tuple[int, int, int]] | None) -> dict[str, np.ndarray]:
    """Read and transform records[indices]: {"image", "label", "index"}; errors name the record."""
    images, labels = [], []
    for k, index in enumerate(indices.tolist()):
        try:
            data, label = records[index]
            images.append(transform(data, label, index, None if seeds is None else seeds[k]))
        except DataError as e:  # name the record (its file), not only its index
            message = str(e).removeprefix(f"example {index}: ")
            raise DataError(f"{_describe(records, index)}: {message}") from None
        labels.append(label)
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise DataError(f"the transform returned images of different shapes {sorted(shapes)}; it must return one "
                        "fixed (S, S, 3) shape")
    return {"image": np.stack(images) if images else np.zeros((0,), np.uint8),
            "label": np.asarray(labels, np.int32), "index": indices.astype(np.int32)}


@dataclasses.dataclass(frozen=True)
class HostBatch:
    """step -> this host's part of the global batch at that step (see the module docstring); runs in the workers."""

    records: Records
    transform: Transform
    global_batch_size: int
    seed: int
    host: slice

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        num_examples = len(self.records)
        epoch, offset = divmod(int(step), num_examples // self.global_batch_size)
        indices = _epoch_permutation(num_examples, self.seed, epoch)[offset * self.global_batch_size:]
        indices = indices[:self.global_batch_size][self.host]
        return _examples(self.records, self.transform, indices, [(self.seed, epoch, i) for i in indices.tolist()])


class JpegBatches(StepStream):
    """Deterministic, resumable, per-host training batches decoded in worker processes (an infinite iterator).

    The interface of `TrainBatches`: `next()` -> {"image": uint8 (B/P, S, S, 3), "label": int32, "index": int32},
    `steps_per_epoch`, `get_state()` / `set_state(state)` ({"step", "seed"}), `close()`.
    transform(data, label, index, rng_seed): the per-example transform run in the workers (picklable; rng_seed =
    (seed, epoch, index)); workers: processes, each building whole host batches (0: decode in this process, in a
    background thread when prefetch > 0, or in `next` when prefetch = 0); prefetch: batches ready ahead, at least
    one per worker. Host memory for batches in flight: about max(2 * workers, workers + prefetch) host batches
    (a host batch of 256 224 px images is 38 MB), in /dev/shm (give containers a large enough --shm-size).
    """

    def __init__(self, records: Records, global_batch_size: int, seed: int, *, transform: Transform,
                 workers: int = 0, prefetch: int = 2, process_index: int | None = None,
                 process_count: int | None = None, start_step: int = 0):
        self._iterator = None  # set first: __del__ runs even if __init__ raises
        host = _host_slice(global_batch_size, process_index, process_count)
        if len(records) < global_batch_size:
            raise DataError(f"the split has {len(records)} examples, fewer than the global batch size "
                            f"{global_batch_size}; use a smaller batch")
        if workers < 0 or prefetch < 0:
            raise DataError(f"workers={workers} and prefetch={prefetch} must be >= 0")
        self.steps_per_epoch = len(records) // global_batch_size
        self._records, self._transform = records, transform
        self._global_batch_size, self._host = global_batch_size, host
        self._workers, self._prefetch = workers, prefetch
        self._seed = int(seed)
        self._step = int(start_step)  # the step of the next batch __next__ returns

    def _batch_at(self) -> HostBatch:
        return HostBatch(self._records, self._transform, self._global_batch_size, self._seed, self._host)

    def __iter__(self) -> JpegBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if not self._workers and not self._prefetch:
            batch = self._batch_at()(self._step)
        else:
            if self._iterator is None:
                self._iterator = self._start()
            try:
                batch = next(self._iterator)
            except BaseException:
                self.close()
                raise
            batch = {key: np.asarray(value) for key, value in batch.items()}  # plain views of grain's shared memory
        self._step += 1
        return batch

    def _start(self):
        """A grain pipeline yielding the batches of steps self._step, self._step + 1, ..."""
        import grain.python as grain  # only JPEG training needs grain (and its workers import it anyway)

        steps = grain.MapDataset.range(self._step, _NO_END).map(self._batch_at())
        if self._workers:
            _absl_flags_parsed()
            per_worker = max(1, -(-self._prefetch // self._workers))  # ceil: at least `prefetch` batches ready
            dataset = steps.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)).mp_prefetch(
                grain.MultiprocessingOptions(num_workers=self._workers, per_worker_buffer_size=per_worker))
        else:
            dataset = steps.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=self._prefetch))
        return iter(dataset)

    def close(self) -> None:
        """Stop the workers (a later __next__ restarts them at the current step)."""
        iterator, self._iterator = self._iterator, None
        if iterator is not None and hasattr(iterator, "close"):
            iterator.close()

    def __del__(self):
        self.close()


def _absl_flags_parsed() -> None:
    """grain <= 0.2.18's mp_prefetch reads an absl flag, which raises UnparsedFlagAccessError in programs that never
    parse absl flags (notebooks, pytest; google/grain#1355, fixed after 0.2.18): there, mark them parsed (their
    defaults), the workaround grain's maintainers give. A later absl.app.run still parses its argv."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


# --- evaluation: a split whose __getitems__ decodes in a process pool ---

_WORKER: dict[str, Any] = {}  # in each eval pool process: its records and transform


def _init_eval_worker(records: Records, transform: Transform) -> None:
    _WORKER["records"], _WORKER["transform"] = records, transform


def _eval_chunk(indices: np.ndarray) -> dict[str, np.ndarray]:
    return _examples(_WORKER["records"], _WORKER["transform"], indices, None)


class JpegSource:
    """A split of encoded images: `len()`, and `__getitems__(indices)` -> evaluation images
    (Resize(eval_resize) + CenterCrop(crop_size), uint8 (n, S, S, 3)) decoded by `workers` processes.

    Training reads it through `train_batches(split, ...)` (a `JpegBatches` with random-resized crops); `workers` and
    `prefetch` apply to both.
    """

    def __init__(self, records: Records, *, name: str, crop_size: int = 224, eval_resize: int = 256,
                 workers: int = 0, prefetch: int = 2):
        if crop_size <= 0 or eval_resize < crop_size:
            raise DataError(f"{name}: need 0 < crop size ({crop_size}) <= eval resize ({eval_resize})")
        self.records, self.name = records, name
        self.crop_size, self.eval_resize = crop_size, eval_resize
        self.workers, self.prefetch = workers, prefetch
        self.eval_transform = ResizeCenterCrop(eval_resize, crop_size)
        self._pool = None

    def __len__(self) -> int:
        return len(self.records)

    def __getitems__(self, indices) -> dict[str, np.ndarray]:
        indices = np.asarray(indices, np.int64).reshape(-1)
        if not self.workers or len(indices) < 2:
            return _examples(self.records, self.eval_transform, indices, None)
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_eval_worker,
                initargs=(self.records, self.eval_transform))
        chunks = [c for c in np.array_split(indices, min(self.workers, len(indices))) if len(c)]
        parts = list(self._pool.map(_eval_chunk, chunks))
        return {key: np.concatenate([p[key] for p in parts]) for key in ("image", "label", "index")}

    def train_batches(self, global_batch_size: int, seed: int, *, scale_min=0.08, scale_max: float = 1.0,
                      ratio: tuple[float, float] = (3 / 4, 4 / 3), **kwargs) -> JpegBatches:
        """JpegBatches of RandomResizedCrop(crop_size, (scale_min, scale_max), ratio) crops; scale_min may be a
        (num_classes,) array (class-conditional strength). kwargs: start_step, process_index, process_count, and
        workers / prefetch to override the split's."""
        transform = RandomResizedCrop(self.crop_size, scale_min, scale_max, tuple(ratio))
        return JpegBatches(self.records, global_batch_size, seed, transform=transform,
                           **{"workers": self.workers, "prefetch": self.prefetch, **kwargs})

    def close(self) -> None:
        """Stop the evaluation pool (a later __getitems__ starts a new one)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __getstate__(self):  # picklable without its pool
        return {**self.__dict__, "_pool": None}

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def train_batches(split: Source, global_batch_size: int, seed: int, *, scale_min=None, **kwargs):
    """The training batches of a split: `JpegSource` -> `JpegBatches` (random-resized crops decoded in its workers;
    scale_min: the crops' lower scale bound, a float or one per class, default 0.08), any other split ->
    `TrainBatches` (scale_min ignored: in-memory images are augmented on device). kwargs: start_step,
    process_index, process_count (and prefetch for TrainBatches)."""
    if isinstance(split, JpegSource):
        return split.train_batches(global_batch_size, seed, scale_min=0.08 if scale_min is None else scale_min,
                                   **kwargs)
    return TrainBatches(split, global_batch_size, seed, **kwargs)


def image_files(root: Path, extensions: tuple[str, ...]) -> list[str]:
    """The image files under root (recursively, symlinks followed), sorted as torchvision's ImageFolder lists them,
    relative to root."""
    found = []
    for folder, _, names in sorted(os.walk(root, followlinks=True)):
        found += [os.path.relpath(os.path.join(folder, n), root) for n in sorted(names)
                  if n.lower().endswith(extensions)]
    return found
