"""The in-memory dataset types: `Source` (what the batch pipeline reads), `ArraySource`, `Dataset`, `from_arrays`.

A source supports `len(source)` and `source.__getitems__(indices)` -> {"image", "label", "index"} arrays, which
is all the batch pipeline needs; `all_examples(source)` reads a whole split at once.

In-memory data is checked once, when it is built (`ArraySource`, `from_arrays`; every file source goes through
`from_arrays`): labels must be integers in [0, num_classes) and float pixels or features finite, else a
DataError names the split, how many values are wrong and an example. Sources that decode records lazily (tfds)
are not scanned.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
from PIL import Image

from jaxlab.errors import DataError


class Source(Protocol):
    """What the batch pipeline reads: a length and batched random access."""

    def __len__(self) -> int: ...

    def __getitems__(self, indices: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclasses.dataclass(frozen=True)
class ArraySource:
    """One split held in memory.

    images: (N, *shape) uint8 (pixels 0..255) or float32 (features / already-scaled values);
    labels: (N,) int32. Other image dtypes are converted to float32, integer-valued labels to int32.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        images, labels = np.asarray(self.images), np.asarray(self.labels)
        if images.dtype != np.uint8:
            try:
                images = images.astype(np.float32)
            except (TypeError, ValueError):
                raise DataError(f"images must be numbers, got dtype {images.dtype}") from None
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"labels must have shape ({len(images)},) to match images {images.shape}, "
                            f"got {labels.shape}")
        nonfinite = count_nonfinite(images)
        if nonfinite:
            raise DataError(f"{nonfinite} of its {images.size} pixel/feature values are not finite (NaN or inf); "
                            "clean or drop those examples")
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", checked_labels(labels))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        indices = np.asarray(indices)
        return {"image": self.images[indices], "label": self.labels[indices], "index": indices.astype(np.int32)}


CHUNK_VALUES = 1 << 24  # values per np.isfinite pass: the scan's temporary stays at 16 MB


def count_nonfinite(values: np.ndarray) -> int:
    """How many values are NaN or +-inf (0 for integer arrays): a sum first (finite: none), then counted in chunks
    of CHUNK_VALUES values."""
    if not np.issubdtype(values.dtype, np.inexact) or values.size == 0:
        return 0
    flat = values.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(flat.sum(dtype=np.float64)):  # one pass, no temporary: a NaN or inf makes the sum non-finite
            return 0
    return int(sum(np.count_nonzero(~np.isfinite(flat[i:i + CHUNK_VALUES]))
                   for i in range(0, flat.size, CHUNK_VALUES)))


def checked_labels(labels: np.ndarray) -> np.ndarray:
    """(N,) labels as int32 class indices; a DataError (count and example) for non-integer or negative ones.

    Integer dtypes, bools, and floats holding whole numbers (text formats such as USPS) are accepted.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biuf":
        raise DataError(f"labels must be integers (class indices), got dtype {labels.dtype}")
    if labels.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~(np.isfinite(labels) & (labels == np.round(labels)))
        if bad.any():
            raise DataError(f"{np.count_nonzero(bad)} of its {labels.size} labels are not integers (e.g. "
                            f"{labels[bad][0].item()!r}); labels must be non-negative integers (class indices)")
    if labels.size:
        negative = labels < 0
        if negative.any():
            raise DataError(f"{np.count_nonzero(negative)} of its {labels.size} labels are negative (e.g. "
                            f"{labels[negative][0].item()}); labels must be non-negative integers (class indices)")
        if labels.max() > np.iinfo(np.int32).max:
            raise DataError(f"label {labels.max()} does not fit int32; labels must be class indices 0..K-1")
    return labels.astype(np.int32)


def check_label_range(labels: np.ndarray, num_classes: int) -> None:
    """A DataError (count and example) for labels >= num_classes (labels are already checked >= 0)."""
    outside = labels >= num_classes
    if outside.any():
        raise DataError(f"{np.count_nonzero(outside)} of its {labels.size} labels are outside [0, {num_classes}) (e.g. "
                        f"{labels[outside][0].item()}; num_classes={num_classes})")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A train and a test split with their class metadata."""

    name: str
    train: Source
    test: Source
    num_classes: int
    image_shape: tuple[int, ...]  # per example, e.g. (28, 28, 1) or (123,) for feature vectors
    class_names: tuple[str, ...]
    # Optional metadata for the class-level analysis (jaxlab.classwise):
    eval_label_sets: np.ndarray | None = None  # (len(test), num_classes) bool multi-labels (ReaL-style); a row
    #                                            of all False means "no usable multi-label" (skipped)
    class_groups: tuple[int, ...] | None = None  # a group id per class (e.g. CIFAR-100 superclasses)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (PIL) resize of one (H, W, C) image to (size, size, C); uint8 stays uint8, else float32."""
    if image.shape[:2] == (size, size):
        return image
    if image.dtype != np.uint8:
        image = image.astype(np.float32)  # PIL mode "F"
    channels = [Image.fromarray(image[..., c]).resize((size, size), Image.Resampling.BILINEAR)
                for c in range(image.shape[-1])]
    return np.stack([np.asarray(c) for c in channels], axis=-1)


def from_arrays(x_train, y_train, x_test, y_test, *, name: str = "arrays", class_names=None,
                num_classes: int | None = None, eval_label_sets=None, class_groups=None) -> Dataset:
    """A Dataset from in-memory arrays (notebooks, tests, npz files).

    (N, H, W) images get a channel axis; num_classes defaults to len(class_names), else max label + 1 (give
    it whenever it is known: only then is a label >= K caught instead of silently adding a class).
    Both splits are checked (DataError naming the split, the count and an example): integer labels in
    [0, num_classes), finite pixels/features.
    eval_label_sets: optional (len(y_test), num_classes) bool multi-labels of the test split;
    class_groups: optional group id per class (see Dataset).
    """
    def split(x, y, split_name):
        x = np.asarray(x)
        if len(x) == 0:
            raise DataError(f"dataset {name!r}: the {split_name} split is empty; check the data source's files or "
                            "the split names (config.data.train_split / eval_split)")
        try:
            return ArraySource(x[..., None] if x.ndim == 3 else x, y)
        except DataError as e:
            raise DataError(f"dataset {name!r}, {split_name} split: {e}") from None

    train, test = split(x_train, y_train, "train"), split(x_test, y_test, "test")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(f"dataset {name!r}: train examples have shape {train.images.shape[1:]} "
                        f"but test examples {test.images.shape[1:]}")
    if num_classes is None:
        labels = np.concatenate([train.labels, test.labels])
        num_classes = len(class_names) if class_names is not None else int(labels.max(initial=-1)) + 1
    class_names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(num_classes))
    if len(class_names) != num_classes:
        raise DataError(f"dataset {name!r}: {len(class_names)} class names for {num_classes} classes")
    for split_name, source in (("train", train), ("test", test)):
        try:
            check_label_range(source.labels, num_classes)
        except DataError as e:
            raise DataError(f"dataset {name!r}, {split_name} split: {e}") from None
    if eval_label_sets is not None:
        eval_label_sets = np.asarray(eval_label_sets, dtype=bool)
        if eval_label_sets.shape != (len(test), num_classes):
            raise DataError(f"dataset {name!r}: eval_label_sets has shape {eval_label_sets.shape}, expected "
                            f"({len(test)}, {num_classes}) (one row of class flags per test example)")
    if class_groups is not None:
        class_groups = tuple(int(g) for g in class_groups)
        if len(class_groups) != num_classes:
            raise DataError(f"dataset {name!r}: {len(class_groups)} class groups for {num_classes} classes")
    return Dataset(name, train, test, num_classes, train.images.shape[1:], class_names, eval_label_sets,
                   class_groups)


def all_examples(source: Source) -> dict[str, np.ndarray]:
    """Every example of a split, in order: {"image": (N, ...), "label": (N,), "index": (N,)} arrays."""
    return source.__getitems__(np.arange(len(source)))
