"""Readers of the upstream file formats: a path in, numpy arrays out.

IDX (MNIST, Fashion-MNIST), the ESL USPS text rows, svmlight pairs, .npz, and JPEG trees
`{train,test}/<class>/*.jpg` (a folder or a tar of one, e.g. the cifar10_jpg tarball); `.gz` files are
read transparently. Pure readers: no config, no caching, no Dataset. Every unreadable, corrupt or
malformed file raises `DataError` naming the file.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from jaxlab.errors import DataError

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
USPS_FILES = ("zip.train", "zip.test")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def read_bytes(path: Path) -> bytes:
    """The bytes of `path`, gunzipped when it ends in .gz."""
    path = Path(path)
    try:
        with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {e} (corrupt or truncated file? download it again)") from None


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX array of unsigned bytes with `ndim` dimensions (magic 0x0000 08 <ndim>)."""
    data = read_bytes(path)
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes([0, 0, 8, ndim]):
        raise DataError(f"{path} is not an IDX file of {ndim}-D unsigned bytes (bad magic number {data[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) != header + math.prod(shape):
        raise DataError(f"{path}: header says shape {shape} ({header + math.prod(shape)} bytes) but the file has "
                        f"{len(data)} bytes (truncated or corrupt; download it again)")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def read_idx_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) uint8 images and (N,) uint8 labels of one MNIST-format split."""
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    return images, labels


def read_usps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """ESL USPS rows `label v1..v256`: (N, 16, 16, 1) float32 pixels in the ESL scaling [-1, 1], (N,) labels."""
    try:
        rows = np.loadtxt(io.StringIO(read_bytes(path).decode()), dtype=np.float32, ndmin=2)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"cannot parse {path} as USPS text (label v1 .. v256 per row): {e}") from None
    if rows.shape[1] != 257:
        raise DataError(f"{path}: rows have {rows.shape[1]} values, expected 257 (label + 16x16 pixels)")
    return rows[:, 1:].reshape(-1, 16, 16, 1), rows[:, 0]


def read_svmlight_pair(train: Path, test: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dense float32 features and raw labels of a svmlight train/test pair (same number of features)."""
    from sklearn.datasets import load_svmlight_files  # sklearn is slow to import; only this reader needs it

    try:  # loading both together gives them the same number of features
        x_train, y_train, x_test, y_test = load_svmlight_files([str(train), str(test)], dtype=np.float32)
    except (ValueError, OSError) as e:
        raise DataError(f"cannot parse svmlight files {train} / {test}: {e}") from None
    return x_train.toarray(), y_train, x_test.toarray(), y_test


def read_npz(path: Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every array of a .npz file (no pickles); `required` names arrays it must hold."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except NPZ_ERRORS as e:
        raise DataError(f"cannot read {path} as .npz: {e}") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks the arrays {', '.join(missing)} (needs {', '.join(required)})")
    return arrays


def is_jpeg_tree(path: Path) -> bool:
    """A folder holding train/ and test/."""
    return (path / "train").is_dir() and (path / "test").is_dir()


def _jpeg_blobs(location: Path) -> list[tuple[str, str, str, bytes]]:
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


def read_jpeg_tree(location: Path) -> dict[str, np.ndarray]:
    """A `{train,test}/<class>/*.jpg` tree (folder or tar): x_train, y_train, x_test, y_test (uint8 RGB,
    labels = index of the sorted class names) and class_names; every image must have the same shape."""
    location = Path(location)
    blobs = _jpeg_blobs(location)
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
