"""A real multi-process run: 2 processes x 4 CPU devices on localhost (gloo collectives), each running
tests/multiprocess_worker.py, checked against this process's 1 x 8 devices; then SIGTERM to one of the two
in the middle of training: both stop at the same step with one checkpoint, and the rerun resumes exactly."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxlab import data
from jaxlab.train import train_and_evaluate
from tests.helpers import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = {"log_every_steps": 1}  # the hosts agree on stopping at every logging step: here every step
TIMEOUT_S = 120  # one pair of processes (each start is a few seconds of imports, init and compiles)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(tmp, name, spec) -> list[dict]:
    """Start both processes with `spec` and wait for them; their process<i>.json facts (+ "params")."""
    out = tmp / name
    out.mkdir()
    spec = {**spec, "out": str(out)}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JAX", "TPU_", "MEGASCALE_"))}
    env.update(JAX_PLATFORMS="cpu", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{free_port()}", JAXLAB_NUM_PROCESSES="2",
               XLA_FLAGS="--xla_backend_optimization_level=1 --xla_force_host_platform_device_count=4")
    procs = []
    for i in range(2):
        log = open(out / f"process{i}.log", "w")
        procs.append((subprocess.Popen([sys.executable, "-m", "tests.multiprocess_worker", json.dumps(spec)],
                                       cwd=ROOT, env={**env, "JAXLAB_PROCESS_ID": str(i)}, stdout=log,
                                       stderr=subprocess.STDOUT), log))
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for proc, _ in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    logs = "\n".join(f"--- process {i} (exit {p.returncode}):\n" + (out / f"process{i}.log").read_text()[-3000:]
                     for i, (p, _) in enumerate(procs))
    assert all(p.returncode == 0 for p, _ in procs), logs
    facts = []
    for i in range(2):
        facts.append(json.loads((out / f"process{i}.json").read_text()))
        if (out / f"process{i}.npz").exists():
            with np.load(out / f"process{i}.npz") as params:
                facts[-1]["params"] = dict(params)
    return facts


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The digits split as an npz both processes read, an XLA cache the runs share, and the 2 x 4 run."""
    tmp = tmp_path_factory.mktemp("multiprocess")
    dataset = data.load_dataset(tiny_config().data)
    np.savez(tmp / "digits.npz", x_train=dataset.train.images, y_train=dataset.train.labels,
             x_test=dataset.test.images, y_test=dataset.test.labels)
    base = {"dataset": str(tmp / "digits.npz"), "config": CONFIG, "cache": str(tmp / "xla-cache")}
    facts = run_two_processes(tmp, "uninterrupted", {**base, "workdir": str(tmp / "uninterrupted")})
    return {"tmp": tmp, "base": base, "dataset": dataset, "uninterrupted": facts}


def test_two_processes_match_one_process(shared, tmp_path):
    facts = shared["uninterrupted"]
    for i, f in enumerate(facts):
        assert (f["process_index"], f["process_count"], f["device_count"], f["local_device_count"]) == (i, 2, 8, 4)
        assert f["any_process_one"] is True and f["any_process_none"] is False
        assert f["finished"] and f["step"] == tiny_config(**CONFIG).training.num_train_steps
    assert facts[0]["params"].keys() == facts[1]["params"].keys()
    for k in facts[0]["params"]:  # every host holds the same replicated parameters
        np.testing.assert_array_equal(facts[0]["params"][k], facts[1]["params"][k])

    single = train_and_evaluate(tiny_config(**CONFIG), str(tmp_path), dataset=shared["dataset"])
    from tests.multiprocess_worker import flat_params  # noqa: E402 (imports JAX, which this process has)
    expected = flat_params(single["state"])
    assert expected.keys() == facts[0]["params"].keys()
    for k, v in expected.items():
        np.testing.assert_allclose(facts[0]["params"][k], v, rtol=1e-5, atol=1e-6, err_msg=k)
    assert facts[0]["accuracy"] == pytest.approx(single["accuracy"])


def test_sigterm_to_one_process_stops_both_and_resumes_exactly(shared):
    tmp, base = shared["tmp"], shared["base"]
    workdir = str(tmp / "preempted")
    total = tiny_config(**CONFIG).training.num_train_steps
    # process 1 alone is signalled at its 6th training batch fetch: during step 3 or 4 (2 batches prefetched)
    stopped = run_two_processes(tmp, "preempted", {**base, "workdir": workdir, "sigterm": {"process": 1, "at": 6}})
    assert [f["preempted"] for f in stopped] == [True, True]
    assert stopped[0]["step"] == stopped[1]["step"] and 0 < stopped[0]["step"] < total, stopped
    checkpoints = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
    assert checkpoints[-1] == stopped[0]["step"]

    resumed = run_two_processes(tmp, "resumed", {**base, "workdir": workdir})
    for f in resumed:
        assert f["finished"] and f["step"] == total
        for k, v in shared["uninterrupted"][0]["params"].items():
            np.testing.assert_array_equal(f["params"][k], v, err_msg=k)
