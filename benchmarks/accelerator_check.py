"""Accelerator check: one command that measures, on the machine it runs on,

    (a) step alone: jaxlab's ResNet-50 train step on a fixed synthetic batch already on the device
        (train_step.py's `make_jax_step`: bf16, batch 256, 224 px, SGD momentum, all local devices);
    (b) fed:        the same step fed by jaxlab's JPEG pipeline (`load_dataset` with source image_folder,
        `train_batches(..., scale_min=0.08)`: RandomResizedCrop(224) decoded in `workers` processes, batches
        moved by `parallel.DeviceBuffer`) at several worker counts, with fed / step-alone: below 0.9 the step
        waits for its input ("input-bound");
    (c) augment:    augment.py's on-device augmentation benchmark at 128 x 224 px (crop+flip, crop+flip+jitter;
        jaxlab's pipeline, its vmapped ops, and dm-pix / augmax where installed).

    python benchmarks/accelerator_check.py --json benchmarks/results/accelerator_check_<gpu>.json   # < 8 min
    python benchmarks/accelerator_check.py --smoke --json /tmp/check.json    # tiny, on the CPU (< 60 s), for CI

The JPEGs for (b) are generated here from scikit-learn's two sample photos (china.jpg, flower.jpg, 427x640):
random crops (each side 50-100% of the photo's), resized to a shorter side of 300-430 px (ImageNet-like), randomly
flipped, saved at JPEG quality 75-95 into an ImageFolder (train/<class>/, one test image per class) in a temporary
folder, deleted at the end. `--data-dir` reads an existing ImageFolder (train/ and test/) instead, e.g. ImageNet.
`--smoke`: a CNN at 32 px, float32, batch 16, 16 files, workers 0 and 1, 1 s per measurement, jaxlab's
augmentation pipeline only, on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback

import numpy as np

INPUT_BOUND_BELOW = 0.9  # fed / step-alone under this: the step waits for the pipeline


def write_image_folder(root: str, files: int, classes: int, seed: int = 0) -> dict:
    """ImageNet-like JPEGs from scikit-learn's sample photos: root/train/<class>/*.jpg (`files` of them) and
    root/test/<class>/ (one per class). Returns their sizes."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    shorter, sizes = [], []

    def one(path: str, i: int) -> None:
        photo = photos[i % len(photos)]
        height, width = photo.shape[:2]
        h, w = rng.integers(height // 2, height + 1), rng.integers(width // 2, width + 1)
        top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        image = Image.fromarray(photo[top:top + h, left:left + w])
        side = int(rng.integers(300, 431))
        scale = side / min(h, w)
        image = image.resize((max(side, round(w * scale)), max(side, round(h * scale))), Image.BICUBIC)
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        image.save(path, "JPEG", quality=int(rng.integers(75, 96)))
        shorter.append(side)
        sizes.append(os.path.getsize(path))

    for split, count in (("train", files), ("test", classes)):
        for i in range(count):
            folder = os.path.join(root, split, f"class_{i % classes:03d}")
            os.makedirs(folder, exist_ok=True)
            one(os.path.join(folder, f"{i:06d}.jpg"), i)
    return {"files": files, "classes": classes, "shorter_side_px": [min(shorter), max(shorter)],
            "mean_kb": float(np.mean(sizes)) / 1024}


def time_step_alone(step, state, batch, seconds: float):
    """(state, images/s, s/step, steps): the step on one device-resident batch, after 2 warm-up (compile) steps."""
    import jax

    start = time.perf_counter()
    for _ in range(2):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(3):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    steps = max(3, int(np.ceil(seconds / ((time.perf_counter() - start) / 3))))
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    per_step = (time.perf_counter() - start) / steps
    return state, per_step, steps, compile_s


def time_fed(step, state, split, mesh, batch_size: int, workers: int, prefetch: int, seconds: float):
    """(state, result): the step fed by the JPEG pipeline for `seconds` after a warm-up of workers + 2 batches."""
    import jax

    from jaxlab import data, parallel

    batches = data.train_batches(split, batch_size, seed=0, scale_min=0.08, workers=workers, prefetch=prefetch)
    try:
        device_batches = parallel.DeviceBuffer(batches, mesh)
        start = time.perf_counter()
        state, metrics = step(state, next(device_batches))
        first_batch_s = time.perf_counter() - start
        for _ in range(workers + 2):
            state, metrics = step(state, next(device_batches))
        jax.block_until_ready(metrics)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or steps < 3:
            state, metrics = step(state, next(device_batches))
            steps += 1
        jax.block_until_ready(metrics)
        elapsed = time.perf_counter() - start
    finally:
        batches.close()
    return state, {"workers": workers, "images_per_s": steps * batch_size / elapsed, "steps": steps,
                   "ms_per_step": 1e3 * elapsed / steps, "first_batch_s": first_batch_s}


def augment_rows(batch: int, size: int, repeats: int, libraries: list[str] | None) -> list[dict]:
    """augment.py's measurement (its functions, its round-robin timing) at one batch x size, both op sets."""
    import jax

    import augment  # benchmarks/augment.py, beside this script

    makers = {"jaxlab": augment.jaxlab_fn, "jaxlab-vmap": augment.jaxlab_ops_fn,
              "dm-pix": augment.dm_pix_fn, "augmax": augment.augmax_fn}
    chosen = {}
    for name in libraries or makers:
        try:
            makers[name](32, False)
            chosen[name] = makers[name]
        except ImportError:
            print(f"  {name} not installed: skipped (pip install -r benchmarks/requirements.txt)")
    images = jax.random.uniform(jax.random.PRNGKey(0), (batch, size, size, 3))
    keys = jax.random.split(jax.random.PRNGKey(1), batch)
    rows = []
    for jitter in (False, True):
        seconds = augment.time_batches({name: make(size, jitter) for name, make in chosen.items()},
                                       images, keys, repeats)
        rows.append({"batch": batch, "size": size, "ops": "crop+flip+jitter" if jitter else "crop+flip",
                     **{name: batch / seconds[name] for name in chosen}})
    return rows


def parse_workers(text: str, cores: int) -> list[int]:
    """'1,2,4,8,all' -> sorted distinct counts <= cores ('all' = cores)."""
    counts = {cores if part.strip() == "all" else int(part) for part in text.split(",") if part.strip()}
    return sorted(c for c in counts if 0 <= c <= cores)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="everything tiny, on the CPU (for CI)")
    parser.add_argument("--seconds", type=float, default=None, help="per measurement (default 20; smoke 1)")
    parser.add_argument("--workers", default=None, help="worker counts, e.g. '1,2,4,8,all' (the default; "
                        "smoke '0,1'); 'all' = the CPUs this process may use")
    parser.add_argument("--batch", type=int, default=None, help="global batch (default 256; smoke 16)")
    parser.add_argument("--files", type=int, default=None, help="generated training JPEGs (default 512; smoke 16)")
    parser.add_argument("--prefetch", type=int, default=2, help="host batches prepared ahead (config.data.prefetch)")
    parser.add_argument("--data-dir", default=None, help="an existing ImageFolder (train/, test/) to read instead")
    parser.add_argument("--augment-repeats", type=int, default=None, help="timed calls per library (20; smoke 3)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()

    if args.smoke:  # before JAX initialises its backends
        os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    import ml_collections

    from jaxlab import data, parallel
    from jaxlab.config import base_config
    from jaxlab.data.loader import default_workers
    from train_step import make_jax_step  # benchmarks/train_step.py, beside this script

    if args.smoke:
        model, size, dtype, num_classes, classes = "cnn", 32, "float32", 10, 2
        batch, files = args.batch or 16, args.files or 16
        seconds = 1.0 if args.seconds is None else args.seconds
        workers_text, repeats, aug_batch, aug_libraries = args.workers or "0,1", args.augment_repeats or 3, 16, \
            ["jaxlab"]
    else:
        model, size, dtype, num_classes, classes = "resnet50_imagenet", 224, "bfloat16", 1000, 10
        batch, files = args.batch or 256, args.files or 512
        seconds = 20.0 if args.seconds is None else args.seconds
        workers_text, repeats, aug_batch, aug_libraries = args.workers or "1,2,4,8,all", \
            args.augment_repeats or 20, 128, None
    cores = default_workers()
    worker_counts = parse_workers(workers_text, cores)
    device = jax.devices()[0]
    started = time.perf_counter()
    results = {"device": device.device_kind, "platform": device.platform, "devices": jax.device_count(),
               "jax_version": jax.__version__, "host_cpus": cores, "smoke": args.smoke,
               "settings": {"model": model, "image_size": size, "dtype": dtype, "batch": batch,
                            "seconds_per_measurement": seconds, "prefetch": args.prefetch,
                            "input_bound_below": INPUT_BOUND_BELOW}}
    print(f"device: {device.device_kind} ({device.platform}) x {jax.device_count()}, jax {jax.__version__}, "
          f"{cores} host CPUs")
    errors = []

    # (a) the step alone
    step, state, fixed_batch = make_jax_step(model, size, num_classes, batch, dtype)
    state, per_step, steps, compile_s = time_step_alone(step, state, fixed_batch, seconds)
    del fixed_batch
    alone = batch / per_step
    results["step_alone"] = {"images_per_s": alone, "ms_per_step": 1e3 * per_step, "steps": steps,
                             "first_two_steps_s": compile_s}
    print(f"(a) step alone: {model} {batch} x {size} px {dtype}: {alone:,.1f} images/s "
          f"({1e3 * per_step:.1f} ms/step over {steps} steps; compile + 2 steps {compile_s:.1f} s)")

    # (b) the step fed by the JPEG pipeline
    root = args.data_dir or tempfile.mkdtemp(prefix="jaxlab-accel-check-")
    try:
        if args.data_dir is None:
            start = time.perf_counter()
            results["jpegs"] = write_image_folder(root, files, classes)
            print(f"    wrote {files} JPEGs (shorter side {results['jpegs']['shorter_side_px']} px, "
                  f"{results['jpegs']['mean_kb']:.0f} KB mean) in {time.perf_counter() - start:.1f} s")
        data_config = ml_collections.ConfigDict(base_config().data.to_dict())
        data_config.update(source="image_folder", dir=root, image_size=size, prefetch=args.prefetch)
        dataset = data.load_dataset(data_config)
        mesh = parallel.make_mesh()
        results["fed"] = []
        print(f"(b) fed by the JPEG pipeline ({len(dataset.train)} files, RandomResizedCrop({size}, scale "
              f"(0.08, 1)), DeviceBuffer):")
        print(f"    {'workers':>7} {'images/s':>10} {'fed/alone':>9} {'input-bound':>11} {'first batch s':>13}")
        for workers in worker_counts:
            try:
                state, row = time_fed(step, state, dataset.train, mesh, batch, workers, args.prefetch, seconds)
            except Exception as e:  # record it, measure the rest
                traceback.print_exc()
                errors.append(f"fed, {workers} workers: {type(e).__name__}: {e}")
                results["fed"].append({"workers": workers, "error": errors[-1]})
                continue
            row["fed_over_alone"] = row["images_per_s"] / alone
            row["input_bound"] = row["fed_over_alone"] < INPUT_BOUND_BELOW
            results["fed"].append(row)
            print(f"    {workers:7d} {row['images_per_s']:10,.1f} {row['fed_over_alone']:9.2f} "
                  f"{'yes' if row['input_bound'] else 'no':>11} {row['first_batch_s']:13.1f}")
    finally:
        if args.data_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    del state, step

    # (c) on-device augmentation (augment.py)
    print(f"(c) augmentation, {aug_batch} x {size} px float32 on the device (augment.py, median of {repeats}):")
    try:
        results["augment"] = {"rows": augment_rows(aug_batch, size, repeats, aug_libraries)}
        for row in results["augment"]["rows"]:
            print(f"    {row['ops']:17s} " + "  ".join(f"{k} {v:12,.0f} img/s" for k, v in row.items()
                                                       if k not in ("batch", "size", "ops")))
    except Exception as e:
        traceback.print_exc()
        errors.append(f"augment: {type(e).__name__}: {e}")
        results["augment"] = {"error": errors[-1]}

    results["errors"] = errors
    results["wall_s"] = time.perf_counter() - started
    print(f"total {results['wall_s']:.0f} s" + (f"; {len(errors)} measurement(s) failed: {errors}" if errors else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
