"""Host input-pipeline throughput: jaxlab's JPEG loader against PyTorch's DataLoader and jaxlab's old tfds path.

    python3 -m venv benchmarks/.venv-torch && benchmarks/.venv-torch/bin/pip install torch torchvision
    python benchmarks/input_pipeline.py --json benchmarks/results/input_pipeline_cpu.json

Data: ImageNet-like JPEGs made here from scikit-learn's two sample photos (random crops with aspect 1 to 1.5,
landscape or portrait, resized to a shorter side of 300-430 px, JPEG quality 75-95), `--files` of them in an
ImageFolder tree of 8 classes in a temporary folder (read from the page cache after the first pass: decoding,
not the disk, is timed). Each pipeline makes uint8 training batches of 256 224x224 crops, no model:
- jaxlab: the trainer's path, `data.load_dataset` (source image_folder) then `data.train_batches(dataset.train,
  256, seed, scale_min=0.08, workers=N)`: grain workers each decoding whole batches, torchvision-exact
  RandomResizedCrop(224, (0.08, 1)) with PIL bilinear, (224, 224, 3) uint8. No flip: jaxlab flips on the
  device (the flip is folded into the on-device pipeline), so the host does one op less than the peer.
- torch: `DataLoader(ImageFolder(root, Compose([RandomResizedCrop(224), RandomHorizontalFlip(),
  PILToTensor()])), batch_size=256, num_workers=N)` (shuffled through a RandomSampler of 10^7 draws: one long
  epoch, so torch's epoch-boundary restart is not timed), in benchmarks/.venv-torch (a subprocess), with the
  same N.
- old: jaxlab's previous `tfds` path: `TfdsSource(image_size=256)` read by `TrainBatches` (one background
  thread decoding record by record and squashing each whole image to 256x256). The records are an in-memory
  stand-in for `tfds.data_source`: the same files' bytes decoded by tfds's own `Image.decode_example_np` (PIL
  here, or OpenCV where installed), so ArrayRecord reading (cheap) is the only part left out. It uses one core
  whatever N.
Timing: each pipeline warms up (starts its workers, then takes 3 N + 2 batches so what the workers prefetched
meanwhile is drained), then counts the batches delivered in `--seconds`; the pipelines take turns, `--rounds`
rounds, and the median round is reported. images/s per core = images/s / N (the consuming main process does
nothing but receive batches).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TORCH_PYTHON = ROOT / "benchmarks" / ".venv-torch" / "bin" / "python"
BATCH, CROP, SQUASH, CLASSES = 256, 224, 256, 8
H100_RESNET50 = 5662  # jaxlab's ResNet-50 bf16 step on one H100, images/s (benchmarks/README.md)

TORCH_SCRIPT = r"""
import json, sys, time
import torch
from torch.utils.data import DataLoader, RandomSampler
from torchvision import datasets, transforms

root, workers, seconds, warmup = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
dataset = datasets.ImageFolder(root, transforms.Compose([
    transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.PILToTensor()]))
loader = DataLoader(dataset, batch_size=256, sampler=RandomSampler(dataset, num_samples=10 ** 7),
                    num_workers=workers, drop_last=True)
batches = iter(loader)
for _ in range(warmup):
    images, labels = next(batches)
start = now = time.perf_counter()
count = 0
while now - start < seconds:
    images, labels = next(batches)
    count += 1
    now = time.perf_counter()
assert images.shape == (256, 3, 224, 224) and images.dtype == torch.uint8, (images.shape, images.dtype)
print(json.dumps({"images_per_second": count * 256 / (now - start), "batches": count, "seconds": now - start,
                  "torch": torch.__version__, "torchvision": __import__("torchvision").__version__}))
"""


def make_images(root: Path, count: int, seed: int = 0) -> dict:
    """`count` ImageNet-like JPEGs under root/train/<class>/ (and 8 under root/val/ for image_folder); their
    sizes and byte counts."""
    from sklearn.datasets import load_sample_image

    photos = [load_sample_image(name) for name in ("china.jpg", "flower.jpg")]  # 427 x 640
    rng = np.random.default_rng(seed)
    shapes, sizes = [], []
    for split, n in (("train", count), ("val", 8)):
        for i in range(n):
            photo = photos[int(rng.integers(2))]
            aspect = rng.uniform(1.0, 1.5)
            short = int(rng.integers(200, photo.shape[0] + 1))
            h, w = (short, min(int(short * aspect), photo.shape[1])) if rng.random() < 0.75 else \
                (short, int(short / aspect))  # mostly landscape, as ImageNet
            top, left = int(rng.integers(0, photo.shape[0] - h + 1)), int(rng.integers(0, photo.shape[1] - w + 1))
            target = int(rng.integers(300, 431))
            scale = target / min(h, w)
            image = Image.fromarray(photo[top:top + h, left:left + w]).resize(
                (round(w * scale), round(h * scale)), Image.BICUBIC)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=int(rng.integers(75, 96)))
            path = root / split / f"class{i % CLASSES}" / f"{i:05d}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(buffer.getvalue())
            if split == "train":
                shapes.append(image.size[::-1])
                sizes.append(len(buffer.getvalue()))
    shapes = np.asarray(shapes)
    return {"files": count, "mean_height": float(shapes[:, 0].mean()), "mean_width": float(shapes[:, 1].mean()),
            "mean_kb": float(np.mean(sizes) / 1e3)}


def _time(batches, seconds: float, warmup: int) -> dict:
    try:
        for _ in range(warmup):
            batch = next(batches)
        start = now = time.perf_counter()
        count = 0
        while now - start < seconds:
            batch = next(batches)
            count += 1
            now = time.perf_counter()
    finally:
        batches.close()
    return {"images_per_second": count * len(batch["label"]) / (now - start), "batches": count,
            "seconds": now - start, "shape": list(batch["image"].shape)}


def jaxlab_rate(root: Path, workers: int, seconds: float) -> dict:
    """The trainer's path: load_dataset(image_folder) -> data.train_batches(...) with `workers` processes."""
    import ml_collections

    from jaxlab import data

    config = ml_collections.ConfigDict(dict(
        source="image_folder", name="", dir=str(root), path="", train_split="train", eval_split="val",
        image_size=CROP, seed=0, workers=workers, prefetch=2, eval_resize=0))
    dataset = data.load_dataset(config)
    batches = data.train_batches(dataset.train, BATCH, seed=0, scale_min=0.08, process_index=0, process_count=1)
    result = _time(batches, seconds, 3 * workers + 2)
    assert result["shape"] == [BATCH, CROP, CROP, 3], result["shape"]
    return result


class _TfdsStandIn:
    """tfds.data_source's interface over image files: record i -> {"image": decoded uint8 (H, W, 3), "label"},
    decoded by tfds's own Image feature (PIL, or OpenCV where installed), as tfds.data_source does."""

    def __init__(self, paths: list[str], labels: list[int]):
        import tensorflow_datasets as tfds

        self.paths, self.labels = paths, labels
        self.feature = tfds.features.Image(shape=(None, None, 3))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        with open(self.paths[index], "rb") as f:
            return {"image": self.feature.decode_example_np(f.read()), "label": self.labels[index]}


def old_rate(root: Path, seconds: float) -> dict:
    """jaxlab's previous path for tfds: TrainBatches over TfdsSource(image_size=256), one decoding thread."""
    from jaxlab import data

    folders = sorted(p for p in (root / "train").iterdir() if p.is_dir())
    paths, labels = [], []
    for label, folder in enumerate(folders):
        files = sorted(str(p) for p in folder.iterdir())
        paths += files
        labels += [label] * len(files)
    source = data.TfdsSource(_TfdsStandIn(paths, labels), image_size=SQUASH)
    result = _time(data.TrainBatches(source, BATCH, 0, process_index=0, process_count=1, prefetch=2), seconds, 3)
    assert result["shape"] == [BATCH, SQUASH, SQUASH, 3], result["shape"]
    return result


def torch_rate(root: Path, workers: int, seconds: float) -> dict:
    run = subprocess.run([str(TORCH_PYTHON), "-c", TORCH_SCRIPT, str(root / "train"), str(workers), str(seconds),
                          str(3 * workers + 2)], capture_output=True, text=True, timeout=seconds + 600)
    if run.returncode:
        raise RuntimeError(f"the torch peer failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=512)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--seconds", type=float, default=15.0, help="timed seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    has_torch = TORCH_PYTHON.exists()
    if not has_torch:
        print(f"{TORCH_PYTHON} not found: the torch peer is skipped (see the docstring to create it)")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        images = make_images(root, args.files)
        print(f"{images['files']} JPEGs, mean {images['mean_height']:.0f} x {images['mean_width']:.0f} px, "
              f"{images['mean_kb']:.0f} kB (made in {time.perf_counter() - started:.0f} s); load "
              f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        runs = {key: [] for key in ["old"] + [f"{name}{n}" for n in workers for name in ("jaxlab", "torch")]}
        for r in range(args.rounds):
            for n in workers:
                runs[f"jaxlab{n}"].append(jaxlab_rate(root, n, args.seconds))
                if has_torch:
                    runs[f"torch{n}"].append(torch_rate(root, n, args.seconds))
            runs["old"].append(old_rate(root, args.seconds))
            print(f"round {r + 1}: " + "  ".join(f"{k} {v[-1]['images_per_second']:.0f}" for k, v in runs.items()
                                                 if v) + f"  (load {os.getloadavg()[0]:.2f})")

    median = {k: statistics.median(x["images_per_second"] for x in v) for k, v in runs.items() if v}
    old = median["old"]
    print(f"\nimages/s, median of {args.rounds} rounds of {args.seconds:.0f} s; batches of {BATCH}; "
          f"old = one thread, squash to {SQUASH} (uses 1 core whatever N)")
    print("| workers | jaxlab | jaxlab / core | torch | torch / core | jaxlab / torch | old (1 thread) "
          "| jaxlab / old |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for n in workers:
        jl, tr = median[f"jaxlab{n}"], median.get(f"torch{n}")
        row = {"workers": n, "jaxlab": jl, "jaxlab_per_core": jl / n, "torch": tr, "old": old,
               "jaxlab_over_torch": jl / tr if tr else None, "jaxlab_over_old": jl / old}
        rows.append(row)
        torch_cells = f"{tr:.0f} | {tr / n:.0f} | {jl / tr:.2f}x" if tr else "— | — | —"
        print(f"| {n} | {jl:.0f} | {jl / n:.0f} | {torch_cells} | {old:.0f} | {jl / old:.2f}x |")
    per_core = rows[0]["jaxlab_per_core"]
    print(f"\nper core (1 worker): {per_core:.0f} images/s -> 16 cores ~{16 * per_core:,.0f}, 96 cores "
          f"~{96 * per_core:,.0f} if it scales linearly; one H100 at {H100_RESNET50:,} images/s (ResNet-50) needs "
          f"~{H100_RESNET50 / per_core:.0f} cores")
    if args.json:
        versions = {}
        if has_torch and runs.get(f"torch{workers[0]}"):
            versions = {k: runs[f"torch{workers[0]}"][0][k] for k in ("torch", "torchvision")}
        with open(args.json, "w") as f:
            json.dump({"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                       "images": images, "batch": BATCH, "crop": CROP, "seconds": args.seconds,
                       "rounds": args.rounds, "rows": rows, "runs": runs, "versions": versions,
                       "cores_per_h100": H100_RESNET50 / per_core}, f, indent=2)


if __name__ == "__main__":
    main()
