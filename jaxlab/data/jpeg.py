"""Host-side JPEG decoding and torchvision's PIL crops, one example at a time (numpy + PIL, no JAX).

Module-level pure functions, picklable, for the multi-process loader's workers (jaxlab/data/loader.py):

- `decode_rgb(data, name=, min_size=None)`: any image PIL reads (JPEG; also PNG bytes in a .JPEG file,
  grayscale, CMYK, palette, RGBA, 16-bit) as an RGB PIL image; with min_size, JPEG DCT-domain downscaling
  (`Image.draft`) decodes only the resolution needed.
- `image_size(data, name=)`: (height, width) from the header, without decoding.
- `crop_window(height, width, rng, scale, ratio)`: torchvision's `RandomResizedCrop.get_params`.
- `random_resized_crop(data, rng, size=, scale=, ratio=, name=, draft=True)`: the training transform,
  torchvision's PIL path `F.resized_crop(img, top, left, h, w, size, BILINEAR)` with the window sampled on the
  ORIGINAL image size (never on a pre-squashed copy). The loader passes a per-example `scale` (class-conditional
  strength) looked up by label.
- `resize_center_crop(data, resize=256, crop=224, name=, draft=True)`: the evaluation transform,
  torchvision's `Resize(256)` (PIL bilinear) then `CenterCrop(224)`.

An unreadable, truncated or otherwise corrupt file raises DataError naming the file (`name`). Truncation is
caught by forcing `load()`; PIL's global `ImageFile.LOAD_TRUNCATED_IMAGES` must stay False (its default; this
module never sets it), otherwise PIL pads a truncated JPEG with grey without an error.

Draft (DCT-scaled) decoding. With draft=True a JPEG is decoded at 1/s of its size, s in {1, 2, 4, 8} the
largest such that the region used (the crop window, or the whole image before Resize) is still at least the
output size in both dimensions after scaling; the window's coordinates are scaled by 1/s (floats, exact: the
scaled pixels are the original's s x s blocks, no shift). The DCT scaling is a different low-pass filter (an
8x8 block's low-frequency IDCT) than PIL's antialiased bilinear (triangle) filter, so the output differs from
full-size decoding by a few uint8 levels. Measured on the scikit-learn sample photos (china.jpg, flower.jpg;
427x640, re-encoded at JPEG quality 90), 200 crops per photo and size, counting only crops where draft engages:
    random_resized_crop(size=64, 96, 112): mean |diff| per crop 0.7-1.5 levels on average (flower 0.7-0.9,
    china 1.4-1.5), worst crop 5.1; 99.9th-percentile pixel 8-13 levels; single-pixel max 15-20 typical,
    46 worst (sharp edges). The difference is largest when the scaled window is just above `size` (the
    bilinear step then barely filters).
    resize_center_crop(resize=128, crop=112) (s = 2): mean 0.7-1.2, max 14; (192, 160): mean 1.2-2.7, max 34.
Draft engages only where the window's shorter side is >= 2 * size (resp. the image's shorter side >= 2 * resize),
elsewhere the output is bit-identical to draft=False. For ImageNet-sized images (shorter side ~375 px) at
size=224 / Resize(256) it never engages; it pays on large photos (ImageNet's minority above ~500 px)
and at small output sizes. Since it engages for large windows (weak crops) and not small ones, it changes the
filter with the crop strength: use draft=False where exact torchvision equivalence matters.

Cost, measured on the 2-core CPU machine (one process, Pillow 13, the machine shared with other jobs, so
+-50%), per image including the decode, random_resized_crop(size=224, scale=(0.08, 1)):
    ImageNet-like JPEGs (sklearn photos upscaled to 375x562, quality 90): 1.8 ms draft vs 1.8 ms full (the
    same path: draft never engages there);
    large JPEGs (upscaled to 1500x2248, quality 90): 8 ms draft vs 25 ms full.
resize_center_crop(256, 224): 2.6 ms (375x562) and 8 ms draft vs 26-30 ms full (1500x2248).
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image

from jaxlab.errors import DataError

ATTEMPTS = 10  # torchvision's RandomResizedCrop.get_params tries 10 windows before its fallback
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, Image.DecompressionBombError)


def _fail(name: str, error: BaseException) -> DataError:
    return DataError(f"{name}: cannot decode the image ({type(error).__name__}: {error}); the file is corrupt, "
                     "truncated or not an image: re-download it or drop it from the dataset")


def _open(data: bytes, name: str) -> Image.Image:
    """The lazily opened image (header parsed, pixels not decoded)."""
    try:
        return Image.open(io.BytesIO(data))
    except _DECODE_ERRORS as e:
        raise _fail(name, e) from e


def _reduction(available: tuple[int, int], needed: tuple[int, int]) -> int:
    """The largest s in {1, 2, 4, 8} with available / s >= needed on both axes (1 if none larger fits)."""
    fits = min(available[0] // max(needed[0], 1), available[1] // max(needed[1], 1))
    return next(s for s in (8, 4, 2, 1) if s <= max(fits, 1))


def _draft(image: Image.Image, reduction: int) -> tuple[float, float]:
    """Ask a JPEG to decode at 1/reduction; return the (y, x) factors from original to decoded coordinates.

    PIL's draft picks the largest s in {8, 4, 2, 1} with s <= min(W // w', H // h'); requesting
    (W // s, H // s) gives W // (W // s) in [s, 2s), hence exactly s. The factors are read back from the box
    draft returns (not assumed), so the geometry is right whatever PIL picks. Non-JPEG formats: no draft, 1.
    """
    if reduction <= 1:
        return 1.0, 1.0
    width, height = image.size
    result = image.draft("RGB", (width // reduction, height // reduction))
    if result is None:
        return 1.0, 1.0
    _, box = result
    return box[3] / height, box[2] / width


def _load_rgb(image: Image.Image, name: str) -> Image.Image:
    """Decode the pixels (truncation is an error) and convert to RGB as torchvision's loader does, except that
    16-bit images are scaled to 8 bits (PIL's convert would clip them to 255)."""
    try:
        image.load()
        if image.mode == "RGB":
            return image
        if image.mode in _SIXTEEN_BIT:
            gray = (np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8)
            return Image.fromarray(gray, "L").convert("RGB")
        with warnings.catch_warnings():  # palette transparency: alpha is dropped anyway
            warnings.simplefilter("ignore", UserWarning)
            return image.convert("RGB")
    except _DECODE_ERRORS as e:
        raise _fail(name, e) from e


def image_size(data: bytes, *, name: str) -> tuple[int, int]:
    """(height, width) of an encoded image, read from its header (the pixels are not decoded)."""
    width, height = _open(data, name).size
    return height, width


def decode_rgb(data: bytes, *, name: str, min_size: tuple[int, int] | None = None) -> Image.Image:
    """The RGB PIL image of encoded bytes (any format PIL reads, whatever the file's extension).

    min_size=(h, w): a JPEG may be decoded downscaled by s in {2, 4, 8} (DCT scaling), the largest s keeping the
    decoded image at least (h, w); the result is then ceil(H / s) x ceil(W / s), original coordinates times
    1/s. None: full size. `name` (a path, or e.g. "record 123 of imagenet2012/train") names the file in the
    DataError raised for unreadable or truncated data.
    """
    image = _open(data, name)
    if min_size is not None:
        _draft(image, _reduction((image.size[1], image.size[0]), tuple(min_size)))
    return _load_rgb(image, name)


def crop_window(height: int, width: int, rng: np.random.Generator, scale=(0.08, 1.0),
                ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, h, w): torchvision's `RandomResizedCrop.get_params` on a height x width image.

    Up to 10 draws of area ~ H*W*U(scale), aspect = exp(U(log ratio)), w = round(sqrt(area*aspect)),
    h = round(sqrt(area/aspect)); the first with 0 < w <= W and 0 < h <= H is taken with top ~ U{0..H-h},
    left ~ U{0..W-w}; otherwise the centred whole image clipped to the ratio range. The host twin of
    jaxlab.augment.rrc_params (the on-device sampler), checked against it in tests/test_augment_rrc.py.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(ATTEMPTS):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(data: bytes, rng: np.random.Generator, *, size: int, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3), name: str, draft: bool = True) -> np.ndarray:
    """torchvision's `RandomResizedCrop(size, scale, ratio)` (PIL, bilinear) of encoded bytes: uint8 (size, size, 3).

    The window is `crop_window(H, W, rng, scale, ratio)` on the ORIGINAL image size (H, W) read from the header;
    only `crop_window` draws from rng. draft=False: exactly torchvision's PIL path
    `img.crop((left, top, left + w, top + h)).resize((size, size), BILINEAR)` of the full decode (note: not
    `img.resize(..., box=window)`, which also weighs pixels just outside the window at its border).
    draft=True: the JPEG is decoded at 1/s (s in {1, 2, 4, 8}, the largest with min(h, w) / s >= size) and the
    window, scaled by 1/s as floats, is resized from the smallest integer crop containing it; differs from
    draft=False by a few levels where s > 1 (see the module docstring's measurements), identical where s = 1.
    """
    image = _open(data, name)
    width, height = image.size
    top, left, h, w = crop_window(height, width, rng, scale, ratio)
    fy, fx = _draft(image, _reduction((h, w), (size, size))) if draft else (1.0, 1.0)
    image = _load_rgb(image, name)
    if fy == 1.0 and fx == 1.0:
        out = image.crop((left, top, left + w, top + h)).resize((size, size), Image.BILINEAR)
    else:
        x0, y0, x1, y1 = left * fx, top * fy, (left + w) * fx, (top + h) * fy
        cx0, cy0 = math.floor(x0), math.floor(y0)
        cx1, cy1 = min(math.ceil(x1), image.width), min(math.ceil(y1), image.height)
        out = image.crop((cx0, cy0, cx1, cy1)).resize(
            (size, size), Image.BILINEAR, box=(x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0))
    return np.array(out, dtype=np.uint8)


def resize_center_crop(data: bytes, *, resize: int = 256, crop: int = 224, name: str,
                       draft: bool = True) -> np.ndarray:
    """torchvision's eval transform `Resize(resize)` then `CenterCrop(crop)` (PIL, bilinear): uint8 (crop, crop, 3).

    Resize: the shorter side to `resize`, the longer to int(resize * long / short) (torchvision's
    `_compute_resized_output_size`; an image already that size is left alone). CenterCrop: top =
    int(round((H' - crop) / 2.0)), likewise left. draft=True: a JPEG whose shorter side is >= 2 * resize is
    decoded at 1/s (the largest s keeping the shorter side >= resize) and resized from the scaled image (box
    covering the whole original), a few levels off the full decode; draft=False is torchvision's path.
    """
    if crop > resize:
        raise ValueError(f"resize_center_crop: crop={crop} > resize={resize} (torchvision would pad)")
    image = _open(data, name)
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = resize, int(resize * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    fy, fx = _draft(image, _reduction((short, short), (resize, resize))) if draft else (1.0, 1.0)
    image = _load_rgb(image, name)
    if fy != 1.0 or fx != 1.0:
        image = image.resize((new_w, new_h), Image.BILINEAR, box=(0, 0, width * fx, height * fy))
    elif (new_h, new_w) != (height, width):
        image = image.resize((new_w, new_h), Image.BILINEAR)
    top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))
    return np.array(image.crop((left, top, left + crop, top + crop)), dtype=np.uint8)
