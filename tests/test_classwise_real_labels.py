"""ImageNet ReaL label structure (jaxlab.classwise.real_labels) against a hand-made 12-image, 4-class fixture."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import chex
import numpy as np
import pytest

from jaxlab.classwise import categories, real_labels

REPO = Path(__file__).resolve().parents[1]
# The real ReaL file (optional): $JAXLAB_DATA_DIR/imagenet_real/real.json, else ../shared/data beside this checkout.
REAL_FILE = Path(os.environ.get("JAXLAB_DATA_DIR") or REPO.parent / "shared" / "data") / "imagenet_real" / "real.json"

# Classes 0 "alpha" / 1 "beta": two names for one concept (co-labelled both ways -> ambiguous).
# Classes 2 "cup" / 3 "saucer": a cup image shows the saucer, never the reverse (-> co-occurring).
WNIDS = ("n00000010", "n00000020", "n00000030", "n00000040")
NAMES = ("alpha", "beta", "cup", "saucer")
LABELS = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
REAL = [[0, 1], [0], [1], [0, 1], [1], [],          # image 2: original label 0 is NOT in its set; 5 empty
        [2, 3], [2, 3], [2], [3], [3], []]          # image 11 empty
# usable counts n = [3, 2, 3, 2]; P[0,1] = 2/3 (images 0, 2), P[1,0] = 1/2 (image 3),
# P[2,3] = 2/3 (images 6, 7), P[3,2] = 0; diagonal P[0,0] = 2/3, the others 1.
EXPECTED_P = np.array([[2 / 3, 2 / 3, 0, 0],
                       [1 / 2, 1, 0, 0],
                       [0, 0, 1, 2 / 3],
                       [0, 0, 0, 1]])


@pytest.fixture
def fixture_files(tmp_path):
    (tmp_path / "real.json").write_text(json.dumps(REAL))
    (tmp_path / "labels.txt").write_text("\n".join(WNIDS) + "\n")
    (tmp_path / "validation_labels.txt").write_text("\n".join(WNIDS[y] for y in LABELS) + "\n")
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n")
    return tmp_path


def _sets():
    return real_labels.label_sets_matrix(REAL, num_classes=4)


def test_load_and_label_sets_matrix(fixture_files):
    real = real_labels.load_real_json(fixture_files / "real.json")
    assert real == REAL
    sets = real_labels.label_sets_matrix(real, num_classes=4)
    assert sets.dtype == bool and sets.shape == (12, 4)
    np.testing.assert_array_equal(sets[0], [True, True, False, False])
    np.testing.assert_array_equal(sets[2], [False, True, False, False])
    assert not sets[5].any() and not sets[11].any()  # empty lists -> all-False (unusable) rows
    assert sets.sum() == 14
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        real_labels.label_sets_matrix([[0], [4]], num_classes=4)


@pytest.mark.parametrize("content", ['{"a": [1]}', "[[1, 2], 3]", '[[1, "x"]]', "[[1, -2]]", "[[true]]",
                                     "[[1, 2]", "[[1.5]]"])
def test_load_real_json_rejects_malformed(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="bad.json") as info:
        real_labels.load_real_json(path)
    assert "JSON list" in str(info.value)  # names the expected format


def test_statistics_hand_computed():
    stats = real_labels.real_statistics(LABELS, _sets())
    assert stats["images"] == 12
    assert stats["usable"] == 10
    assert stats["empty"] == 2
    assert stats["multi_label"] == 4  # images 0, 3, 6, 7
    assert stats["original_in_set"] == 9  # all usable but image 2
    assert stats["original_in_set_fraction"] == pytest.approx(0.9)
    assert stats["mean_set_size_usable"] == pytest.approx(14 / 10)
    json.dumps(stats)


def test_colabel_matches_hand_values():
    colabel = categories.colabel_matrix(np.array(LABELS), _sets(), 4)
    np.testing.assert_allclose(colabel, EXPECTED_P)
    rows = real_labels.cooccurrence_report(LABELS, _sets(), NAMES, count=None)
    assert rows and all(r["n_k"] == [3, 2, 3, 2][r["k"]] for r in rows)  # usable images per class
    # a class without usable images is a NaN row
    colabel5 = categories.colabel_matrix(np.array(LABELS), np.pad(_sets(), ((0, 0), (0, 1))), 5)
    assert np.isnan(colabel5[4]).all()


def test_cooccurrence_report_top_pairs_and_categories():
    rows = real_labels.cooccurrence_report(LABELS, _sets(), NAMES, count=10)
    assert [(r["k"], r["l"]) for r in rows] == [(0, 1), (2, 3), (1, 0)]  # P = 2/3, 2/3 (tie: (k, l) order), 1/2
    assert rows[0] == {"k": 0, "l": 1, "name_k": "alpha", "name_l": "beta", "p_l_given_k": pytest.approx(2 / 3),
                       "p_k_given_l": pytest.approx(0.5), "n_k": 3, "category": "ambiguous"}
    assert rows[1] == {"k": 2, "l": 3, "name_k": "cup", "name_l": "saucer", "p_l_given_k": pytest.approx(2 / 3),
                       "p_k_given_l": 0.0, "n_k": 3, "category": "co-occurring"}
    assert rows[2]["category"] == "ambiguous" and rows[2]["n_k"] == 2
    # same order as categories.top_pairs
    colabel = categories.colabel_matrix(np.array(LABELS), _sets(), 4)
    assert [(k, l) for k, l, _ in categories.top_pairs(colabel, count=10)] == [(r["k"], r["l"]) for r in rows]
    assert len(real_labels.cooccurrence_report(LABELS, _sets(), NAMES, count=1)) == 1
    assert len(real_labels.cooccurrence_report(LABELS, _sets(), NAMES, count=None, min_value=0.6)) == 2
    # thresholds and groups are passed to pair_category
    high = dict(symmetric_threshold=0.9, cooccurrence_threshold=0.9)
    rows = real_labels.cooccurrence_report(LABELS, _sets(), NAMES, groups=[0, 0, 1, 1], **high)
    assert {r["category"] for r in rows} == {"fine-grained"}
    rows = real_labels.cooccurrence_report(LABELS, _sets(), NAMES, groups=[0, 1, 2, 3], **high)
    assert {r["category"] for r in rows} == {"other"}


def test_label_files(fixture_files):
    labels = real_labels.imagenet_validation_labels(fixture_files / "validation_labels.txt",
                                                    fixture_files / "labels.txt")
    np.testing.assert_array_equal(labels, LABELS)
    assert real_labels.imagenet_class_names(fixture_files / "names.txt", fixture_files / "labels.txt") == NAMES
    assert real_labels.imagenet_class_names(None, fixture_files / "labels.txt") == WNIDS  # fallback: wnids
    (fixture_files / "names.txt").write_text("alpha\nbeta\n")
    with pytest.raises(ValueError, match="names.txt"):
        real_labels.imagenet_class_names(fixture_files / "names.txt", fixture_files / "labels.txt")
    (fixture_files / "validation_labels.txt").write_text("n00000010\nn99999999\n")
    with pytest.raises(ValueError, match="n99999999"):
        real_labels.imagenet_validation_labels(fixture_files / "validation_labels.txt",
                                               fixture_files / "labels.txt")


def _check_outputs(out):
    with open(out / "real_cooccurrence.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == real_labels.CSV_COLUMNS
    assert [(r["k"], r["l"], r["name_k"], r["category"]) for r in rows] == [
        ("0", "1", "alpha", "ambiguous"), ("2", "3", "cup", "co-occurring"), ("1", "0", "beta", "ambiguous")]
    assert float(rows[0]["p_l_given_k"]) == pytest.approx(2 / 3) and rows[0]["n_k"] == "3"
    top = json.loads((out / "real_top_pairs.json").read_text())
    assert top["statistics"]["empty"] == 2 and top["statistics"]["multi_label"] == 4
    assert [(p["k"], p["l"]) for p in top["pairs"]] == [(0, 1), (2, 3)]  # --count=2


def test_command_main(fixture_files, capsys):
    out = fixture_files / "out"
    result = real_labels.main([f"--real={fixture_files / 'real.json'}", f"--names={fixture_files / 'names.txt'}",
                               f"--wnids={fixture_files / 'validation_labels.txt'}",
                               f"--labels={fixture_files / 'labels.txt'}", f"--out={out}", "--count=2"])
    assert result["statistics"]["usable"] == 10
    printed = capsys.readouterr().out
    assert "alpha" in printed and "co-occurring" in printed and "original_in_set_fraction" in printed
    _check_outputs(out)


def test_command_subprocess(fixture_files):
    out = fixture_files / "sub"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "jaxlab.classwise.real_labels", f"--real={fixture_files / 'real.json'}",
         f"--names={fixture_files / 'names.txt'}", f"--wnids={fixture_files / 'validation_labels.txt'}",
         f"--labels={fixture_files / 'labels.txt'}", f"--out={out}", "--count=2"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    _check_outputs(out)
    (fixture_files / "real.json").write_text("[[0], 1]")
    proc = subprocess.run(
        [sys.executable, "-m", "jaxlab.classwise.real_labels", f"--real={fixture_files / 'real.json'}",
         f"--wnids={fixture_files / 'validation_labels.txt'}", f"--labels={fixture_files / 'labels.txt'}"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode != 0 and "real.json" in proc.stderr


def test_tfds_validation_labels():
    pytest.importorskip("tensorflow_datasets")
    labels = real_labels.imagenet_validation_labels()
    assert labels.shape == (50_000,) and labels.min() >= 0 and labels.max() < 1000
    assert np.bincount(labels, minlength=1000).tolist() == [50] * 1000
    names = real_labels.imagenet_class_names()
    assert len(names) == 1000 and names[836] == "sunglass" and names[0] == "tench"  # WordNet names


def test_real_file_facts():
    if not REAL_FILE.exists():
        pytest.skip(f"{REAL_FILE} not present")
    pytest.importorskip("tensorflow_datasets")
    real = real_labels.load_real_json(REAL_FILE)
    sets = real_labels.label_sets_matrix(real)
    chex.assert_shape(sets, (50_000, 1000))
    labels = real_labels.imagenet_validation_labels()
    stats = real_labels.real_statistics(labels, sets)
    assert (stats["images"], stats["empty"], stats["multi_label"]) == (50_000, 3_163, 7_443)
    assert stats["original_in_set_fraction"] == pytest.approx(0.90, abs=0.005)
    rows = real_labels.cooccurrence_report(labels, sets, real_labels.imagenet_class_names(), count=50)
    found = {(r["name_k"], r["name_l"]): r["p_l_given_k"] for r in rows}
    for pair, value in {("sunglass", "sunglasses"): 0.94, ("laptop", "notebook"): 0.90,
                        ("projectile", "missile"): 0.83, ("tub", "bathtub"): 0.79,
                        ("sports car", "car wheel"): 0.71, ("academic gown", "mortarboard"): 0.58}.items():
        assert found[pair] == pytest.approx(value, abs=0.005), pair


def test_label_sets_follow_the_eval_file_order():
    real = [[0], [1, 2], [], [2]]
    names = [b"ILSVRC2012_val_00000004.JPEG", "val/ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000001.JPEG"]
    sets = real_labels.label_sets_for_file_names(real, names, 3)
    np.testing.assert_array_equal(sets, [[0, 0, 1], [0, 1, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match="not an ImageNet validation file name"):
        real_labels.validation_index("n01440764_1.JPEG")
