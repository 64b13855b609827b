"""Pure augmentation ops on float images in [0, 1].

Per-example ops are `op(key, image, **params) -> image` on one (H, W, C) image; the pipeline
vmaps them over the batch. Every numeric parameter may be a traced scalar (a per-example
strength), so parameters only enter through jnp.where / masks; sizes and paddings that set
array shapes are static Python ints. Deterministic ops take no key. Batch ops (mixup, cutmix)
take the local batch and its (B, K) soft targets and mix both.

Input ranks are checked with chex (static shapes, so also under jit and vmap): a per-example op
given a batch would otherwise flip or crop the wrong axes silently.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

# torchvision's tensor rgb_to_grayscale (also inside its adjust_saturation / adjust_contrast, which the device ops
# mirror): 0.2989 for red, where PIL's convert("L") (ITU-R 601-2) uses 0.299.
LUMA_WEIGHTS = (0.2989, 0.587, 0.114)


def grayscale(image: jax.Array) -> jax.Array:
    """Luma 0.2989 R + 0.587 G + 0.114 B (torchvision's tensor path) of (..., C) images as (..., 1); one channel is
    returned as is.

    A weighted sum rather than a matmul, so that no backend lowers it to reduced (TF32/bf16) precision.
    """
    channels = image.shape[-1]
    if channels == 1:
        return image
    if channels != 3:
        raise ValueError(f"grayscale needs 1 or 3 channels, got {channels}")
    r, g, b = LUMA_WEIGHTS
    return r * image[..., 0:1] + g * image[..., 1:2] + b * image[..., 2:3]


def _random_flip(key: jax.Array, image: jax.Array, p, axis: int) -> jax.Array:
    return jnp.where(jax.random.uniform(key) < p, jnp.flip(image, axis), image)


def random_flip_left_right(key: jax.Array, image: jax.Array, *, p=0.5) -> jax.Array:
    """torchvision RandomHorizontalFlip: mirror the width axis with probability p (U[0, 1) < p)."""
    chex.assert_rank(image, 3)
    return _random_flip(key, image, p, axis=1)


def random_flip_up_down(key: jax.Array, image: jax.Array, *, p=0.5) -> jax.Array:
    """torchvision RandomVerticalFlip: mirror the height axis with probability p."""
    chex.assert_rank(image, 3)
    return _random_flip(key, image, p, axis=0)


def pad_and_random_crop(key: jax.Array, image: jax.Array, *, padding: int = 4, max_shift=None,
                        mode: str = "constant") -> jax.Array:
    """torchvision RandomCrop(size=(H, W), padding=padding): pad every side, cut a random H x W window.

    mode is jnp.pad's (= torchvision's padding_mode): "constant" (zeros), "edge", "reflect",
    "symmetric". The window's top and left are independent and uniform on
    {padding - m .. padding + m} with m = round(max_shift) clipped to [0, padding] (traced allowed;
    default m = padding, i.e. torchvision's {0 .. 2 padding}); m = 0 returns the image unchanged.
    """
    chex.assert_rank(image, 3)
    height, width, channels = image.shape
    padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)), mode=mode)
    shift = padding if max_shift is None else jnp.clip(jnp.round(max_shift), 0, padding).astype(jnp.int32)
    top, left = padding + jax.random.randint(key, (2,), -shift, shift + 1)
    return jax.lax.dynamic_slice(padded, (top, left, 0), (height, width, channels))


def _shift_hue(image: jax.Array, shift) -> jax.Array:
    """torchvision adjust_hue: rotate the HSV hue of (..., 3) RGB by `shift` (fractions of the circle).

    RGB -> HSV as colorsys and torchvision: V = max, chroma = max - min, S = chroma / V, hue sector
    h6 = 6 H in [-1, 5) chosen by which channel is the maximum (ties to R, then G; 0 where grey).
    HSV -> RGB: V - V S clip(min(k, 4 - k), 0, 1), k = (n + 6 H') mod 6, n = 5, 3, 1 for R, G, B.
    With H' = (H + shift) mod 1, k = (n + h6 + 6 shift) mod 6 (one mod per channel, none for H or
    H'): the round trip fused into one elementwise pass without stacking an HSV image, about 4x
    faster than converting to HSV and back on CPU.
    """
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    value = jnp.maximum(jnp.maximum(r, g), b)
    chroma = value - jnp.minimum(jnp.minimum(r, g), b)
    saturation = chroma / jnp.where(value > 0, value, 1.0)
    safe = jnp.where(chroma > 0, chroma, 1.0)
    sector = jnp.where(value == r, (g - b) / safe,
                       jnp.where(value == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    shifted = sector + 6.0 * shift

    def channel(n):
        k = n + shifted
        k = k - 6.0 * jnp.floor(k / 6.0)  # k mod 6
        return value - value * saturation * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)
    return jnp.stack([channel(5.0), channel(3.0), channel(1.0)], axis=-1)


def _jitter_params(key: jax.Array, brightness, contrast, saturation, hue):
    """ColorJitter's random draws: factors (b, c, s), hue shift h, hue's position in the order, blend order.

    b ~ U[max(0, 1 - brightness), 1 + brightness] (c, s likewise), h ~ U[-hue, hue]. The order is a
    uniform permutation of the 4 adjustments (torchvision's randperm(4)), drawn as the position of
    hue ~ U{0..3} and an independent uniform order of the three blends: 4 x 6 = 24 orders, each 1/24.
    """
    factor_key, position_key, order_key = jax.random.split(key, 3)
    blends = jnp.asarray([brightness, contrast, saturation], jnp.float32)
    hue = jnp.asarray(hue, jnp.float32)
    draws = jax.random.uniform(factor_key, (4,), minval=jnp.append(jnp.maximum(0.0, 1.0 - blends), -hue),
                               maxval=jnp.append(1.0 + blends, hue))
    return draws[:3], draws[3], jax.random.randint(position_key, (), 0, 4), jax.random.permutation(order_key, 3)


def _jitter_apply(image: jax.Array, factors, hue_shift, hue_position, order) -> jax.Array:
    """Apply blends order[0..2] (0 brightness, 1 contrast, 2 saturation) with hue inserted after `hue_position` of them.

    Blend with factor f: clip(f x + (1 - f) t, 0, 1) with t = 0 (brightness), mean luma (contrast),
    per-pixel luma (saturation). A factor of exactly 1 (or a hue shift of 0) skips the step, which
    is torchvision's treatment of a magnitude of 0. One-channel images skip saturation and hue (torchvision).
    """
    color = image.shape[-1] == 3
    if not color:
        factors = factors.at[2].set(1.0)

    def blend(x, slot, active):
        op = order[slot]
        factor = factors[op]
        luma = grayscale(x)
        target = jnp.where(op == 2, luma, jnp.where(op == 1, jnp.mean(luma), 0.0))
        blended = jnp.clip(factor * x + (1.0 - factor) * target, 0.0, 1.0)
        return jnp.where(active & (factor != 1.0), blended, x)

    for slot in range(3):
        image = blend(image, slot, slot < hue_position)
    if color:
        image = jnp.where(hue_shift != 0, _shift_hue(image, hue_shift), image)
    for slot in range(3):
        image = blend(image, slot, slot >= hue_position)
    return image


def color_jitter(key: jax.Array, image: jax.Array, *, brightness=0.4, contrast=0.4, saturation=0.4,
                 hue=0.1) -> jax.Array:
    """torchvision ColorJitter: brightness, contrast, saturation and hue adjustments in a random order.

    Factors b, c, s ~ U[max(0, 1 - m), 1 + m], hue shift ~ U[-hue, hue] (hue in [0, 0.5]); each
    blend clips to [0, 1]; a magnitude of 0 is an exact identity for its adjustment; on one
    channel saturation and hue are identities. Random order without branching: under vmap a
    lax.switch on a per-example index evaluates every branch, so a switch over 4 positions runs
    the costly HSV round trip 4 times (24 times for a switch over the 24 orders). Drawing hue's
    position and the blends' order separately runs hue once and six cheap masked blends
    (the three blend slots before hue and after it).
    """
    chex.assert_rank(image, 3)
    return _jitter_apply(image, *_jitter_params(key, brightness, contrast, saturation, hue))


def random_grayscale(key: jax.Array, image: jax.Array, *, p=0.1) -> jax.Array:
    """torchvision RandomGrayscale: with probability p every channel becomes the luma (C is kept)."""
    chex.assert_rank(image, 3)
    gray = jnp.broadcast_to(grayscale(image), image.shape)
    return jnp.where(jax.random.uniform(key) < p, gray, image)


def _channel_stats(image: jax.Array, mean, std) -> tuple[jax.Array, jax.Array]:
    """mean and std as arrays of image.dtype, checked to be scalars or of length 1 or C: a (C, 1) mean, or
    a length-3 mean on a one-channel image, would otherwise broadcast into a wrong shape silently. Concrete
    (not traced) values are also checked finite with std > 0 (a zero std would turn the images into inf/NaN)."""
    stats = [jnp.asarray(mean, image.dtype), jnp.asarray(std, image.dtype)]
    chex.assert_rank(stats, {0, 1})
    for value in stats:
        if value.ndim and value.shape[0] != 1:
            chex.assert_axis_dimension(image, -1, value.shape[0])
    for name, value in (("mean", mean), ("std", std)):
        try:
            values = np.asarray(value, np.float64)
        except (TypeError, jax.errors.ConcretizationTypeError):  # traced: checked where it was built
            continue
        if not np.all(np.isfinite(values)) or (name == "std" and np.any(values <= 0)):
            raise ValueError(f"{name}={values.tolist()} must be finite" + (" and > 0" if name == "std" else ""))
    return stats[0], stats[1]


def normalize(image: jax.Array, *, mean, std) -> jax.Array:
    """Per-channel (x - mean) / std; mean and std are scalars or length-C sequences."""
    mean, std = _channel_stats(image, mean, std)
    return (image - mean) / std


def denormalize(image: jax.Array, *, mean, std) -> jax.Array:
    """Inverse of normalize: x std + mean."""
    mean, std = _channel_stats(image, mean, std)
    return image * std + mean


def center_crop_and_resize(image: jax.Array, *, size: int, crop_ratio: float = 0.875) -> jax.Array:
    """ImageNet evaluation: torchvision Resize(round(size / crop_ratio)) then CenterCrop(size).

    The shorter side becomes S = round(size / crop_ratio), the longer int(S * long / short)
    (torchvision's truncation); bilinear with antialiasing. The crop starts at
    round((resized - size) / 2) on each axis. Computed as one scale_and_translate straight to the
    size x size window (resize and crop in one, the discarded border is never interpolated).
    """
    if not 0 < crop_ratio <= 1:
        raise ValueError(f"crop_ratio must be in (0, 1], got {crop_ratio}")
    chex.assert_rank(image, 3)
    height, width, channels = image.shape
    short = round(size / crop_ratio)
    if height <= width:
        new_height, new_width = short, int(short * width / height)
    else:
        new_height, new_width = int(short * height / width), short
    top, left = round((new_height - size) / 2), round((new_width - size) / 2)
    return jax.image.scale_and_translate(
        image, (size, size, channels), (0, 1),
        scale=jnp.array([new_height / height, new_width / width], jnp.float32),
        translation=jnp.array([-top, -left], jnp.float32), method="bilinear", antialias=True)


def _mix_weight(key: jax.Array, alpha) -> jax.Array:
    """lam ~ Beta(alpha, alpha); alpha = 0 gives lam = 1 exactly (mixing off)."""
    on = jnp.asarray(alpha, jnp.float32) > 0
    safe_alpha = jnp.where(on, alpha, 1.0)
    return jnp.where(on, jax.random.beta(key, safe_alpha, safe_alpha), 1.0)


def _check_batch(images: jax.Array, targets: jax.Array) -> None:
    """(B, H, W, C) images and (B, K) targets: a rank or batch mismatch would broadcast in the mix."""
    chex.assert_rank([images, targets], [4, 2])
    chex.assert_equal_shape_prefix([images, targets], 1)


def mixup(key: jax.Array, images: jax.Array, targets: jax.Array, *, alpha=0.2) -> tuple[jax.Array, jax.Array]:
    """mixup (Zhang et al. 2018): x = lam x + (1 - lam) x', y likewise, one lam ~ Beta(alpha, alpha) per batch.

    The partner x' of example i is example B - 1 - i (the batch reversed, as timm): no gather and
    no extra randomness; with odd B the middle example is mixed with itself. alpha = 0: identity
    (a pipeline requires alpha > 0: leave the op out instead).
    """
    _check_batch(images, targets)
    lam = _mix_weight(key, alpha)
    return ((lam * images + (1.0 - lam) * images[::-1]).astype(images.dtype),
            (lam * targets + (1.0 - lam) * targets[::-1]).astype(targets.dtype))


def cutmix(key: jax.Array, images: jax.Array, targets: jax.Array, *, alpha=1.0) -> tuple[jax.Array, jax.Array]:
    """CutMix (Yun et al. 2019): paste the partner's box into every image, one box per batch.

    lam ~ Beta(alpha, alpha); the box is floor(H sqrt(1 - lam)) x floor(W sqrt(1 - lam)), its rows
    [cy - h // 2, cy - h // 2 + h) (columns likewise) with centre (cy, cx) uniform over the pixels,
    clipped to the image. Targets use the clipped box: lam' = 1 - box_area / (H W), y = lam' y + (1 - lam') y'.
    Partner: the batch reversed (as mixup). alpha = 0: identity.
    """
    _check_batch(images, targets)
    _, height, width, _ = images.shape
    lam_key, centre_key = jax.random.split(key)
    sides = jnp.array([height, width])
    box = jnp.floor(sides * jnp.sqrt(1.0 - _mix_weight(lam_key, alpha))).astype(jnp.int32)
    centre = jax.random.randint(centre_key, (2,), 0, sides)
    start = jnp.clip(centre - box // 2, 0, sides)
    stop = jnp.clip(centre - box // 2 + box, 0, sides)
    rows, cols = jnp.arange(height), jnp.arange(width)
    mask = (((rows >= start[0]) & (rows < stop[0]))[:, None] & ((cols >= start[1]) & (cols < stop[1]))[None, :])
    lam = 1.0 - jnp.prod(stop - start) / (height * width)
    return (jnp.where(mask[None, :, :, None], images[::-1], images),
            (lam * targets + (1.0 - lam) * targets[::-1]).astype(targets.dtype))
