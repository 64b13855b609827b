"""Dataset sources: each loader on tiny files written in the upstream format, and their errors."""

import gzip
import io
import os
import struct
import tarfile
from pathlib import Path

import chex
import ml_collections
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from jaxlab import data
from jaxlab.config import base_config
from jaxlab.data import formats, sources
from jaxlab.errors import ConfigError
from jaxlab.registry import Registry

# The real datasets (optional): $JAXLAB_DATA_DIR, else ../shared/data beside this checkout.
SHARED = Path(os.environ.get("JAXLAB_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")


def config(**fields):
    base = dict(source="digits", name="", dir="", path="", train_split="train", eval_split="test",
                image_size=0, seed=0)
    return ml_collections.ConfigDict({**base, **fields})


def test_digits_shapes_and_classes():
    ds = data.load_dataset(config())
    assert (len(ds.train), len(ds.test)) == (1437, 360)
    assert ds.train.images.shape == (1437, 8, 8, 1) and ds.train.images.dtype == np.uint8
    assert ds.train.labels.dtype == np.int32 and ds.train.images.max() == 255
    assert ds.image_shape == (8, 8, 1) and ds.num_classes == 10
    assert ds.class_names == tuple("0123456789")


def test_digits_split_is_deterministic_and_stratified():
    a, b, c = (data.load_dataset(config(seed=s)) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.test.images, b.test.images)
    assert not np.array_equal(a.test.images, c.test.images)
    test_counts = np.bincount(a.test.labels)
    total = test_counts + np.bincount(a.train.labels)
    np.testing.assert_array_equal(total, np.bincount(load_digits().target))
    assert np.all(np.abs(test_counts - 0.2 * total) <= 1)


# --- MNIST / Fashion-MNIST IDX ---

def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    raw = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path = path.with_name(path.name + ".gz") if compress else path
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def write_mnist(folder: Path, compress: bool) -> dict:
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": np.array([0, 1, 2, 3, 9, 9], np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": np.array([5, 6, 7, 8], np.uint8)}
    for name, array in arrays.items():
        write_idx(folder / name, array, compress)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("source", ["mnist", "fashion_mnist"])
def test_idx_loader(tmp_path, source, compress):
    arrays = write_mnist(tmp_path, compress)
    ds = data.load_dataset(config(source=source, dir=str(tmp_path)))
    assert ds.image_shape == (28, 28, 1) and ds.train.images.dtype == np.uint8 and ds.num_classes == 10
    np.testing.assert_array_equal(ds.train.images[..., 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test.labels, [5, 6, 7, 8])
    assert ds.class_names[0] == ("T-shirt/top" if source == "fashion_mnist" else "0")
    assert ds.class_names[9] == ("Ankle boot" if source == "fashion_mnist" else "9")


def test_idx_missing_file_lists_it(tmp_path):
    write_mnist(tmp_path, True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    for call in (data.check_data_config, data.load_dataset):
        with pytest.raises(data.DataError, match=r"missing t10k-labels-idx1-ubyte\(\.gz\)") as e:
            call(config(source="mnist", dir=str(tmp_path)))
        assert str(tmp_path) in str(e.value) and "config.data.dir" in str(e.value)


@pytest.mark.parametrize("damage", ["truncated_gz", "truncated_raw", "bad_magic", "count_mismatch"])
def test_idx_corrupt_file_names_it(tmp_path, damage):
    write_mnist(tmp_path, compress=damage != "truncated_raw")
    name = "train-images-idx3-ubyte" + ("" if damage == "truncated_raw" else ".gz")
    path = tmp_path / name
    if damage == "truncated_gz":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "truncated_raw":
        path.write_bytes(path.read_bytes()[:-1])
    elif damage == "bad_magic":
        path.write_bytes(gzip.compress(b"\0\0\x08\x02" + gzip.decompress(path.read_bytes())[4:]))
    else:
        write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8), True)
    with pytest.raises(data.DataError, match=str(path)):
        data.load_dataset(config(source="mnist", dir=str(tmp_path)))


# --- USPS (ESL text) ---

def write_usps(path: Path, labels) -> np.ndarray:
    rng = np.random.default_rng(0)
    pixels = np.round(rng.uniform(-1, 1, (len(labels), 256)), 4)
    text = "".join(f"{y:.4f} " + " ".join(f"{v:.4f}" for v in row) + " \n" for y, row in zip(labels, pixels))
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    return pixels


def test_usps_loader(tmp_path):
    pixels = write_usps(tmp_path / "zip.train.gz", [6, 5, 4])
    write_usps(tmp_path / "zip.test", [0, 9])  # uncompressed works too
    ds = data.load_dataset(config(source="usps", dir=str(tmp_path)))
    assert ds.train.images.shape == (3, 16, 16, 1) and ds.train.images.dtype == np.float32
    np.testing.assert_allclose(ds.train.images.reshape(3, 256), pixels, atol=1e-6)  # ESL scaling kept
    np.testing.assert_array_equal(ds.test.labels, [0, 9])
    assert ds.num_classes == 10


def test_usps_ragged_row_names_file(tmp_path):
    write_usps(tmp_path / "zip.train.gz", [6, 5])
    path = tmp_path / "zip.test.gz"
    path.write_bytes(gzip.compress(b"1 " + b"0.5 " * 256 + b"\n2 " + b"0.5 " * 255 + b"\n"))
    with pytest.raises(data.DataError, match=str(path)):
        data.load_dataset(config(source="usps", dir=str(tmp_path)))


# --- CIFAR-10 JPEG tree / tar ---

COLORS = {"airplane": (250, 10, 10), "cat": (10, 250, 10), "truck": (10, 10, 250)}


def write_jpeg_tree(root: Path, per_class=(2, 1)) -> None:
    for split, count in zip(("train", "test"), per_class):
        for name, color in COLORS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (32, 32), color).save(root / split / name / f"{i:04d}.jpg", quality=95)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXLAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def check_cifar(ds):
    assert ds.class_names == ("airplane", "cat", "truck") and ds.num_classes == 3
    assert ds.train.images.shape == (6, 32, 32, 3) and ds.train.images.dtype == np.uint8 and len(ds.test) == 3
    np.testing.assert_array_equal(ds.train.labels, [0, 0, 1, 1, 2, 2])
    colors = np.array(list(COLORS.values()))[ds.train.labels]
    assert np.abs(ds.train.images.mean(axis=(1, 2)) - colors).max() < 3


def test_cifar_folder(tmp_path, cache_dir):
    write_jpeg_tree(tmp_path / "cifar")
    check_cifar(data.load_dataset(config(source="cifar10_jpg", dir=str(tmp_path / "cifar"))))


def test_cifar_tar_and_cache(tmp_path, cache_dir, monkeypatch):
    write_jpeg_tree(tmp_path / "tree")
    (tmp_path / "dl").mkdir()
    tar_path = tmp_path / "dl" / "cifar10_jpg.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(tmp_path / "tree" / "train", "train")
        tar.add(tmp_path / "tree" / "test", "test")
    check_cifar(data.load_dataset(config(source="cifar10_jpg", dir=str(tmp_path / "dl"))))
    assert len(list(cache_dir.glob("cifar10_jpg-*.npz"))) == 1

    def fail(location):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(formats, "read_jpeg_tree", fail)
    check_cifar(data.load_dataset(config(source="cifar10_jpg", path=str(tar_path))))


def test_cifar_truncated_tar_names_it(tmp_path, cache_dir):
    write_jpeg_tree(tmp_path / "tree")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp_path / "tree", "")
    tar_path = tmp_path / "cifar10_jpg.tar.gz"
    tar_path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(data.DataError, match=str(tar_path)):
        data.load_dataset(config(source="cifar10_jpg", path=str(tar_path)))


def test_cifar_missing_and_mismatched(tmp_path, cache_dir):
    with pytest.raises(data.DataError, match="cifar10_jpg.tar.gz") as e:
        data.check_data_config(config(source="cifar10_jpg", dir=str(tmp_path)))
    assert str(tmp_path) in str(e.value)
    write_jpeg_tree(tmp_path / "cifar")
    for image in (tmp_path / "cifar" / "test" / "cat").iterdir():
        image.unlink()
    (tmp_path / "cifar" / "test" / "cat").rmdir()
    with pytest.raises(data.DataError, match="classes"):
        data.load_dataset(config(source="cifar10_jpg", path=str(tmp_path / "cifar")))


def test_cifar_corrupt_jpeg_names_it(tmp_path, cache_dir):
    write_jpeg_tree(tmp_path / "cifar")
    bad = tmp_path / "cifar" / "train" / "cat" / "0001.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(data.DataError, match=str(bad)):
        data.load_dataset(config(source="cifar10_jpg", dir=str(tmp_path / "cifar")))


# --- svmlight ---

def test_svmlight_pair(tmp_path):
    (tmp_path / "a1").write_text("-1 1:1 3:0.5\n+1 2:1\n-1 1:1\n")
    (tmp_path / "a1_test").write_text("+1 5:1\n-1 3:2\n")  # feature 5 appears only in test
    for cfg in (config(source="svmlight", dir=str(tmp_path), name="a1"),
                config(source="svmlight", path=str(tmp_path / "a1"))):
        ds = data.load_dataset(cfg)
        assert ds.image_shape == (5,) and ds.train.images.dtype == np.float32
        np.testing.assert_array_equal(ds.train.images[0], [1, 0, 0.5, 0, 0])
        np.testing.assert_array_equal(ds.test.images[0], [0, 0, 0, 0, 1])
        np.testing.assert_array_equal(ds.train.labels, [0, 1, 0])
        assert ds.class_names == ("-1", "1") and ds.num_classes == 2


def test_svmlight_dot_t_test_file_and_errors(tmp_path):
    (tmp_path / "b").write_text("1 1:1\n3 2:1\n")
    with pytest.raises(data.DataError, match="b_test") as e:
        data.check_data_config(config(source="svmlight", path=str(tmp_path / "b")))
    assert "config.data.path" in str(e.value)
    (tmp_path / "b.t").write_text("2 1:1\n")
    ds = data.load_dataset(config(source="svmlight", path=str(tmp_path / "b")))
    np.testing.assert_array_equal(ds.train.labels, [0, 2])  # labels 1, 2, 3 -> 0, 1, 2
    assert ds.class_names == ("1", "2", "3")
    (tmp_path / "b.t").write_text("2 1:1 garbage\n")
    with pytest.raises(data.DataError, match=str(tmp_path / "b.t")):
        data.load_dataset(config(source="svmlight", path=str(tmp_path / "b")))


# --- npz and from_arrays ---

def test_npz(tmp_path):
    path = tmp_path / "toy.npz"
    np.savez(path, x_train=np.ones((4, 5, 5)), y_train=[0, 1, 0, 1], x_test=np.zeros((2, 5, 5)), y_test=[3, 0])
    ds = data.load_dataset(config(source="npz", path=str(path)))
    assert ds.image_shape == (5, 5, 1) and ds.train.images.dtype == np.float32
    assert ds.num_classes == 4 and ds.name == "toy"
    np.savez(path, x_train=np.ones((4, 3), np.uint8), y_train=[0, 1, 0, 1], x_test=np.ones((2, 3), np.uint8))
    with pytest.raises(data.DataError, match=r"lacks the arrays y_test") as e:
        data.load_dataset(config(source="npz", path=str(path)))
    assert str(path) in str(e.value)
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(data.DataError, match=str(path)):
        data.load_dataset(config(source="npz", path=str(path)))


def test_from_arrays_validates():
    ds = data.from_arrays(np.zeros((3, 4), np.uint8), [0, 1, 2], np.zeros((1, 4), np.uint8), [1])
    assert ds.train.images.dtype == np.uint8 and ds.num_classes == 3 and ds.class_names == ("0", "1", "2")
    batch = ds.train.__getitems__(np.array([2, 0]))
    np.testing.assert_array_equal(batch["label"], [2, 0])
    assert batch["index"].dtype == np.int32
    with pytest.raises(data.DataError, match="shape"):
        data.from_arrays(np.zeros((3, 4)), [0, 1], np.zeros((1, 4)), [1])
    with pytest.raises(data.DataError, match="non-negative integers"):
        data.from_arrays(np.zeros((2, 4)), [0.5, 1], np.zeros((1, 4)), [1])
    with pytest.raises(data.DataError, match="num_classes=2"):
        data.from_arrays(np.zeros((2, 4)), [0, 1], np.zeros((1, 4)), [2], num_classes=2)
    with pytest.raises(data.DataError, match="class names"):
        data.from_arrays(np.zeros((2, 4)), [0, 1], np.zeros((1, 4)), [1], class_names=["a"], num_classes=2)
    with pytest.raises(data.DataError, match="from_arrays"):
        data.load_dataset(config(source="arrays"))


# --- config checks and resizing ---

@pytest.mark.parametrize("fields, field", [
    (dict(source="mnist"), "config.data.dir"),
    (dict(source="usps", dir="/nonexistent/usps"), "config.data.dir"),
    (dict(source="npz"), "config.data.path"),
    (dict(source="npz", path="/nonexistent/x.npz"), "config.data.path"),
    (dict(source="svmlight", dir="."), "config.data.name"),
    (dict(source="tfds"), "config.data.name"),
    (dict(image_size=-1), "config.data.image_size"),
])
def test_check_data_config_names_field(fields, field):
    with pytest.raises(data.DataError, match=field.replace(".", r"\.")) as e:
        data.check_data_config(config(**fields))
    if fields.get("source") == "mnist":
        assert "train-images-idx3-ubyte" in str(e.value) and "http" in str(e.value)


def test_check_data_config_accepts_valid():
    data.check_data_config(config())
    data.check_data_config(config(source="tfds", name="mnist"))


def test_image_size_resizes(tmp_path):
    ds = data.load_dataset(config(image_size=16))
    assert ds.image_shape == (16, 16, 1) and ds.train.images.shape[1:] == (16, 16, 1)
    assert ds.train.images.dtype == np.uint8
    float_image = data.sources.resize_image(np.full((4, 6, 2), 0.25, np.float64), 3)
    assert float_image.shape == (3, 3, 2) and float_image.dtype == np.float32
    np.testing.assert_allclose(float_image, 0.25)
    (tmp_path / "f").write_text("0 1:1\n")
    (tmp_path / "f_test").write_text("1 2:1\n")
    with pytest.raises(data.DataError, match="image_size"):
        data.load_dataset(config(source="svmlight", path=str(tmp_path / "f"), image_size=8))


def test_unknown_source_is_a_config_error_from_the_registry():
    assert isinstance(data.SOURCES, Registry) and data.SOURCES.field == "data.source"
    for name in data.SOURCES:
        entry = data.SOURCES.lookup(name)
        assert isinstance(entry, data.DataSource) and callable(entry.check) and callable(entry.load)
    for call in (data.check_data_config, data.load_dataset):
        with pytest.raises(ConfigError, match=r"config\.data\.source: unknown data source 'imagenet'") as e:
            call(config(source="imagenet"))
        assert e.value.field == "data.source"
        assert all(s in str(e.value) for s in data.SOURCES)


# --- where the files are found: config.data.dir ($JAXLAB_DATA_DIR) or its standard subfolder ---

def test_data_dir_defaults_to_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXLAB_DATA_DIR", str(tmp_path))
    assert base_config().data.dir == str(tmp_path)
    monkeypatch.delenv("JAXLAB_DATA_DIR")
    assert base_config().data.dir == ""


@pytest.mark.parametrize("source", ["mnist", "fashion_mnist"])
def test_idx_found_in_the_standard_subfolder(tmp_path, monkeypatch, source):
    arrays = write_mnist_dir(tmp_path / source)
    monkeypatch.setenv("JAXLAB_DATA_DIR", str(tmp_path))
    cfg = base_config().data
    cfg.source = source
    data.check_data_config(cfg)
    ds = data.load_dataset(cfg)
    chex.assert_shape(ds.train.images, (6, 28, 28, 1))
    chex.assert_trees_all_close(ds.train.images[..., 0], arrays["train-images-idx3-ubyte"])
    chex.assert_trees_all_close(ds.test.labels, np.array([5, 6, 7, 8], np.int32))
    direct = data.load_dataset(config(source=source, dir=str(tmp_path / source)))  # --config.data.dir=.../mnist
    chex.assert_trees_all_close(direct.train.images, ds.train.images)


def write_mnist_dir(folder: Path) -> dict:
    folder.mkdir(parents=True)
    return write_mnist(folder, compress=True)


def test_nothing_found_names_both_places_and_the_fix(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    for call in (data.check_data_config, data.load_dataset):
        with pytest.raises(data.DataError) as e:
            call(config(source="mnist", dir=str(tmp_path)))
        message = str(e.value)
        assert f"in {tmp_path};" in message and f"in {tmp_path / 'mnist'}" in message
        assert "missing train-images-idx3-ubyte(.gz)" in message  # nothing in the root
        assert "missing train-labels-idx1-ubyte(.gz)" in message
        assert "JAXLAB_DATA_DIR" in message and "config.data.dir" in message and "mnist/" in message
    with pytest.raises(data.DataError, match="no folder") as e:
        data.check_data_config(config(source="usps", dir=str(tmp_path)))
    assert str(tmp_path / "usps") in str(e.value) and "JAXLAB_DATA_DIR" in str(e.value)
    with pytest.raises(data.DataError, match="JAXLAB_DATA_DIR"):
        data.check_data_config(config(source="usps"))


def test_other_sources_find_their_subfolder(tmp_path, cache_dir):
    (tmp_path / "usps").mkdir()
    pixels = write_usps(tmp_path / "usps" / "zip.train.gz", [6, 5, 4])
    write_usps(tmp_path / "usps" / "zip.test.gz", [0, 9])
    usps = data.load_dataset(config(source="usps", dir=str(tmp_path)))
    chex.assert_trees_all_close(usps.train.images.reshape(3, 256), pixels.astype(np.float32), atol=1e-6)

    (tmp_path / "a7a").mkdir()
    (tmp_path / "a7a" / "a7a").write_text("-1 1:1\n+1 2:1\n")
    (tmp_path / "a7a" / "a7a.t").write_text("+1 1:1\n")
    a7a = data.load_dataset(config(source="svmlight", name="a7a", dir=str(tmp_path)))
    chex.assert_shape(a7a.train.images, (2, 2))
    chex.assert_trees_all_close(a7a.test.labels, np.array([1], np.int32))

    write_jpeg_tree(tmp_path / "tree")
    (tmp_path / "cifar10_jpg").mkdir()
    with tarfile.open(tmp_path / "cifar10_jpg" / "cifar10_jpg.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "tree" / "train", "train")
        tar.add(tmp_path / "tree" / "test", "test")
    check_cifar(data.load_dataset(config(source="cifar10_jpg", dir=str(tmp_path))))
    # a relative data.path is taken relative to data.dir
    check_cifar(data.load_dataset(config(source="cifar10_jpg", dir=str(tmp_path),
                                         path="cifar10_jpg/cifar10_jpg.tar.gz")))


def test_relative_npz_path_under_data_dir(tmp_path):
    np.savez(tmp_path / "toy.npz", x_train=np.ones((4, 3)), y_train=[0, 1, 0, 1], x_test=np.zeros((2, 3)),
             y_test=[1, 0])
    ds = data.load_dataset(config(source="npz", dir=str(tmp_path), path="toy.npz"))
    chex.assert_shape([ds.train.images, ds.test.images], [(4, 3), (2, 3)])
    with pytest.raises(data.DataError, match="config.data.path"):
        data.check_data_config(config(source="npz", dir=str(tmp_path), path="other.npz"))


def test_tfds_data_dir_only_where_it_holds_the_dataset(tmp_path):
    assert sources._tfds_data_dir(config(source="tfds", name="mnist", dir=str(tmp_path))) is None
    (tmp_path / "mnist").mkdir()
    assert sources._tfds_data_dir(config(source="tfds", name="mnist:3.0.1", dir=str(tmp_path))) == str(tmp_path)
    assert sources._tfds_data_dir(config(source="tfds", name="mnist")) is None


def test_all_examples():
    ds = data.from_arrays(np.arange(12, dtype=np.float32).reshape(3, 4), [0, 1, 2], np.zeros((1, 4)), [1])
    examples = data.all_examples(ds.train)
    chex.assert_shape([examples["image"], examples["label"], examples["index"]], [(3, 4), (3,), (3,)])
    chex.assert_trees_all_close(examples["image"], ds.train.images)
    chex.assert_trees_all_close(examples["index"], np.arange(3, dtype=np.int32))


# --- tfds ---

def test_tfds_mock_data_source():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        ds = data.load_dataset(config(source="tfds", name="mnist"))
        assert isinstance(ds.train, data.TfdsSource) and len(ds.train) == 12
        assert ds.num_classes == 10 and ds.image_shape == (28, 28, 1) and ds.class_names[:2] == ("0", "1")
        batch = ds.train.__getitems__(np.array([3, 0, 7]))
        assert batch["image"].shape == (3, 28, 28, 1) and batch["image"].dtype == np.uint8
        assert batch["label"].dtype == np.int32 and batch["label"].max() < 10
        np.testing.assert_array_equal(batch["index"], [3, 0, 7])
        np.testing.assert_array_equal(ds.train.__getitems__(np.array([0]))["image"][0], batch["image"][1])

        resized = data.load_dataset(config(source="tfds", name="mnist", image_size=14))
        assert resized.image_shape == (14, 14, 1)
        assert resized.test.__getitems__(np.array([1, 2]))["image"].shape == (2, 14, 14, 1)
        batches = data.TrainBatches(ds.train, 4, seed=0, prefetch=1)
        assert next(batches)["image"].shape == (4, 28, 28, 1)
        batches.close()


def test_tfds_variable_size_needs_image_size():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(data.DataError, match="image_size"):
            data.load_dataset(config(source="tfds", name="imagenet2012", eval_split="validation"))
        ds = data.load_dataset(config(source="tfds", name="imagenet2012", eval_split="validation", image_size=24))
        assert ds.num_classes == 1000 and ds.image_shape == (24, 24, 3)
        assert ds.test.__getitems__(np.arange(4))["image"].shape == (4, 24, 24, 3)


def test_tfds_errors(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(data.DataError, match="unknown dataset"):
        data.load_dataset(config(source="tfds", name="no_such_dataset_xyz"))
    try:
        import tensorflow  # noqa: F401
        pytest.skip("with TensorFlow installed the fallback tfds.load would try to download")
    except ImportError:
        pass
    with pytest.raises(data.DataError, match="array_record") as e:
        data.load_dataset(config(source="tfds", name="mnist", dir=str(tmp_path)))
    assert str(tmp_path) in str(e.value) and "tfds build mnist" in str(e.value)


# --- the real datasets, in $JAXLAB_DATA_DIR or ../shared/data (standard layout: mnist/, usps/, ...) ---

needs_shared = pytest.mark.skipif(not (SHARED / "mnist").is_dir(),
                                  reason="real datasets not present (set JAXLAB_DATA_DIR)")


@needs_shared
@pytest.mark.parametrize("fields, sizes, train_counts", [
    (dict(source="mnist", dir="mnist"), (60000, 10000),
     [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]),
    (dict(source="fashion_mnist", dir="fashion_mnist"), (60000, 10000), [6000] * 10),
    (dict(source="usps", dir="usps"), (7291, 2007), [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644]),
    (dict(source="svmlight", dir="a7a", name="a7a"), (16100, 16461), [12182, 3918]),
    (dict(source="cifar10_jpg", dir="cifar10_jpg"), (50000, 10000), [5000] * 10),
    # The JAXLAB_DATA_DIR way: the root folder; each source finds its own subfolder.
    (dict(source="usps", dir=""), (7291, 2007), [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644]),
    (dict(source="svmlight", dir="", name="a7a"), (16100, 16461), [12182, 3918]),
])
def test_real_dataset(fields, sizes, train_counts):
    fields["dir"] = str(SHARED / fields["dir"])
    ds = data.load_dataset(config(**fields))
    assert (len(ds.train), len(ds.test)) == sizes
    np.testing.assert_array_equal(np.bincount(ds.train.labels), train_counts)
    if fields["source"] == "svmlight":
        assert ds.image_shape == (123,)
    if fields["source"] == "cifar10_jpg":
        assert ds.class_names[:3] == ("airplane", "automobile", "bird") and ds.image_shape == (32, 32, 3)
    if fields["source"] == "fashion_mnist":
        np.testing.assert_array_equal(ds.test.labels[:10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7])


# --- data checked once at load: labels in [0, K), finite pixels/features ---

def _arrays(**changes):
    arrays = dict(x_train=np.random.default_rng(0).random((6, 4, 4)).astype(np.float32),
                  y_train=np.array([0, 1, 2, 0, 1, 2]), x_test=np.zeros((3, 4, 4), np.float32),
                  y_test=np.array([2, 1, 0]))
    return {**arrays, **changes}


@pytest.mark.parametrize("changes, num_classes, message", [
    (dict(y_train=np.array([0, 1, 2, 10, 1, 11])), 10,
     r"train split: 2 of its 6 labels are outside \[0, 10\) \(e\.g\. 10"),
    (dict(y_test=np.array([2, 3, 0])), 3, r"test split: 1 of its 3 labels are outside \[0, 3\) \(e\.g\. 3"),
    (dict(y_train=np.array([0, -1, 2, 0, -3, 2])), None,
     r"train split: 2 of its 6 labels are negative \(e\.g\. -1\)"),
    (dict(y_test=np.array([2, -1, 0])), 3, r"test split: 1 of its 3 labels are negative \(e\.g\. -1\)"),
    (dict(y_train=np.array([0, 1, 2.5, 0, 1, 2])), None,
     r"train split: 1 of its 6 labels are not integers \(e\.g\. 2\.5"),
    (dict(y_train=np.array([0, 1, np.nan, 0, 1, 2])), None, r"train split: 1 of its 6 labels are not integers"),
    (dict(y_test=np.array(["a", "b", "c"])), None, r"test split: labels must be integers .*dtype <U1"),
])
def test_from_arrays_rejects_bad_labels(changes, num_classes, message):
    a = _arrays(**changes)
    with pytest.raises(data.DataError, match=message) as e:
        data.from_arrays(a["x_train"], a["y_train"], a["x_test"], a["y_test"], name="toy", num_classes=num_classes)
    assert "dataset 'toy'" in str(e.value)


@pytest.mark.parametrize("split, bad, count", [("train", np.nan, 1), ("test", np.inf, 1), ("train", -np.inf, 1)])
def test_from_arrays_rejects_non_finite_pixels(split, bad, count):
    a = _arrays()
    a[f"x_{split}"][1, 2, 3] = bad
    with pytest.raises(data.DataError, match=rf"'toy', {split} split: {count} of its \d+ pixel/feature values are not "
                                             r"finite"):
        data.from_arrays(a["x_train"], a["y_train"], a["x_test"], a["y_test"], name="toy")
    features = np.ones((4, 3), np.float64)
    features[:, 1] = np.nan  # features too, counted in every example
    with pytest.raises(data.DataError, match=r"train split: 4 of its 12 pixel/feature values are not finite"):
        data.from_arrays(features, [0, 1, 0, 1], np.ones((1, 3)), [1])


def test_from_arrays_keeps_valid_data_and_inference():
    a = _arrays(y_train=np.array([0., 1., 2., 0., 1., 2.]))  # whole-number floats (text formats) are labels
    ds = data.from_arrays(a["x_train"], a["y_train"], a["x_test"], a["y_test"])
    assert ds.num_classes == 3 and ds.train.labels.dtype == np.int32
    chex.assert_trees_all_equal(ds.train.labels, np.array([0, 1, 2, 0, 1, 2], np.int32))
    chex.assert_shape(ds.train.images, (6, 4, 4, 1))
    big = np.full((5, 2), 255, np.uint8)  # uint8 pixels need no scan
    chex.assert_trees_all_equal(data.from_arrays(big, [0] * 5, big, [0] * 5).train.images, big)


def test_count_nonfinite_in_chunks(monkeypatch):
    from jaxlab.data import dataset
    values = np.zeros(1000, np.float32)
    values[[3, 500, 999]] = [np.nan, np.inf, -np.inf]
    monkeypatch.setattr(dataset, "CHUNK_VALUES", 7)
    assert dataset.count_nonfinite(values) == 3
    assert dataset.count_nonfinite(np.zeros(10, np.float32)) == 0
    assert dataset.count_nonfinite(np.full(4, 3e38, np.float32)) == 0  # large but finite
    assert dataset.count_nonfinite(np.arange(5)) == 0


def test_npz_source_checks_labels_and_pixels(tmp_path):
    path = tmp_path / "toy.npz"
    a = _arrays(y_train=np.array([0, 1, 2, 10, 1, 2]))
    np.savez(path, **a, class_names=np.array(["a", "b", "c"]))  # 3 classes: the 10 is a stray label
    with pytest.raises(data.DataError, match=r"'toy', train split: 1 of its 6 labels are outside \[0, 3\) \(e\.g\. 10"):
        data.load_dataset(config(source="npz", path=str(path)))
    np.savez(path, **a, num_classes=np.array(10))  # a stored class count, the same check
    with pytest.raises(data.DataError, match=r"train split: 1 of its 6 labels are outside \[0, 10\)"):
        data.load_dataset(config(source="npz", path=str(path)))
    np.savez(path, **_arrays(y_test=np.array([2, -1, 0])))
    with pytest.raises(data.DataError, match=r"'toy', test split: 1 of its 3 labels are negative \(e\.g\. -1\)"):
        data.load_dataset(config(source="npz", path=str(path)))
    a = _arrays()
    a["x_train"][4, 0, 0] = np.nan
    np.savez(path, **a)
    with pytest.raises(data.DataError, match=r"'toy', train split: 1 of its 96 pixel/feature values are not finite"):
        data.load_dataset(config(source="npz", path=str(path)))
    np.savez(path, **_arrays(), class_names=np.array(["a", "b", "c", "d"]))
    ds = data.load_dataset(config(source="npz", path=str(path)))
    assert ds.num_classes == 4 and ds.class_names == ("a", "b", "c", "d")
    np.savez(path, **_arrays(), num_classes=np.array([1.5]))
    with pytest.raises(data.DataError, match="num_classes must hold one positive integer"):
        data.load_dataset(config(source="npz", path=str(path)))
