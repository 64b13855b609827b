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
         "--config.augment.pipeline=",  # the default's 8 px crop would not match mnist's 28 px evaluation
         "--config.training.num_train_steps=3",
         "--config.training.batch_size=16", "--config.eval_batch_size=16"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["dataset"].startswith("mnist") and summary["num_examples"] == 40
    assert len(summary["per_class_accuracy"]) == 10 and summary["step"] == 3


def _one_line_error(proc, *expected):
    """Exit status 2 and the error as the last line of stderr, "error: ..." on one line holding every expected
    fragment, and no traceback (progress lines may come before it)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert all(fragment in lines[-1] for fragment in expected), lines[-1]


@pytest.mark.parametrize("args, expected", [
    (["--config.trainng.batch_size=8"], ['Did you mean "training"']),
    (["--config.training.batch_size=abc"], ["config.training.batch_size", "abc"]),
    (["--config.training.batch_size=100"], ["config.training.batch_size", "multiple of 8"]),
    (["--config.augment.eval_pipeline=nope(size=3)"], ["nope"]),
    (["--no_such_flag=1"], ["no_such_flag"]),
])
def test_user_mistakes_are_one_line_errors_with_status_2(tmp_path, args, expected):
    proc = _run_main(f"--config={REPO}/configs/default.py", f"--workdir={tmp_path / 'run'}", *args, cwd=tmp_path)
    _one_line_error(proc, *expected)


def test_a_missing_config_file_and_a_workdir_that_is_a_file_are_one_line_errors(tmp_path):
    _one_line_error(_run_main(f"--config={tmp_path}/nope.py", cwd=tmp_path), "nope.py")
    (tmp_path / "taken").write_text("")
    _one_line_error(_run_main(f"--config={REPO}/configs/default.py", "--config.experiment=train",
                              f"--workdir={tmp_path / 'taken'}", cwd=tmp_path), "is a file")


def test_a_diverged_run_is_a_one_line_error(tmp_path):
    proc = _run_main(f"--config={REPO}/configs/default.py", "--config.experiment=train", f"--workdir={tmp_path / 'd'}",
                     "--config.optimizer.learning_rate=1000", "--config.training.num_train_steps=30",
                     "--config.log_every_steps=5", cwd=tmp_path)
    _one_line_error(proc, "diverged at step", "learning_rate")


def test_sigterm_checkpoints_and_exits_with_143(tmp_path):
    """SIGTERM (preemption): the run checkpoints, then exits 128 + 15 so a scheduler sees it stopped; a rerun
    resumes."""
    import signal
    import time
    workdir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxlab.main", f"--config={REPO}/configs/default.py", "--config.experiment=train",
         f"--workdir={workdir}", "--config.training.num_train_steps=100000", "--config.log_every_steps=1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": REPO, "JAXLAB_CACHE_DIR": str(tmp_path / "cache")})
    deadline = time.time() + 300
    while not (workdir / "train.jsonl").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    assert "SIGTERM: checkpointed step" in stderr and any(p.isdigit() for p in os.listdir(workdir / "checkpoints"))


def test_a_full_disk_is_a_one_line_error_and_an_internal_error_keeps_its_traceback(tmp_path, monkeypatch, capsys):
    import errno

    from jaxlab import main

    main.flags.FLAGS(["jaxlab.main", f"--workdir={tmp_path}", "--compilation_cache="])
    unparse = main.flags.FLAGS.unparse_flags

    def full_disk(config, workdir):
        raise OSError(errno.ENOSPC, "No space left on device", "workdirs/run/checkpoints")

    def bug(config, workdir):
        raise OSError(errno.EIO, "input/output error")

    try:
        monkeypatch.setattr(main.experiments, "run", full_disk)
        with pytest.raises(SystemExit) as exit_info:
            main.main(["jaxlab.main"])
        assert exit_info.value.code == 2 and "No space left on device" in capsys.readouterr().err
        monkeypatch.setattr(main.experiments, "run", bug)
        with pytest.raises(OSError, match="input/output"):
            main.main(["jaxlab.main"])
    finally:
        unparse()


def test_print_config_shows_the_resolved_config_and_help_says_where_fields_live(tmp_path):
    proc = _run_main(f"--config={REPO}/configs/default.py", "--config.optimizer.learning_rate=0.025",
                     "--print_config", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "learning_rate: 0.025" in proc.stdout and "experiment: augmentation_sweep" in proc.stdout
    assert "strengths:" in proc.stdout and not (tmp_path / "workdirs").exists(), "nothing runs"
    helped = subprocess.run([sys.executable, "-m", "jaxlab.main", "--help"], cwd=tmp_path, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=300)
    assert "--print_config" in helped.stdout and "jaxlab/config.py" in helped.stdout
    assert "jaxlab/experiments/<experiment>.py" in helped.stdout
