"""Per-class metrics from a confusion matrix, against hand-computed values."""

import json

import numpy as np

from jaxlab.train import metrics


def test_per_class_metrics_hand_example():
    # rows = true class, columns = predicted class
    confusion = np.array([[3, 1, 0],
                          [0, 2, 2],
                          [0, 0, 0]])
    m = metrics.per_class_metrics(confusion)
    assert m["num_examples"] == 8
    assert m["accuracy"] == 5 / 8
    assert m["per_class_n"] == [4, 4, 0]
    np.testing.assert_allclose(m["per_class_accuracy"][:2], [0.75, 0.5])
    assert np.isnan(m["per_class_accuracy"][2])
    assert m["false_positives"] == [0, 1, 2]


def test_table_and_csv(tmp_path):
    m = metrics.per_class_metrics(np.array([[2, 0], [1, 1]]))
    table = metrics.format_per_class_table(m, ("cat", "dog"))
    assert "cat" in table and "0.5000" in table and "0.7500" in table
    metrics.write_per_class_csv(tmp_path / "p.csv", m, ("cat", "dog"))
    assert (tmp_path / "p.csv").read_text().splitlines()[2] == "1,dog,2,0.5,0"


def test_a_long_per_class_table_prints_the_worst_and_best_classes_only():
    confusion = np.diag(np.arange(1, 101)) + 1  # class k: accuracy rises with k
    m = metrics.per_class_metrics(confusion)
    names = tuple(f"c{k}" for k in range(100))
    lines = metrics.format_per_class_table(m, names, limit=6).splitlines()
    assert len(lines) == 1 + 3 + 1 + 3 + 1 and "94 classes between" in lines[4]
    assert [line.split()[1] for line in lines[1:4]] == ["c0", "c1", "c2"]
    assert [line.split()[1] for line in lines[5:8]] == ["c97", "c98", "c99"]
    assert len(metrics.format_per_class_table(m, names, limit=100).splitlines()) == 102


def test_progress_says_compiling_until_the_first_step():
    progress = metrics.Progress(10, 0, 8)
    assert progress._bar.desc.startswith("compiling")
    progress.update(1)
    assert progress._bar.desc.startswith("train")
    progress.close()


def test_metric_writer_appends_jsonl(tmp_path):
    writer = metrics.MetricWriter(str(tmp_path))
    writer.write("train", 1, {"loss": 2.0})
    writer.write("train", 2, {"loss": 1.5})
    lines = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert lines == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]


def test_write_json_is_atomic(tmp_path):
    metrics.write_json(str(tmp_path / "s.json"), {"a": 1})
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": 1}
    assert not (tmp_path / "s.json.tmp").exists()
