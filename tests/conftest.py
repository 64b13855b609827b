"""Every test sees 8 simulated CPU devices (set before JAX initialises)."""
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
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
