"""Augmentation throughput: jaxlab.augment against dm-pix and augmax, same machine, same run.

    pip install -e . -r benchmarks/requirements.txt
    python benchmarks/augment.py                 # CPU here; on a GPU it reports memory bandwidth too

Settings: 256 x 32x32x3 and 128 x 224x224x3 float32 images already on the device, output at the
input size. Op sets: "crop+flip" (random-resized crop + horizontal flip) and "crop+flip+jitter"
(+ colour jitter: brightness, contrast, saturation 0.4, hue 0.1). Each library does the closest
equivalent it has, jitted:
- jaxlab: torchvision-exact RandomResizedCrop (scale (0.08, 1), ratio (3/4, 4/3)), antialiased
  bilinear resize, flip (folded into the crop: `flip_p=0.5`), ColorJitter in random order, run
  through its pipeline (`build_pipeline`, the path the trainer uses; on CPU the per-example stages
  run over cache-sized chunks of images).
- jaxlab-vmap: the same ops vmapped over the whole batch in one go, like the peers (no chunking).
- dm-pix: no random-resized crop: a random crop of a fixed 0.6 x 0.6 window resized back, flip,
  random brightness / contrast / saturation / hue in a fixed order.
- augmax: RandomSizedCrop (zoom-based, not torchvision's area/aspect sampler), HorizontalFlip,
  ColorJitter.
The peers are per-example functions vmapped over the batch, as their documentation shows.
Timing: median of `--repeats` calls after 2 warm-up calls, each ended by block_until_ready; the
libraries take turns call by call (round robin), so load from other processes hits them alike.
The script also probes whether each library accepts a per-example TRACED strength (the crop
scale / zoom as a vmapped array), which class-conditional augmentation needs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp

JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)


def jaxlab_fn(size: int, jitter: bool):
    """jaxlab as a user runs it: the pipeline (crop and flip fused, per-example stages over cache-sized
    chunks on CPU). A batch function (keys, images) -> images."""
    from jaxlab.augment import build_pipeline
    jitter_op = "|color_jitter(" + ", ".join(f"{k}={v}" for k, v in JITTER.items()) + ")"
    augment = build_pipeline(f"rrc(size={size})|flip_lr" + (jitter_op if jitter else ""), num_classes=1)
    return lambda keys, images: augment(keys, images, jnp.zeros(images.shape[0], jnp.int32))[0]


def jaxlab_ops_fn(size: int, jitter: bool):
    """jaxlab's ops vmapped over the whole batch like the peers' (no chunking): one example -> one example."""
    from jaxlab.augment import color_jitter, random_resized_crop

    def one(key, image):
        k1, k3 = jax.random.split(key)
        image = random_resized_crop(k1, image, size=size, flip_p=0.5)  # the flip folded into the crop
        return color_jitter(k3, image, **JITTER) if jitter else image
    return one


def dm_pix_fn(size: int, jitter: bool):
    import dm_pix as pix
    crop = max(1, int(round(0.6 * size)))

    def one(key, image):
        k1, k2, k3, k4, k5, k6 = jax.random.split(key, 6)
        image = pix.random_crop(k1, image, (crop, crop, image.shape[-1]))
        image = jax.image.resize(image, (size, size, image.shape[-1]), "bilinear")
        image = pix.random_flip_left_right(k2, image)
        if jitter:
            image = pix.random_brightness(k3, image, JITTER["brightness"])
            image = pix.random_contrast(k4, image, 1 - JITTER["contrast"], 1 + JITTER["contrast"])
            image = pix.random_saturation(k5, image, 1 - JITTER["saturation"], 1 + JITTER["saturation"])
            image = pix.random_hue(k6, image, JITTER["hue"])
        return image
    return one


def augmax_fn(size: int, jitter: bool):
    import augmax
    stages = [augmax.RandomSizedCrop(size, size), augmax.HorizontalFlip()]
    if jitter:
        stages.append(augmax.ColorJitter(**JITTER, p=1.0))
    chain = augmax.Chain(*stages)
    return lambda key, image: chain(key, image)


def traced_strength_probe(library: str) -> str:
    """Try a per-example crop strength passed as a vmapped (traced) array; report what happened."""
    images = jnp.zeros((4, 32, 32, 3))
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    strengths = jnp.array([0.08, 0.08, 1.0, 1.0])
    try:
        if library.startswith("jaxlab"):
            from jaxlab.augment import random_resized_crop
            fn = lambda k, x, s: random_resized_crop(k, x, size=32, scale=(s, 1.0))  # noqa: E731
        elif library == "dm-pix":
            import dm_pix as pix
            fn = lambda k, x, s: pix.random_crop(  # noqa: E731
                k, x, (jnp.int32(32 * s), jnp.int32(32 * s), 3))
        else:
            import augmax
            fn = lambda k, x, s: augmax.RandomSizedCrop(32, 32, zoom_range=(s, 1.0))(k, x)  # noqa: E731
        jax.block_until_ready(jax.jit(jax.vmap(fn))(keys, images, strengths))
        return "yes"
    except Exception as e:  # the probe records failures, it does not hide them
        return f"no ({type(e).__name__})"


BATCH_FUNCTIONS = {"jaxlab"}  # the others are per-example functions, vmapped over the batch here


def time_batches(fns: dict, images, keys, repeats: int) -> dict:
    """Median seconds per call of each jitted fn; the libraries take turns call by call, so a load
    change on the machine hits them alike."""
    batched = {name: jax.jit(fn if name in BATCH_FUNCTIONS else jax.vmap(fn)) for name, fn in fns.items()}
    for fn in batched.values():
        for _ in range(2):
            jax.block_until_ready(fn(keys, images))
    times = {name: [] for name in batched}
    for _ in range(repeats):
        for name, fn in batched.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(keys, images))
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--peak-bandwidth", type=float, default=None,
                        help="device memory bandwidth in GB/s, to report the fraction reached (GPU)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    libraries = {"jaxlab": jaxlab_fn, "jaxlab-vmap": jaxlab_ops_fn}
    for name, make in (("dm-pix", dm_pix_fn), ("augmax", augmax_fn)):
        try:
            make(32, False)
            libraries[name] = make
        except ImportError:
            print(f"{name} not installed: skipped (pip install -r benchmarks/requirements.txt)")
    print(f"device: {jax.devices()[0].device_kind} ({jax.devices()[0].platform}), jax {jax.__version__}")
    results = {"device": jax.devices()[0].device_kind, "platform": jax.devices()[0].platform, "rows": [],
               "traced_strength": {name: traced_strength_probe(name) for name in libraries}}
    for batch, size in ((256, 32), (128, 224)):
        images = jax.random.uniform(jax.random.PRNGKey(0), (batch, size, size, 3))
        keys = jax.random.split(jax.random.PRNGKey(1), batch)
        for jitter in (False, True):
            ops = "crop+flip+jitter" if jitter else "crop+flip"
            row = {"batch": batch, "size": size, "ops": ops}
            seconds = time_batches({name: make(size, jitter) for name, make in libraries.items()},
                                   images, keys, args.repeats)
            for name in libraries:
                row[name] = batch / seconds[name]
                if args.peak_bandwidth:  # bytes read + written once per image, as a lower bound on traffic
                    moved = 2 * batch * size * size * 3 * 4 / seconds[name] / 1e9
                    row[f"{name}_bandwidth_fraction"] = moved / args.peak_bandwidth
            ratios = "  ".join(f"jaxlab/{n} {row['jaxlab'] / row[n]:.2f}x" for n in libraries if n != "jaxlab")
            print(f"{batch:4d} x {size:3d}px {ops:17s} " + "  ".join(
                f"{n} {row[n]:10.0f} img/s" for n in libraries) + f"   {ratios}")
            results["rows"].append(row)
    print("per-example traced crop strength:", results["traced_strength"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
