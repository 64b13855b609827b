"""The in-memory dataset types: `Source` (what the batch pipeline reads), `ArraySource`, `Dataset`, `from_arrays`.

A source supports `len(source)` and `source.__getitems__(indices)` -> {"image", "label", "index"} arrays, which
is all the batch pipeline needs; `all_examples(source)` reads a whole split at once.
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
            images = images.astype(np.float32)
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"labels must have shape ({len(images)},) to match images {images.shape}, "
                            f"got {labels.shape}")
        int_labels = labels.astype(np.int32)
        if not np.array_equal(int_labels, labels) or (len(labels) and int_labels.min() < 0):
            raise DataError("labels must be non-negative integers (class indices)")
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", int_labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        indices = np.asarray(indices)
        return {"image": self.images[indices], "label": self.labels[indices], "index": indices.astype(np.int32)}


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

    (N, H, W) images get a channel axis; num_classes defaults to len(class_names), else max label + 1.
    eval_label_sets: optional (len(y_test), num_classes) bool multi-labels of the test split;
    class_groups: optional group id per class (see Dataset).
    """
    def split(x, y):
        x = np.asarray(x)
        return ArraySource(x[..., None] if x.ndim == 3 else x, y)

    try:
        train, test = split(x_train, y_train), split(x_test, y_test)
    except DataError as e:
        raise DataError(f"dataset {name!r}: {e}") from None
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
        if len(source) and source.labels.max() >= num_classes:
            raise DataError(f"dataset {name!r}: {split_name} label {source.labels.max()} >= num_classes={num_classes}")
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
