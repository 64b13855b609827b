"""End-to-end: the command line on the embedded dataset and on tfds mock data."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_main(*args, cwd):
    """`python -m jaxlab.main ARGS` with its compilation cache under cwd/cache (hermetic)."""
    return subprocess.run([sys.executable, "-m", "jaxlab.main", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": REPO, "JAXLAB_CACHE_DIR": str(cwd / "cache")}, timeout=600)


def test_main_default_sweep_on_digits(tmp_path):
    """The README's first command (default config: a digits augmentation sweep), shortened to 4 steps per run."""
    workdir = tmp_path / "run"
    proc = _run_main(f"--config={REPO}/configs/default.py", f"--workdir={workdir}",
                     "--config.training.num_train_steps=4", "--config.log_every_steps=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(os.listdir(workdir / "predictions")) >= 6  # 3 strengths x 2 seeds (+ intervention runs)
    rows = (workdir / "per_class.csv").read_text().splitlines()
    assert rows[0] == "strength,seed,class,n,accuracy,multilabel_accuracy,false_positives" and len(rows) == 1 + 60
    assert "Affected classes" in (workdir / "report.md").read_text()
    summary = json.loads((workdir / "runs" / "strength=1_seed=0" / "summary.json").read_text())
    assert summary["step"] == 4 and summary["num_devices"] == 8
    assert "false pos" in proc.stdout


def test_main_train_experiment(tmp_path):
    workdir = tmp_path / "train"
    proc = _run_main(f"--config={REPO}/configs/default.py", f"--workdir={workdir}", "--config.experiment=train",
                     "--config.training.num_train_steps=4", "--config.log_every_steps=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["step"] == 4 and "accuracy" in proc.stdout + proc.stderr
    assert os.listdir(tmp_path / "cache" / "xla"), "main keeps a persistent compilation cache"


def test_main_rejects_typo_and_bad_value(tmp_path):
    typo = _run_main(f"--config={REPO}/configs/default.py", "--config.trainng.batch_size=8", cwd=tmp_path)
    assert typo.returncode != 0 and "trainng" in typo.stderr
    bad = _run_main(f"--config={REPO}/configs/default.py", f"--workdir={tmp_path / 'bad'}",
                    "--config.training.batch_size=100", cwd=tmp_path)
    assert bad.returncode != 0 and "config.training.batch_size" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_main_with_no_flags_uses_default_config_and_workdir(tmp_path):
    from jaxlab import main
    assert main.DEFAULT_CONFIG.endswith(os.path.join("configs", "default.py")) and os.path.exists(main.DEFAULT_CONFIG)
    assert main.default_workdir(main.DEFAULT_CONFIG) == os.path.join("workdirs", "default")


def test_main_on_tfds_mock_data(tmp_path):
    """`python -m jaxlab.main` with source=tfds, run inside tfds.testing.mock_data (no TensorFlow)."""
    pytest.importorskip("tensorflow_datasets")
    workdir = tmp_path / "mock"
    code = ("import sys; import tensorflow_datasets as tfds; from absl import app; from jaxlab import main\n"
            "with tfds.testing.mock_data(num_examples=40):\n"
            "    app.run(main.main, argv=sys.argv)\n")
    proc = subprocess.run(
        [sys.executable, "-c", code, f"--config={REPO}/configs/default.py", f"--workdir={workdir}",
         "--config.experiment=train", "--config.data.source=tfds", "--config.data.name=mnist",
         "--config.training.num_train_steps=3",
         "--config.training.batch_size=16", "--config.eval_batch_size=16"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["dataset"].startswith("mnist") and summary["num_examples"] == 40
    assert len(summary["per_class_accuracy"]) == 10 and summary["step"] == 3
