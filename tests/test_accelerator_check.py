"""benchmarks/accelerator_check.py --smoke: the GPU check's every section runs (tiny, on the CPU) and reports."""
import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "accelerator_check.py"


def test_accelerator_check_smoke(tmp_path):
    out = tmp_path / "check.json"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--json", str(out)], env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["smoke"] and results["errors"] == []
    assert results["step_alone"]["images_per_s"] > 0
    assert [row["workers"] for row in results["fed"]] == [0, 1]
    for row in results["fed"]:
        assert row["images_per_s"] > 0 and row["fed_over_alone"] > 0 and isinstance(row["input_bound"], bool)
    rows = results["augment"]["rows"]
    assert [row["ops"] for row in rows] == ["crop+flip", "crop+flip+jitter"]
    assert all(row["jaxlab"] > 0 for row in rows)
    for section in ("(a) step alone", "(b) fed by the JPEG pipeline", "(c) augmentation"):
        assert section in proc.stdout
