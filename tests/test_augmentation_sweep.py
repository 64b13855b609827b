"""The augmentation_sweep experiment: outputs, resume after interruption, shards, intervention, report."""

import csv
import os

import numpy as np
import pytest

from jaxlab import parallel
from jaxlab.config import EVAL_FINAL_ONLY
from jaxlab.data import synthetic
from jaxlab.errors import ConfigError, DataError, WorkdirError
from jaxlab.experiments import augmentation_sweep as sweep
from jaxlab.experiments import train as train_experiment
from tests.helpers import blobs_dataset, sigterm_at_batch, tiny_config


def _sweep_config(**overrides):
    config = tiny_config("augmentation_sweep", **{"training.num_train_steps": 4, "training.batch_size": 32,
                                                  "eval_batch_size": 40, **overrides})
    config.augment.pipeline = "rrc(size=4, scale=(crop_scale, 1.0))"
    config.augment.tables = {"crop_scale": {"default": 1.0}}  # as the configs declare it
    config.sweep.strengths = (0.3, 1.0)
    config.sweep.seeds = (0, 1)
    return config


def _dataset():
    return blobs_dataset(num_train=96, num_test=40, num_classes=3, shape=(4, 4, 1))


def _read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_sweep_resumes_without_retraining_and_gives_identical_outputs(tmp_path, monkeypatch):
    """SIGTERM in the middle of the second run (at its 2nd of 4 steps; a run moves 4 train and 2 eval batches):
    the sweep checkpoints and stops; the rerun trains only what is left and writes the outputs of a sweep never
    stopped."""
    config = _sweep_config(**{"classwise.intervention": False})
    full = sweep.run(config, str(tmp_path / "full"), dataset=_dataset())
    assert full["finished"]

    original = train_experiment.train_and_evaluate
    calls = []
    monkeypatch.setattr(train_experiment, "train_and_evaluate",
                        lambda c, w, **kw: calls.append(os.path.basename(w)) or original(c, w, **kw))
    part = str(tmp_path / "part")
    shard_batch = parallel.shard_batch
    sigterm_at_batch(monkeypatch, 8)
    assert sweep.run(config, part, dataset=_dataset()) == {"finished": False, "preempted": True}
    assert calls == ["strength=0.3_seed=0", "strength=0.3_seed=1"]
    monkeypatch.setattr(parallel, "shard_batch", shard_batch)
    assert sorted(os.listdir(os.path.join(part, "predictions"))) == ["strength=0.3_seed=0.npz"]
    assert not os.path.exists(os.path.join(part, "analysis.json"))

    calls.clear()
    resumed = sweep.run(config, part, dataset=_dataset())
    assert resumed["finished"]
    assert calls == ["strength=0.3_seed=1", "strength=1_seed=0", "strength=1_seed=1"]  # the finished run is skipped
    assert _read_csv(os.path.join(part, "per_class.csv")) == _read_csv(str(tmp_path / "full" / "per_class.csv"))
    for name in os.listdir(tmp_path / "full" / "predictions"):
        with np.load(tmp_path / "full" / "predictions" / name) as a, np.load(os.path.join(part, "predictions", name)) as b:
            np.testing.assert_array_equal(a["predictions"], b["predictions"])

    calls.clear()
    assert sweep.run(config, part, dataset=_dataset())["finished"] and calls == []  # nothing left to train


def test_sweep_outputs_intervention_and_report(tmp_path):
    config = _sweep_config()
    config.classwise.intervention_pairs = 1
    workdir = tmp_path / "sweep"
    result = sweep.run(config, str(workdir), dataset=_dataset())
    assert result["finished"]
    rows = _read_csv(workdir / "per_class.csv")
    assert list(rows[0]) == list(sweep.CSV_COLUMNS)
    assert len(rows) == 2 * 2 * 3 and {r["multilabel_accuracy"] for r in rows} == {""}
    assert {(r["strength"], r["seed"]) for r in rows} == {("0.3", "0"), ("0.3", "1"), ("1.0", "0"), ("1.0", "1")}
    analysis = result["analysis"]
    assert analysis["strengths"] == [0.3, 1.0] and len(analysis["classes"]) == 3
    report = (workdir / "report.md").read_text()
    assert "Average accuracy" in report and "Affected classes" in report and "intervention" in report
    assert (workdir / "average_accuracy.png").stat().st_size > 1000
    for plot in ("class_accuracy.png", "confusions.png"):  # drawn when some class loses accuracy at s*
        assert (workdir / plot).exists() == (plot in report) == any(r["drop"] > 0 for r in analysis["classes"])
    if result["intervention"]["treated"]:  # a pair whose false positives grew was treated and retrained
        assert len(result["intervention"]["treated"]) == 2 and (workdir / "intervention.png").exists()
        names = sorted(p for p in os.listdir(workdir / "predictions") if p.startswith("intervention"))
        assert len(names) == 2 and names[0].endswith("_seed=0.npz") and names[1].endswith("_seed=1.npz")
        assert "class-conditional" in report
    assert not os.path.exists(workdir / "runs" / "strength=1_seed=0" / "checkpoints")  # cleaned after the run


def test_sweep_shards_merge(tmp_path):
    config = _sweep_config(**{"classwise.intervention": False})
    workdir = str(tmp_path / "shared")
    config.sweep.num_shards = 2
    config.sweep.shard_index = 1
    result = sweep.run(config, workdir, dataset=_dataset())
    assert not result["finished"] and len(result["missing_runs"]) == 2
    assert sorted(os.listdir(os.path.join(workdir, "predictions"))) == ["strength=0.3_seed=1.npz", "strength=1_seed=1.npz"]
    config.sweep.shard_index = 0
    assert sweep.run(config, workdir, dataset=_dataset())["finished"]
    assert os.path.exists(os.path.join(workdir, "analysis.json"))


@pytest.mark.parametrize("field, value, message", [
    ("sweep.strengths", (0.0, 1.0), "distinct values in \\(0, 1\\]"),
    ("sweep.seeds", (1, 1), "distinct seeds"),
    ("sweep.parameter", "crop_size", "does not appear in config.augment.pipeline"),
    ("classwise.correction", "holm", "none or bonferroni"),
    ("classwise.real_json", "/nonexistent/real.json", "not a file"),
])
def test_bad_sweep_configs_fail_before_training(tmp_path, field, value, message):
    config = _sweep_config()
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(ConfigError, match=message):
        sweep.run(config, str(tmp_path / "bad"), dataset=_dataset())
    assert not os.path.exists(tmp_path / "bad")


def test_sweep_on_the_planted_dataset_recovers_the_planted_structure(tmp_path):
    """Train a 2-strength sweep on jaxlab.data.synthetic and check the analysis finds what was planted."""
    dataset = synthetic.make_planted_dataset(num_train_per_class=300, num_test_per_class=100, image_size=16)
    config = tiny_config("augmentation_sweep", **{
        "model.name": "cnn", "model.width": 16, "training.batch_size": 128, "training.num_train_steps": 150,
        "eval_batch_size": 200, "optimizer.learning_rate": 0.2, "log_every_steps": 50,
        "eval_every_steps": EVAL_FINAL_ONLY})
    config.augment.pipeline = "rrc(size=16, scale=(crop_scale, 1.0))"
    config.sweep.strengths = (0.5, 1.0)
    config.sweep.seeds = (0,)
    config.classwise.reference_strength = 0.5  # score classes against the strong-crop model
    config.classwise.intervention = False
    analysis = sweep.run(config, str(tmp_path / "planted"), dataset=dataset)["analysis"]
    by_class = {r["class"]: r for r in analysis["classes"]}

    small, tagged = synthetic.FINE_GRAINED_PAIR
    fine = by_class[small]
    assert fine["affected"] and fine["partner"] == tagged and fine["category"] == "fine-grained"
    assert fine["curves"]["confusion_rate"][0] > fine["curves"]["confusion_rate"][1] + 0.2  # errors move into 5
    assert fine["curves"]["partner_false_positives"][0] > fine["curves"]["partner_false_positives"][1] + 10
    for k in synthetic.TEXTURE_CLASSES:
        assert not by_class[k]["affected"]
    a, b = synthetic.AMBIGUOUS_PAIR
    assert by_class[a]["category"] == "ambiguous" or by_class[a]["partner"] != b
    multilabel = np.asarray(analysis["per_class_multilabel_accuracy"]["mean"])
    accuracy = np.asarray(analysis["per_class_accuracy"]["mean"])
    assert (multilabel[:, [a, b]] > 0.8).all() and (multilabel[:, [a, b]] > accuracy[:, [a, b]] + 0.2).all()


def test_a_sweep_rerun_with_another_config_is_refused_and_a_damaged_predictions_file_named(tmp_path):
    """A run of a sweep is finished only for the config that produced it (its record holds that config); a
    damaged predictions file is a DataError naming it."""
    config = _sweep_config(**{"classwise.intervention": False})
    workdir = str(tmp_path / "sweep")
    assert sweep.run(config, workdir, dataset=_dataset())["finished"]
    longer = _sweep_config(**{"classwise.intervention": False, "training.num_train_steps": 6})
    with pytest.raises(WorkdirError, match=r"strength=0.3_seed=0.*\(training.num_train_steps: 4 -> 6\)"):
        sweep.run(longer, workdir, dataset=_dataset())
    damaged = os.path.join(workdir, "predictions", "strength=1_seed=1.npz")
    with open(damaged, "wb") as f:
        f.write(b"not a zip file")
    with pytest.raises(DataError, match=r"strength=1_seed=1.npz is damaged"):
        sweep.run(config, workdir, dataset=_dataset())
