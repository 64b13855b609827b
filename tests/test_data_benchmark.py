"""`python -m jaxlab.data.benchmark`: the host input pipeline's images/s for a config (jaxlab/data/benchmark.py).

Fixture: 24 small JPEGs cut from scikit-learn's two sample photos in an ImageFolder tree of 2 classes, and a
config file training on it (crops of 32 px, batches of 8, 2 worker processes, a per-class crop-scale table).
"""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxlab.config import per_class_values
from jaxlab.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

CONFIG = '''
from jaxlab.config import base_config


def get_config():
    config = base_config()
    config.data.source = "image_folder"
    config.data.dir = {folder!r}
    config.data.eval_split = "val"
    config.data.image_size = 32
    config.data.workers = 2
    config.data.rrc_scale_table = "crop_scale"
    config.augment.tables = {{"crop_scale": {{"default": 0.5, "1": 0.2}}}}
    config.training.batch_size = 8
    return config
'''


def _write_jpegs(folder: Path, count: int, seed: int) -> None:
    """`count` JPEGs of 60-120 px per side cut from sklearn's sample photos, in class folders a/ and b/."""
    from sklearn.datasets import load_sample_image

    photos = [load_sample_image(name) for name in ("china.jpg", "flower.jpg")]
    rng = np.random.default_rng(seed)
    for i in range(count):
        photo = photos[i % 2]
        top, left = int(rng.integers(0, photo.shape[0] - 240)), int(rng.integers(0, photo.shape[1] - 240))
        size = (int(rng.integers(60, 121)), int(rng.integers(60, 121)))
        buffer = io.BytesIO()
        Image.fromarray(photo[top:top + 240, left:left + 240]).resize(size).save(buffer, format="JPEG", quality=85)
        path = folder / "ab"[i % 2] / f"{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmark")
    _write_jpegs(root / "images" / "train", 24, 0)
    _write_jpegs(root / "images" / "val", 4, 1)
    path = root / "config.py"
    path.write_text(CONFIG.format(folder=str(root / "images")))
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jaxlab.data.benchmark", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_benchmark_times_the_training_batches(config_file, tmp_path):
    out = tmp_path / "result.json"
    run = _run(f"--config={config_file}", "--seconds=2", f"--json={out}")
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result) == {"images_per_second", "workers", "batch_size", "seconds", "batches", "source",
                           "image_size"}
    assert result["images_per_second"] > 0 and result["batches"] >= 1 and result["seconds"] >= 2
    assert (result["workers"], result["batch_size"], result["source"], result["image_size"]) == (
        2, 8, "image_folder", 32)
    assert result["images_per_second"] == pytest.approx(result["batches"] * 8 / result["seconds"])
    assert "images/s" in run.stdout


def test_bad_dataset_is_one_line_exit_2(config_file, tmp_path):
    run = _run(f"--config={config_file}", f"--config.data.dir={tmp_path / 'missing'}", "--seconds=1")
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.startswith("error: image_folder:") and run.stderr.count("\n") == 1


def test_per_class_values_follow_the_trainers_rule(tmp_path):
    """The one parser of per-class tables (augment's PerClass parameters and the host crop's scale use it)."""
    np.testing.assert_allclose(per_class_values({"default": 0.5, "1": 0.2}, 3), [0.5, 0.2, 0.5])
    np.testing.assert_allclose(per_class_values([0.1, 0.3], 2), [0.1, 0.3])
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"0": 0.25, "1": 1.0}))
    np.testing.assert_allclose(per_class_values(str(path), 2), [0.25, 1.0])
    with pytest.raises(ConfigError, match="misses classes"):
        per_class_values({"0": 0.5}, 2)
    with pytest.raises(ConfigError, match="2 classes"):
        per_class_values([0.5], 2, field="data.rrc_scale_table")
