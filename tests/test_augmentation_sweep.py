"""The augmentation_sweep experiment: outputs, resume after interruption, shards, intervention, report."""

import csv
import os

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from jaxlab import classwise, parallel
from jaxlab.classwise import intervention
from jaxlab.config import EVAL_FINAL_ONLY
from jaxlab.data import synthetic
from jaxlab.errors import ConfigError, DataError, WorkdirError
from jaxlab.experiments import augmentation_sweep as sweep
from jaxlab.experiments import sweep_report
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
    ("classwise.intervention_pairs", 0, "must be >= 1"),
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


# ------------------------------------------------------------------ the report, on hand-made predictions

N_PER_CLASS, STRENGTHS = 100, [0.25, 1.0]


def _move(predictions, labels, source, target, count):
    """Predict the first `count` examples of class `source` as `target` (in place)."""
    predictions[np.flatnonzero(labels == source)[:count]] = target


def _report_predictions():
    """labels (700,) and predictions (S=2, R=3, 700) of _report_inputs."""
    labels = np.repeat(np.arange(7), N_PER_CLASS)
    predictions = np.tile(labels, (2, 3, 1))
    for r in range(3):
        for source, target, count in ((0, 1, 30), (2, 3, 20), (4, 1, 15), (5, 6, 20)):
            _move(predictions[0, r], labels, source, target, count)
        _move(predictions[1, r], labels, 3, 6, 25)
        _move(predictions[1, r], labels, 6, 5, 5 * r)
    return labels, predictions


def _report_inputs():
    """7 classes x 100 eval images, 3 identical seeds except class 6 at s = 1, s* = 0.25, intervention_pairs = 1.

    At s*: 0 -> 1 (30 errors), 2 -> 3 (20), 4 -> 1 (15), 5 -> 6 (20); at s = 1: 3 -> 6 (25) and 6 -> 5
    (0 / 5 / 10 by seed). So 1's false positives grow 0 -> 45 (candidate 1: 0 and 1, treated), 3's 0 -> 20
    (candidate 2: 2 and 3, over the limit), 6's fall 25 -> 20 (no candidate). Affected: 0, 2, 5, 4.
    The class-conditional retraining fixes class 0 and costs class 4 five more images (every seed).
    """
    labels, predictions = _report_predictions()
    analysis = classwise.analyze(STRENGTHS, labels, predictions, 7, reference_strength=0.25)
    candidates = intervention.rank_pairs(STRENGTHS, labels, predictions, 7, best_index=0, num_pairs=1)
    after = predictions[0].copy()
    after[:, labels == 0] = 0
    for r in range(3):
        _move(after[r], labels, 4, 1, 20)
    comparison = intervention.compare(labels, predictions[0], after, 7, [0, 1])
    comparison.update(pairs=[[0, 1]], selection="false_positive_growth", num_pairs=1, candidates=candidates,
                      weakest_strength=1.0, baseline_strength=0.25, treated_strength=1.0)
    return analysis, comparison


def test_treatment_rows_say_who_was_treated_and_why_and_who_was_not():
    analysis, comparison = _report_inputs()
    assert analysis["affected"] == [0, 2, 5, 4]
    rows = sweep_report.treatment_rows(analysis, comparison)
    assert [(r["class"], r["is_treated"]) for r in rows] == [(1, True), (0, True), (2, False), (5, False), (4, False)]
    why = {r["class"]: r["reason"] for r in rows}
    assert "absorber" in why[1] and "0.0 → 45.0" in why[1] and "+45.0" in why[1]
    assert "source" in why[0] and "30.0 of 1's 45.0 false positives" in why[0]
    assert "candidate 2" in why[2] and "intervention_pairs = 1" in why[2]
    assert "did not grow" in why[5] and "25.0 at s = 1, 20.0 at s* = 0.25" in why[5]
    assert "paired with 0" in why[4] and "30.0 vs 15.0 from 4" in why[4] and "that pair: treated" in why[4]
    by_class = {r["class"]: r for r in rows}
    assert by_class[0]["change"] == pytest.approx(0.3) and by_class[4]["change"] == pytest.approx(-0.05)
    assert by_class[4]["change_lower"] == by_class[4]["change_upper"] == pytest.approx(-0.05)  # same in every seed


def test_treatment_rows_under_the_affected_selection_name_overlapping_pairs():
    analysis, comparison = _report_inputs()
    candidates = intervention.rank_pairs(STRENGTHS, *_report_predictions(), 7, best_index=0, selection="affected",
                                         num_pairs=1, analysis=analysis)
    assert [(c["source"], c["absorber"], c["status"]) for c in candidates] == [
        (0, 1, "treated"), (2, 3, "limit"), (5, 6, "limit"), (4, 1, "overlap")]
    rows = sweep_report.treatment_rows(analysis, {**comparison, "selection": "affected", "candidates": candidates})
    why = {r["class"]: r["reason"] for r in rows}
    assert [r["class"] for r in rows] == [0, 1, 2, 5, 4]
    assert why[0].startswith("candidate 1, source: 0 affected, drop 0.300") and "partner" in why[1]
    assert "its pair with 1 (candidate 4" in why[4] and "shares a class with a treated pair" in why[4]


def test_report_lists_treated_and_untreated_classes_with_their_changes(tmp_path):
    analysis, comparison = _report_inputs()
    path = sweep_report.write_report(str(tmp_path), analysis, comparison)
    report = open(path).read()
    assert "Treated: 0 and 1. Affected but not treated: 2, 5, 4." in report
    assert "Treated pairs" not in report  # the old wording read like a fraction
    assert "| 0 | yes | candidate 1, source" in report and "| +0.300 [+0.300, +0.300] |" in report
    assert "| 4 | no | its errors go mostly to 1" in report and "| -0.050 [-0.050, -0.050] |" in report
    assert "set by config.classwise.reference_strength; the best average accuracy is at s = 1" in report
    for plot in ("average_accuracy.png", "class_accuracy.png", "confusions.png", "intervention.png"):
        assert f"]({plot})" in report and (tmp_path / plot).stat().st_size > 1000


def _errorbar_spans(ax):
    """Every error bar's (low, high) in the axes."""
    return [(seg[:, 1].min(), seg[:, 1].max()) for c in ax.containers if isinstance(c, ErrorbarContainer)
            for seg in c.lines[2][0].get_segments()]


def test_accuracy_plots_clip_intervals_and_mark_s_star():
    analysis, _ = _report_inputs()
    class_6 = next(r for r in analysis["classes"] if r["class"] == 6)  # 0.95 +- 0.12 at s = 1: clipped at 1
    for fig in (sweep_report.average_accuracy_figure(analysis),
                sweep_report.class_accuracy_figure(analysis, [class_6])):
        ax = fig.axes[0]
        spans = _errorbar_spans(ax)
        assert spans and all(0 <= low <= high <= 1 for low, high in spans)
        assert ax.get_ylim()[1] <= 1.01
        band = [p for p in ax.patches if p.get_label().startswith("s* = 0.25")]
        assert len(band) == 1 and band[0].get_zorder() < 1  # the s* band, behind the error bars
        assert "s* = 0.25" in [t.get_text() for t in ax.texts] and ax.get_ylabel() and ax.get_xlabel()
    assert max(high for _, high in _errorbar_spans(ax)) == pytest.approx(1.0)  # class 6's upper end, clipped


def test_confusions_plot_draws_each_partner_once_with_units():
    analysis, _ = _report_inputs()
    shown = [r for r in analysis["classes"] if r["class"] in (0, 4, 2)]  # 0 and 4 both send their errors to 1
    left, right = sweep_report.confusions_figure(analysis, shown).axes
    labels = [line.get_label() for line in right.get_lines()]
    assert labels == ["1 (partner of 0, 4)", "3 (partner of 2)"]
    np.testing.assert_allclose(right.get_lines()[0].get_ydata(), [45.0, 0.0])
    assert len(left.get_lines()) == 3 and "rate" in left.get_ylabel() and "false positives" in right.get_ylabel()


def test_intervention_plot_shows_changes_of_treated_and_untreated_classes():
    analysis, comparison = _report_inputs()
    rows = sweep_report.treatment_rows(analysis, comparison)
    ax = sweep_report.intervention_figure(rows, comparison["average"], 0.25).axes[0]
    bars = ax.patches[:len(rows) + 1]
    np.testing.assert_allclose([b.get_height() for b in bars],
                               [r["change"] for r in rows] + [comparison["average"]["change"]], atol=1e-12)
    assert [b.get_hatch() or "" for b in bars] == ["", "", "//", "//", "//", ""]  # untreated affected: hatched
    assert len({tuple(b.get_facecolor()) for b in bars}) == 3  # treated, untreated, the average
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "0", "2", "5", "4", "average (all classes)"]
    assert any(np.allclose(line.get_ydata(), 0) for line in ax.get_lines())  # the zero line
    assert "change" in ax.get_ylabel()
