"""One process of a multi-process training run, started by tests/test_multiprocess.py.

    python -m tests.multiprocess_worker SPEC_JSON

The launcher's variables (JAX_COORDINATOR_ADDRESS, JAXLAB_NUM_PROCESSES, JAXLAB_PROCESS_ID) and
XLA_FLAGS / JAX_PLATFORMS come from the environment. SPEC_JSON: {"dataset": npz path, "workdir",
"out": folder for process<i>.npz / process<i>.json, "config": tiny_config overrides, "cache": XLA cache
folder or null, "sigterm": {"process": i, "at": n} or null (that process sends itself SIGTERM at its n-th
training batch fetch)}.
"""

import json
import sys

from jaxlab import parallel

parallel.initialize_distributed()  # before anything else touches JAX

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxlab import data  # noqa: E402
from jaxlab.train import train_and_evaluate  # noqa: E402
from tests.helpers import sigterm_at, tiny_config  # noqa: E402


def flat_params(state) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(parallel.fetch(state.params))[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def main(spec):
    index = jax.process_index()
    if spec.get("cache"):  # jaxlab.main.enable_compilation_cache, without importing every experiment
        jax.config.update("jax_compilation_cache_dir", spec["cache"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    facts = {"process_index": index, "process_count": jax.process_count(), "device_count": jax.device_count(),
             "local_device_count": jax.local_device_count(),
             # the agreed flag: True on both although only process 1 raises it
             "any_process_one": parallel.any_process(index == 1), "any_process_none": parallel.any_process(False)}
    with np.load(spec["dataset"]) as arrays:
        dataset = data.from_arrays(*(arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")), name="digits")
    sigterm = spec.get("sigterm")
    if sigterm and sigterm["process"] == index:
        dataset = sigterm_at(dataset, sigterm["at"])
    result = train_and_evaluate(tiny_config(**spec["config"]), spec["workdir"], dataset=dataset)
    facts.update({k: result.get(k) for k in ("step", "finished", "preempted", "accuracy")})
    if "state" in result:
        np.savez(f"{spec['out']}/process{index}.npz", **flat_params(result["state"]))
    with open(f"{spec['out']}/process{index}.json", "w") as f:
        json.dump(facts, f)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
