"""Every test sees 8 simulated CPU devices (set before JAX initialises)."""
import os

# The tests are dominated by XLA compile time, not run time: LLVM optimisation level 1 instead of the
# default cuts it (three trainer tests: 106 -> 74 CPU-s). Level 0 would cut it further, but it also drops
# optimisations such as FMA contraction that change float32 results in the last bits, so the exactness tests
# would check a different program than users run (the crop tests pass at both levels since the crop weighs
# taps by window, 2026-11-30; level 1 stays the closer of the two to what users run).
# Benchmarks and user runs keep XLA's default. Set XLA_FLAGS yourself to override.
_FLAGS = os.environ.get("XLA_FLAGS", "")
if "xla_backend_optimization_level" not in _FLAGS:
    _FLAGS += " --xla_backend_optimization_level=1"
os.environ["XLA_FLAGS"] = (_FLAGS + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import tempfile  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

from jaxlab.main import enable_compilation_cache  # noqa: E402

# Many tests compile the same small programs (state init, eval step): a per-session disk cache
# shares them between tests.
enable_compilation_cache(tempfile.mkdtemp(prefix="jaxlab-xla-cache-"))


@pytest.fixture(scope="session", autouse=True)
def _eight_devices():
    assert jax.device_count() == 8, "tests expect 8 simulated CPU devices"
