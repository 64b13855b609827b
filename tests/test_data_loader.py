"""The multi-process JPEG loader (jaxlab.data.loader) and the encoded-image sources (image_folder, tfds_jpeg).

Fixtures: small JPEGs of varied sizes cut from scikit-learn's two sample photos, in an ImageFolder tree of 3
classes (42 train images: 5 steps of 8 per epoch, 2 dropped; 10 val images). Worker processes are spawned
(~1-2 s each start on 2 cores), so the expensive runs are module-scoped and shared between tests.
"""

import io
import json
import os

import chex
import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxlab import data
from jaxlab.config import host_crop_scale
from jaxlab.data import jpeg, loader
from jaxlab.data.pipeline import _epoch_permutation
from jaxlab.errors import DataError
from jaxlab.train import train_and_evaluate
from tests.helpers import tiny_config

CLASSES = ("bird", "cat", "dog")  # folder names; sorted, so labels 0, 1, 2
NUM_TRAIN, NUM_VAL, BATCH, SEED, CROP = 42, 10, 8, 3, 32
STEPS = 8  # crosses the epoch boundary (5 steps per epoch)


def _jpegs(count: int, seed: int) -> list[bytes]:
    """`count` JPEGs of 60-120 px per side (aspect ratios 1:2 to 2:1) cut from sklearn's sample photos."""
    from sklearn.datasets import load_sample_image

    photos = [load_sample_image(name) for name in ("china.jpg", "flower.jpg")]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        photo = photos[i % 2]
        top, left = int(rng.integers(0, photo.shape[0] - 240)), int(rng.integers(0, photo.shape[1] - 240))
        size = (int(rng.integers(60, 121)), int(rng.integers(60, 121)))  # (width, height)
        buffer = io.BytesIO()
        Image.fromarray(photo[top:top + 240, left:left + 240]).resize(size).save(buffer, format="JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """<root>/{train,val}/<class>/<i>.jpg (val with upper-case .JPEG, as ImageNet's)."""
    root = tmp_path_factory.mktemp("image_folder")
    for split, count, seed, suffix in (("train", NUM_TRAIN, 0, "jpg"), ("val", NUM_VAL, 1, "JPEG")):
        for i, encoded in enumerate(_jpegs(count, seed)):
            path = root / split / CLASSES[i % 3] / f"{i:03d}.{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encoded)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return root


def data_config(**fields):
    base = dict(source="image_folder", name="", dir="", path="", train_split="train", eval_split="val",
                image_size=CROP, seed=0, workers=2, prefetch=2, eval_resize=0)
    return ml_collections.ConfigDict({**base, **fields})


@pytest.fixture(scope="module")
def dataset(folder):
    return data.load_dataset(data_config(dir=str(folder)))


def _take(batches, steps: int) -> list[dict]:
    try:
        return [{k: np.array(v) for k, v in next(batches).items()} for _ in range(steps)]
    finally:
        batches.close()


@pytest.fixture(scope="module")
def reference(dataset):
    """STEPS batches from one host, decoded in this process (workers=0, no prefetch)."""
    records = dataset.train.records
    return _take(loader.JpegBatches(records, BATCH, SEED, transform=loader.RandomResizedCrop(CROP), workers=0,
                                    prefetch=0, process_index=0, process_count=1), STEPS)


def _batches(dataset, **kwargs):
    return data.train_batches(dataset.train, BATCH, SEED, process_index=kwargs.pop("process_index", 0),
                              process_count=kwargs.pop("process_count", 1), **kwargs)


def _same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys() == {"image", "label", "index"}
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


# --- (d) the image_folder source ---

def test_image_folder_source_registers_validates_and_loads(folder, dataset, tmp_path):
    assert {"image_folder", "tfds_jpeg"} <= set(data.SOURCES)
    with pytest.raises(DataError, match="no_such_folder"):
        data.check_data_config(data_config(dir=str(tmp_path / "no_such_folder")))
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no folder val/") as e:  # the eval split is missing
        data.load_dataset(data_config(dir=str(tmp_path)))
    assert str(tmp_path) in str(e.value)
    with pytest.raises(DataError, match="no folder .*image_folder"):
        data.check_data_config(data_config(dir=str(tmp_path), eval_split="test"))

    assert dataset.class_names == CLASSES and dataset.num_classes == 3
    assert dataset.image_shape == (CROP, CROP, 3) and dataset.name == folder.name
    assert len(dataset.train) == NUM_TRAIN and len(dataset.test) == NUM_VAL  # notes.txt skipped
    train = dataset.train.records
    assert train.paths[0] == os.path.join("bird", "000.jpg")  # sorted by class, then file, like torchvision
    assert list(train.labels) == sorted(i % 3 for i in range(NUM_TRAIN))
    assert dataset.train.eval_resize == int(CROP / 0.875) and dataset.train.workers == 2

    # A subfolder named config.data.name is found too.
    found = data.load_dataset(data_config(dir=str(folder.parent), name=folder.name, workers=0))
    assert found.class_names == CLASSES and len(found.train) == NUM_TRAIN


def test_eval_batches_decode_in_workers(dataset):
    """eval_batches over a JpegSource: Resize + CenterCrop of every val file, in order, padded and masked."""
    test = dataset.test
    batches = list(data.eval_batches(test, 4))
    test.close()
    images = np.concatenate([b["image"] for b in batches])[:NUM_VAL]
    assert images.dtype == np.uint8 and images.shape == (NUM_VAL, CROP, CROP, 3)
    assert [b["mask"].sum() for b in batches] == [4, 4, 2]
    records = test.records
    for i in range(NUM_VAL):
        expected = jpeg.resize_center_crop(records[i][0], resize=test.eval_resize, crop=CROP, name="x")
        np.testing.assert_array_equal(images[i], expected)
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[:NUM_VAL], records.labels)


# --- (a) sharding over hosts, with workers ---

def test_every_example_once_per_epoch_across_two_hosts(dataset, reference):
    spe = NUM_TRAIN // BATCH
    hosts = [_take(_batches(dataset, process_index=p, process_count=2), STEPS) for p in (0, 1)]
    assert _batches(dataset).steps_per_epoch == spe == 5
    for step in range(STEPS):
        for p, host in enumerate(hosts):
            batch = host[step]
            assert batch["image"].shape == (BATCH // 2, CROP, CROP, 3) and batch["image"].dtype == np.uint8
            assert batch["label"].dtype == np.int32 and batch["index"].dtype == np.int32
            # host p holds the contiguous part p of the one-host global batch, crops included: the per-example
            # randomness depends on (seed, epoch, index) only
            part = slice(p * BATCH // 2, (p + 1) * BATCH // 2)
            for key in ("image", "label", "index"):
                np.testing.assert_array_equal(batch[key], reference[step][key][part])
            np.testing.assert_array_equal(batch["label"], dataset.train.records.labels[batch["index"]])
    for epoch, steps in ((0, range(0, spe)),):
        seen = np.concatenate([hosts[p][s]["index"] for s in steps for p in (0, 1)])
        assert len(seen) == len(set(seen.tolist())) == spe * BATCH  # once each; the last 2 dropped
        np.testing.assert_array_equal(seen, _epoch_permutation(NUM_TRAIN, SEED, epoch)[:spe * BATCH])
    # the same order as TrainBatches over an in-memory split of the same length
    arrays = data.ArraySource(np.zeros((NUM_TRAIN, 1), np.float32), np.zeros(NUM_TRAIN, np.int32))
    trainer = data.TrainBatches(arrays, BATCH, SEED, process_index=0, process_count=1, prefetch=0)
    for step in range(STEPS):
        np.testing.assert_array_equal(next(trainer)["index"], reference[step]["index"])


def test_crop_is_the_examples_own_random_resized_crop(dataset, reference):
    """Example i of epoch e is jpeg.random_resized_crop(..., rng=default_rng((seed, e, i))); epochs differ."""
    records = dataset.train.records
    for step in (0, 6):
        epoch = step // 5
        index = int(reference[step]["index"][0])
        expected = jpeg.random_resized_crop(records[index][0], np.random.default_rng((SEED, epoch, index)),
                                            size=CROP, name="x")
        np.testing.assert_array_equal(reference[step]["image"][0], expected)
    first = {int(i): img for b in reference[:5] for i, img in zip(b["index"], b["image"])}
    second = {int(i): img for b in reference[5:] for i, img in zip(b["index"], b["image"])}
    assert any(not np.array_equal(first[i], second[i]) for i in first.keys() & second.keys())


def test_class_conditional_scale(dataset):
    """scale_min per class: class 1 gets (1.0, 1.0) crops (the whole image, clipped to the ratio range)."""
    transform = loader.RandomResizedCrop(CROP, np.array([0.08, 1.0, 0.08]))
    records = dataset.train.records
    index = int(np.flatnonzero(records.labels == 1)[0])
    encoded, label = records[index]
    whole = jpeg.random_resized_crop(encoded, np.random.default_rng(0), size=CROP, scale=(1.0, 1.0), name="x")
    np.testing.assert_array_equal(transform(encoded, label, index, (SEED, 0, index)), whole)
    with pytest.raises(DataError, match="scale lower bound"):
        loader.RandomResizedCrop(CROP, np.array([0.0, 1.0, 0.5]))


# --- (b) exact resume and (c) worker-count independence, with workers ---

def test_worker_count_does_not_change_the_batches(dataset, reference):
    _same(_take(_batches(dataset, prefetch=3), STEPS), reference)  # 2 workers (the dataset's config)


def test_resume_gives_the_same_batches_with_workers(dataset, reference):
    k = 3
    first = _batches(dataset)
    head = _take(first, k)
    state = json.loads(json.dumps(first.get_state()))  # as the checkpoint stores it
    assert state == {"step": k, "seed": SEED}
    resumed = _batches(dataset)
    resumed.set_state(state)
    _same(head + _take(resumed, STEPS - k), reference)


def test_corrupt_file_is_named(folder, tmp_path):
    for i, encoded in enumerate(_jpegs(4, 2)):
        (tmp_path / "train" / "bird").mkdir(parents=True, exist_ok=True)
        (tmp_path / "train" / "bird" / f"{i}.jpg").write_bytes(encoded[:200] if i == 2 else encoded)
    records = data.FileRecords(str(tmp_path / "train"), tuple(f"bird/{i}.jpg" for i in range(4)),
                               np.zeros(4, np.int32))
    batches = loader.JpegBatches(records, 4, 0, transform=loader.RandomResizedCrop(16), workers=0, prefetch=0)
    with pytest.raises(DataError, match=r"bird/2\.jpg \(example \d+ of the split\): cannot decode"):
        next(batches)


# --- (e) tfds ArrayRecord through SkipDecoding ---

def _write_tfds_dataset(root, name: str, splits: dict[str, list[tuple[bytes, int]]]) -> None:
    """A tfds dataset prepared as array_record, written without TensorFlow: <root>/<name>/1.0.0/."""
    tfds = pytest.importorskip("tensorflow_datasets")
    array_record = pytest.importorskip("array_record.python.array_record_module")
    from tensorflow_datasets.core import example_serializer

    folder = root / name / "1.0.0"
    folder.mkdir(parents=True)
    features = tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                                           "label": tfds.features.ClassLabel(names=list(CLASSES))})
    serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
    template = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
    infos = []
    for split, examples in splits.items():
        writer = array_record.ArrayRecordWriter(str(folder / f"{name}-{split}.array_record-00000-of-00001"),
                                                "group_size:1")
        for encoded, label in examples:
            writer.write(serializer.serialize_example(features.encode_example({"image": io.BytesIO(encoded),
                                                                               "label": label})))
        writer.close()
        infos.append(tfds.core.SplitInfo(name=split, shard_lengths=[len(examples)], num_bytes=0,
                                         filename_template=tfds.core.ShardedFileTemplate(
                                             data_dir=folder, template=template, dataset_name=name, split=split,
                                             filetype_suffix="array_record")))
    tfds.folder_dataset.write_metadata(data_dir=folder, features=features, split_infos=infos,
                                       filename_template=template, check_data=False)


def test_tfds_array_record_through_skip_decoding(dataset, tmp_path):
    train = [dataset.train.records[i] for i in range(16)]
    val = [dataset.test.records[i] for i in range(4)]
    _write_tfds_dataset(tmp_path, "tiny_jpegs", {"train": train, "validation": val})
    ds = data.load_dataset(data_config(source="tfds_jpeg", name="tiny_jpegs", dir=str(tmp_path),
                                       eval_split="validation"))
    assert ds.class_names == CLASSES and ds.image_shape == (CROP, CROP, 3) and len(ds.train) == 16
    records = ds.train.records
    assert isinstance(records, data.TfdsRecords)
    encoded, label = records[5]
    assert encoded[:2] == b"\xff\xd8" and (encoded, label) == train[5]  # the stored JPEG bytes, undecoded

    batches = _take(data.train_batches(ds.train, 8, SEED, process_index=0, process_count=1), 3)  # 2 workers
    in_process = _take(loader.JpegBatches(records, 8, SEED, transform=loader.RandomResizedCrop(CROP), workers=0,
                                          prefetch=0, process_index=0, process_count=1), 3)
    _same(batches, in_process)
    assert batches[0]["image"].shape == (8, CROP, CROP, 3)
    np.testing.assert_array_equal(batches[0]["label"], [train[i][1] for i in batches[0]["index"]])
    ds.test.workers = 0  # decode in this process: one pool start is enough for the file
    evaluated = next(data.eval_batches(ds.test, 4))
    np.testing.assert_array_equal(
        evaluated["image"][1], jpeg.resize_center_crop(val[1][0], resize=ds.test.eval_resize, crop=CROP, name="x"))
    with pytest.raises(DataError, match="tfds"):
        data.load_dataset(data_config(source="tfds_jpeg", name="tiny_jpegs", dir=str(tmp_path), eval_split="nope"))
    # and the trainer runs on it end to end (host crops in 2 workers, evaluation decoded in a pool)
    config = tiny_config(**{"data.source": "tfds_jpeg", "data.name": "tiny_jpegs", "data.dir": str(tmp_path),
                            "data.eval_split": "validation", "data.image_size": CROP, "data.workers": 2,
                            "training.batch_size": 8, "training.num_train_steps": 2, "eval_batch_size": 8})
    result = train_and_evaluate(config, str(tmp_path / "run"))
    assert result["finished"] and result["num_examples"] == 4 and len(result["per_class_accuracy"]) == 3


def _train_config(folder, **overrides):
    config = tiny_config(**{"data.source": "image_folder", "data.dir": str(folder), "data.eval_split": "val",
                            "data.image_size": CROP, "data.workers": 2, "training.batch_size": 8,
                            "training.num_train_steps": 4, "eval_batch_size": 8, "log_every_steps": 1,
                            "checkpoint_every_steps": 2, **overrides})
    config.augment.tables = {"crop_scale": {"default": 0.3, "1": 1.0}}  # class 1 (cat) is never cropped
    config.data.rrc_scale_table = "crop_scale"
    return config


def test_an_image_folder_trains_end_to_end_and_resumes_exactly_with_workers(folder, tmp_path):
    """The trainer on JPEGs decoded and cropped in 2 worker processes, class-conditional crop strength; stopped
    after 2 steps and resumed, it ends with the parameters of an uninterrupted run, bit for bit."""
    config = _train_config(folder)
    full = train_and_evaluate(config, str(tmp_path / "full"))
    assert full["finished"] and full["num_examples"] == NUM_VAL and full["dataset"] == folder.name
    part = train_and_evaluate(config, str(tmp_path / "part"), max_steps=2)
    assert part["step"] == 2 and not part["finished"]
    resumed = train_and_evaluate(config, str(tmp_path / "part"))
    chex.assert_trees_all_equal(jax.device_get(full["state"].params), jax.device_get(resumed["state"].params))


def test_host_crop_scale_reads_the_class_table(folder):
    config = _train_config(folder)
    np.testing.assert_allclose(host_crop_scale(config, 3), [0.3, 1.0, 0.3])
    config.data.rrc_scale_table = ""
    assert host_crop_scale(config, 3) == config.data.rrc_scale
