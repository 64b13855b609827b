"""jaxlab.data.synthetic: the planted 10-class dataset (no training here)."""

import chex
import numpy as np
import pytest

from jaxlab import data
from jaxlab.data import synthetic
from jaxlab.data.synthetic import (AMBIGUOUS_PAIR, COOCCURRING, FINE_GRAINED_PAIR, SHAPE_CLASSES, TEXTURE_CLASSES,
                                   make_planted_dataset, tag_box)
from jaxlab.config import base_config

SMALL = dict(num_train_per_class=20, num_test_per_class=12)


@pytest.fixture(scope="module", params=[16, 32])
def dataset(request):
    return make_planted_dataset(image_size=request.param, seed=3, **SMALL)


def test_constants_cover_ten_distinct_classes():
    planted = [*AMBIGUOUS_PAIR, *COOCCURRING, *FINE_GRAINED_PAIR, *SHAPE_CLASSES, *TEXTURE_CLASSES]
    assert sorted(planted) == list(range(synthetic.NUM_CLASSES))
    assert len(synthetic.CLASS_NAMES) == len(synthetic.CLASS_KINDS) == len(synthetic.CLASS_GROUPS) == 10


def test_deterministic_from_the_seed():
    a, b = (make_planted_dataset(image_size=16, seed=7, **SMALL) for _ in range(2))
    c = make_planted_dataset(image_size=16, seed=8, **SMALL)
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(a, split).images, getattr(b, split).images)
        np.testing.assert_array_equal(getattr(a, split).labels, getattr(b, split).labels)
        assert not np.array_equal(getattr(a, split).images, getattr(c, split).images)
    np.testing.assert_array_equal(a.eval_label_sets, b.eval_label_sets)


def test_shapes_dtypes_and_class_counts(dataset):
    size = dataset.image_shape[0]
    assert dataset.name == "synthetic" and dataset.num_classes == 10
    assert dataset.image_shape == (size, size, 3)
    assert dataset.class_names == synthetic.CLASS_NAMES
    assert dataset.class_groups == synthetic.CLASS_GROUPS
    for split, per_class in ((dataset.train, SMALL["num_train_per_class"]),
                             (dataset.test, SMALL["num_test_per_class"])):
        assert split.images.dtype == np.uint8 and split.images.shape == (10 * per_class, size, size, 3)
        np.testing.assert_array_equal(np.bincount(split.labels, minlength=10), np.full(10, per_class))
        assert 0 < split.images.std()  # not blank
    assert dataset.eval_label_sets.shape == (len(dataset.test), 10) and dataset.eval_label_sets.dtype == bool


def _colabel(dataset):
    labels, sets = dataset.test.labels, dataset.eval_label_sets
    return np.stack([sets[labels == k].mean(axis=0) for k in range(10)])  # P[k, l]


def test_label_sets_encode_the_planted_structure(dataset):
    labels, sets = dataset.test.labels, dataset.eval_label_sets
    assert sets[np.arange(len(labels)), labels].all()  # every set contains the own label
    colabel = _colabel(dataset)
    a, b = AMBIGUOUS_PAIR
    c, d = COOCCURRING
    e, f = FINE_GRAINED_PAIR
    assert colabel[a, b] == colabel[b, a] == 1.0  # ambiguous: symmetric
    assert colabel[c, d] == 1.0 and colabel[d, c] == 0.0  # co-occurring: one way round
    assert colabel[e, f] == colabel[f, e] == 0.0  # fine-grained: only the own class
    off = colabel - np.eye(10)
    off[a, b] = off[b, a] = off[c, d] = 0.0
    assert not off.any()  # no other co-labels
    groups = dataset.class_groups
    assert groups[a] == groups[b] and groups[e] == groups[f]
    others = [k for k in range(10) if k not in (a, b, e, f)]
    assert len({groups[k] for k in others}) == len(others)
    assert not {groups[k] for k in others} & {groups[a], groups[e]}


def test_categories_recovered_by_the_classwise_rules(dataset):
    categories = pytest.importorskip("jaxlab.classwise.categories")
    colabel = categories.colabel_matrix(dataset.test.labels, dataset.eval_label_sets, 10)
    groups = dataset.class_groups
    assert categories.pair_category(*AMBIGUOUS_PAIR, colabel=colabel, groups=groups) == categories.AMBIGUOUS
    assert categories.pair_category(*COOCCURRING, colabel=colabel, groups=groups) == categories.COOCCURRING
    assert categories.pair_category(*FINE_GRAINED_PAIR, colabel=colabel, groups=groups) == categories.FINE_GRAINED
    assert categories.pair_category(*SHAPE_CLASSES, colabel=colabel, groups=groups) == categories.OTHER


def _tag_contrast(images: np.ndarray, size: int) -> np.ndarray:
    """Per image: mean |tag box - the background ring just around it| (pixel units)."""
    r0, r1, c0, c1 = tag_box(size)
    x = images.astype(np.float32)
    inside = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
    ring = x[:, max(r0 - 1, 0):r1 + 1, c0 - 2:c1 + 2].sum(axis=(1, 2))
    ring_n = (r1 + 1 - max(r0 - 1, 0)) * (c1 - c0 + 4) - (r1 - r0) * (c1 - c0)
    around = (ring - x[:, r0:r1, c0:c1].sum(axis=(1, 2))) / ring_n
    return np.abs(inside - around).mean(axis=-1)


def test_fine_grained_tag_present_in_f_and_absent_in_e(dataset):
    size = dataset.image_shape[0]
    r0, r1, c0, c1 = tag_box(size)
    assert 0 < r0 < r1 <= 0.25 * size and 0 < c0 < c1 < size  # a small box near the top border
    e, f = FINE_GRAINED_PAIR
    for split in (dataset.train, dataset.test):
        contrast = _tag_contrast(split.images, size)
        is_f = split.labels == f
        assert (contrast[is_f] > 40).all(), np.sort(contrast[is_f])[:5]
        assert contrast[split.labels == e].max() < 25
        plain = ~is_f & ~np.isin(split.labels, TEXTURE_CLASSES)  # object classes: the band is background
        assert (contrast[plain] < 25).all(), np.sort(contrast[plain])[-5:]


def test_texture_classes_fill_the_image_and_differ_in_colour(dataset):
    x, y = dataset.train.images.astype(np.float32), dataset.train.labels
    means = [x[y == k].mean(axis=(0, 1, 2)) for k in TEXTURE_CLASSES]
    assert np.abs(means[0] - means[1]).max() > 80  # red/yellow stripes vs blue/green dots
    for k in TEXTURE_CLASSES:  # the same colours in every quadrant: any crop keeps them
        h = x.shape[1] // 2
        quads = [x[y == k][:, i:i + h, j:j + h].mean(axis=(0, 1, 2)) for i in (0, h) for j in (0, h)]
        assert np.ptp(np.stack(quads), axis=0).max() < 20


def test_rejects_too_small_images():
    with pytest.raises(ValueError, match="image_size"):
        make_planted_dataset(image_size=8, **SMALL)


def test_synthetic_source_loads_through_the_config():
    config = base_config()
    config.data.source = "synthetic"
    config.data.seed = 5
    config.data.image_size = 16
    assert "synthetic" in data.SOURCES
    data.check_data_config(config.data)
    loaded = data.load_dataset(config.data)
    direct = make_planted_dataset(image_size=16, seed=5)
    assert loaded.image_shape == (16, 16, 3) and loaded.num_classes == 10
    chex.assert_shape(loaded.train.images, (5000, 16, 16, 3))
    chex.assert_trees_all_close(loaded.train.images, direct.train.images)
    chex.assert_trees_all_close(loaded.test.labels, direct.test.labels)
    chex.assert_trees_all_close(loaded.eval_label_sets, direct.eval_label_sets)
    assert loaded.class_groups == synthetic.CLASS_GROUPS
