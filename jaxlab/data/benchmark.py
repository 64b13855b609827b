"""Host input-pipeline throughput of a config's training data, like `tfds.benchmark`: no model, no device.

    python -m jaxlab.data.benchmark --config=configs/classwise/imagenet_resnet50.py \
        --config.data.source=image_folder --config.data.dir=/path/to/imagenet --config.data.eval_split=val \
        [--seconds=20] [--warmup_batches=-1] [--json=result.json]

Loads the config's dataset (`load_dataset(config.data)`) and builds its TRAINING batches as the trainer does:
`data.train_batches(dataset.train, config.training.batch_size, seed=config.seed, scale_min=...)` with the
trainer's host crop scale (jaxlab.config.host_crop_scale: config.data.rrc_scale, or the per-class table
config.augment.tables[config.data.rrc_scale_table]), as one host (process 0 of 1): the global batch config.training.batch_size is
this host's batch. For encoded-image sources (image_folder, tfds_jpeg) that is the whole host pipeline: read,
decode, random-resized crop to config.data.image_size, stack into uint8 batches, in config.data.workers
processes (-1: every CPU of this process); in-memory sources time only the batching (their augmentation runs
on the device). It warms up (starts the workers and drains the batches they had prefetched, so the timing
sees the steady state), then counts the batches delivered in `--seconds` and prints images/s;
`--json=PATH` writes {"images_per_second", "workers", "batch_size", "seconds", "batches", "source",
"image_size"}.

Exit status: 0 done, 2 a bad config or dataset (one line on stderr, as jaxlab.main).
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

from jaxlab import config as config_lib
from jaxlab import data
from jaxlab.errors import ConfigError, DataError

USER_ERROR = 2
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "configs", "default.py")

_FLAGS: dict = {}  # defined by run(), not on import: jaxlab.main defines --config too (tests import both)


def measure(config, seconds: float, warmup_batches: int = -1) -> dict:
    """Time the config's host training batches for `seconds` after the warm-up; the result dict (see the module
    docstring)."""
    config_lib.validate(config, num_devices=1)
    dataset = data.load_dataset(config.data)
    batch_size = config.training.batch_size
    batches = data.train_batches(dataset.train, batch_size, seed=config.seed,
                                 scale_min=config_lib.host_crop_scale(config, dataset.num_classes),
                                 process_index=0, process_count=1)
    workers = getattr(dataset.train, "workers", 0)  # JpegSource; in-memory splits batch in this process
    if warmup_batches < 0:  # every worker started, and the batches they prefetched meanwhile drained
        warmup_batches = max(2 * workers, workers + getattr(dataset.train, "prefetch", 2)) + 1
    try:
        for _ in range(max(warmup_batches, 1)):
            shape = next(batches)["image"].shape  # batches are views of the workers' shared memory: not kept
        start = now = time.perf_counter()
        count = 0
        while now - start < seconds:
            shape = next(batches)["image"].shape
            count += 1
            now = time.perf_counter()
    finally:
        batches.close()
        close = getattr(dataset.test, "close", None)
        if close is not None:
            close()
    return {"images_per_second": count * shape[0] / (now - start), "workers": int(workers),
            "batch_size": int(batch_size), "seconds": now - start, "batches": count, "source": config.data.source,
            "image_size": int(shape[1]) if len(shape) >= 3 else 0}


def _exit_user_error(error: BaseException) -> None:
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
    sys.exit(USER_ERROR)


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except (flags.Error, KeyError, AttributeError, OSError, TypeError, ValueError) as e:
        _exit_user_error(e.__cause__ or e)


def _define_flags() -> None:
    _FLAGS["config"] = config_flags.DEFINE_config_file(
        "config", default=DEFAULT_CONFIG, help_string="Path to a config file (get_config()).", lock_config=True)
    _FLAGS["seconds"] = flags.DEFINE_float("seconds", 20.0, "How long to time the batches (after the warm-up).")
    _FLAGS["warmup_batches"] = flags.DEFINE_integer(
        "warmup_batches", -1, "Batches taken before the timing; -1: enough to start every worker and drain what "
        "the workers prefetched (max(2 x workers, workers + prefetch) + 1).")
    _FLAGS["json"] = flags.DEFINE_string("json", None, "Write the result as JSON to this path.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    seconds, warmup, json_path = (_FLAGS[name].value for name in ("seconds", "warmup_batches", "json"))
    if seconds <= 0:
        _exit_user_error(ValueError(f"--seconds must be positive, got {seconds}"))
    config = _FLAGS["config"].value
    try:
        config.experiment  # noqa: B018  (a config file that failed to load raises on first use)
    except OSError as e:
        _exit_user_error(e.__cause__ or e)
    try:
        result = measure(config, seconds, warmup)
    except (ConfigError, DataError) as e:
        _exit_user_error(e)
    print(f"{result['source']}: {result['images_per_second']:.1f} images/s ({result['batches']} batches of "
          f"{result['batch_size']} x {result['image_size']} px in {result['seconds']:.1f} s, "
          f"{result['workers']} workers)")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)


def run() -> None:
    """The command line (python -m jaxlab.data.benchmark)."""
    try:  # the config flag applies the --config.* overrides in sys.argv when it is defined
        _define_flags()
    except (flags.Error, KeyError, AttributeError, OSError, TypeError, ValueError) as e:
        _exit_user_error(e.__cause__ or e)
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
