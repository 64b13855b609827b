"""Reference outputs of torchvision and timm for jaxlab.augment: tests/fixtures/torchvision_reference.npz.

    benchmarks/.venv-torch/bin/python benchmarks/torchvision_reference.py   # torch, torchvision, timm, numpy

Last written with torch 2.14.1 (run on the CPU), torchvision 0.29.1, timm 1.0.31, numpy 2.4.6 (the versions
are stored in the file too). tests/test_augment_reference.py compares jaxlab against the file with numpy and
jaxlab only, so the tests need neither torch nor timm. Every case stores its inputs, its parameters and
torchvision's (or timm's) output; input images are stored as uint8 and used as uint8 / 255 in float32
(channels last, as jaxlab), and are small so that the file stays small (about 270 KiB):
- crop_*: `resized_crop(image, top, left, h, w, size, antialias)` (bilinear, float tensor), then `hflip` if
  flipped: windows on each image edge and inside, magnified (8 -> 32 px) and shrunk (28 -> 12 px), non-square,
  rows magnified while columns shrink, and without antialiasing; plus a CIFAR-like batch (32 px images, 32 px
  output) with windows from `RandomResizedCrop.get_params`.
- center_*: `resize(image, [round(size / crop_ratio)], antialias=True)` then `center_crop(image, [size])`
  (the ImageNet evaluation transform): shrinking, magnifying, landscape and portrait.
- jitter_*: `adjust_brightness / adjust_contrast / adjust_saturation / adjust_hue` with fixed factors in each of
  the 24 orders (ColorJitter's steps), on an RGB and a one-channel image.
- gray: `rgb_to_grayscale(image, num_output_channels=1)`.
- mix_*: timm `Mixup(mode="batch")` with its draw fixed (`_params_per_batch` returns the given lam and
  mixup-or-cutmix choice) and the CutMix box timm's `rand_bbox` draws recorded; targets from `mixup_target`
  with label smoothing.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import timm
import timm.data.mixup as timm_mixup
import torch
import torchvision
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests", "fixtures",
                   "torchvision_reference.npz")

# (image height, width, top, left, h, w, out_h, out_w, antialias, flip)
CROPS = [
    (32, 32, 0, 0, 8, 8, 32, 32, True, False),      # magnified 4x, window on the top and left edges
    (32, 32, 24, 24, 8, 8, 32, 32, True, False),    # on the bottom and right edges
    (32, 32, 11, 13, 8, 8, 32, 32, True, False),    # inside
    (32, 32, 0, 20, 12, 12, 32, 32, True, True),    # top and right edges, flipped
    (32, 32, 5, 0, 20, 9, 24, 32, True, False),     # non-square, left edge
    (32, 32, 0, 0, 28, 28, 12, 12, True, False),    # shrunk 28 -> 12 (antialiased), top-left
    (32, 32, 4, 4, 28, 28, 12, 12, True, False),    # bottom-right
    (32, 32, 2, 1, 28, 28, 12, 12, True, True),     # inside, flipped
    (32, 32, 3, 0, 28, 17, 12, 10, True, False),    # non-square shrink
    (32, 32, 0, 2, 10, 30, 16, 16, True, False),    # rows magnified, columns shrunk
    (16, 16, 0, 0, 16, 16, 10, 10, True, False),    # the whole image shrunk
    (32, 32, 0, 4, 28, 28, 12, 12, False, False),   # shrunk without antialiasing: plain bilinear
    (16, 24, 6, 0, 10, 24, 16, 16, False, True),    # non-square image, no antialiasing, flipped
]
CIFAR_CROPS = 8  # 32 px images, RandomResizedCrop windows, resized to 32 px
# (image height, width, size, crop_ratio)
CENTER_CROPS = [(20, 28, 16, 0.875), (28, 20, 16, 0.875), (12, 14, 16, 0.875), (24, 24, 20, 1.0)]
JITTER_FACTORS = (1.3, 0.7, 1.4, 0.08)  # brightness, contrast, saturation factors and the hue shift
# (use_cutmix, lam, label_smoothing, numpy seed of timm's box draw)
MIXES = [(False, 0.3, 0.1, 0), (False, 0.7, 0.0, 0), (True, 0.6, 0.1, 0), (True, 0.3, 0.1, 3),
         (True, 0.5, 0.0, 7), (False, 1.0, 0.1, 0)]
MIX_CLASSES = 5


def _image(rng, height, width, channels=3):
    """A random uint8 image (stored as such); the ops see it as uint8 / 255 in float32."""
    return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)


def _chw(image):
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32) / 255)


def _hwc(tensor):
    return tensor.numpy().transpose(1, 2, 0).astype(np.float32)


def crop_cases(rng) -> dict:
    cases = {}
    for i, (height, width, top, left, h, w, out_h, out_w, antialias, flip) in enumerate(CROPS):
        image = _image(rng, height, width)
        out = F.resized_crop(_chw(image), top, left, h, w, [out_h, out_w], antialias=antialias)
        out = F.horizontal_flip(out) if flip else out
        cases[f"crop_{i}_image"] = image
        cases[f"crop_{i}_params"] = np.array([top, left, h, w, out_h, out_w, antialias, flip], np.int64)
        cases[f"crop_{i}_expected"] = _hwc(out)
    images = np.stack([_image(rng, 32, 32) for _ in range(CIFAR_CROPS)])
    torch.manual_seed(0)
    windows = [T.RandomResizedCrop.get_params(_chw(image), [0.08, 1.0], [3 / 4, 4 / 3]) for image in images]
    cases["cifar_images"] = images
    cases["cifar_windows"] = np.array(windows, np.int64)  # (top, left, h, w)
    cases["cifar_expected"] = np.stack([_hwc(F.resized_crop(_chw(image), *window, [32, 32], antialias=True))
                                        for image, window in zip(images, windows)])
    return cases


def center_crop_cases(rng) -> dict:
    cases = {}
    for i, (height, width, size, crop_ratio) in enumerate(CENTER_CROPS):
        image = _image(rng, height, width)
        resized = F.resize(_chw(image), [round(size / crop_ratio)], antialias=True)
        cases[f"center_{i}_image"] = image
        cases[f"center_{i}_params"] = np.array([size, crop_ratio], np.float64)
        cases[f"center_{i}_expected"] = _hwc(F.center_crop(resized, [size, size]))
    return cases


def jitter_cases(rng) -> dict:
    """Every order of the four steps (0 brightness, 1 contrast, 2 saturation, 3 hue) with JITTER_FACTORS."""
    steps = [lambda x: F.adjust_brightness(x, JITTER_FACTORS[0]), lambda x: F.adjust_contrast(x, JITTER_FACTORS[1]),
             lambda x: F.adjust_saturation(x, JITTER_FACTORS[2]), lambda x: F.adjust_hue(x, JITTER_FACTORS[3])]
    orders = list(itertools.permutations(range(4)))
    cases = {"jitter_factors": np.array(JITTER_FACTORS, np.float64), "jitter_orders": np.array(orders, np.int64)}
    for name, channels in (("rgb", 3), ("gray", 1)):
        image = _image(rng, 8, 8, channels)
        outputs = []
        for order in orders:
            x = _chw(image)
            for step in order:
                x = steps[step](x)
            outputs.append(_hwc(x))
        cases[f"jitter_{name}_image"] = image
        cases[f"jitter_{name}_expected"] = np.stack(outputs)
    return cases


def grayscale_cases(rng) -> dict:
    image = _image(rng, 8, 8)
    return {"gray_image": image, "gray_expected": _hwc(F.rgb_to_grayscale(_chw(image), num_output_channels=1))}


def mix_cases(rng) -> dict:
    """timm's batch-mode Mixup with the draw fixed; the CutMix box is timm's own, recorded from rand_bbox."""
    boxes = []
    draw_box = timm_mixup.rand_bbox

    def recording_box(*args, **kwargs):
        boxes.append(draw_box(*args, **kwargs))
        return boxes[-1]

    timm_mixup.rand_bbox = recording_box
    cases = {"mix_classes": np.array(MIX_CLASSES)}
    labels = np.array([0, 3, 1, 4])
    for i, (use_cutmix, lam, smoothing, seed) in enumerate(MIXES):
        images = np.stack([_image(rng, 8, 8) for _ in labels])
        mixer = timm_mixup.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=smoothing,
                                 num_classes=MIX_CLASSES, mode="batch")
        mixer._params_per_batch = lambda lam=lam, use_cutmix=use_cutmix: (lam, use_cutmix)
        boxes.clear()
        np.random.seed(seed)
        mixed, targets = mixer(torch.stack([_chw(image) for image in images]), torch.from_numpy(labels))
        box = [int(v) for v in boxes[0]] if boxes else [0, 0, 0, 0]  # (yl, yh, xl, xh); no box for mixup
        cases[f"mix_{i}_images"] = images
        cases[f"mix_{i}_labels"] = labels
        cases[f"mix_{i}_params"] = np.array([use_cutmix, lam, smoothing, *box], np.float64)
        cases[f"mix_{i}_expected_images"] = mixed.numpy().transpose(0, 2, 3, 1).astype(np.float32)
        cases[f"mix_{i}_expected_targets"] = targets.numpy().astype(np.float32)
    timm_mixup.rand_bbox = draw_box
    return cases


def main() -> None:
    rng = np.random.default_rng(0)
    cases = {"versions": np.array([f"torch {torch.__version__}", f"torchvision {torchvision.__version__}",
                                   f"timm {timm.__version__}", f"numpy {np.__version__}"])}
    for make in (crop_cases, center_crop_cases, jitter_cases, grayscale_cases, mix_cases):
        cases.update(make(rng))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    np.savez_compressed(OUT, **cases)
    print(f"wrote {len(cases)} arrays, {os.path.getsize(OUT) / 1024:.0f} KiB: {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
