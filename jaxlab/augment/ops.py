"""Pure augmentation ops on float images in [0, 1].

Per-example ops are `op(key, image, **params) -> image` on one (H, W, C) image; the pipeline
vmaps them over the batch. Every numeric parameter may be a traced scalar (a per-example
strength), so parameters only enter through jnp.where / masks; sizes and paddings that set
array shapes are static Python ints. Deterministic ops take no key. Batch ops take the local
batch and its (B, K) soft targets and mix both, pairing example i with example B - 1 - i (the
batch reversed, timm's batch mode; torchvision v2's MixUp / CutMix pair with the batch rolled by one):
- mixup: every image blended with its partner, one lam ~ Beta(alpha, alpha) per batch.
- cutmix: one box per batch (timm's rand_bbox) pasted from the partner, labels weighted by its area
  (torchvision v2's box sides differ: 2 int(W sqrt(1 - lam) / 2), even).
- mixup_cutmix: timm's Mixup(mode="batch"): mixup or cutmix per batch (switch_prob), label smoothing.

Input ranks are checked with chex (static shapes, so also under jit and vmap): a per-example op
given a batch would otherwise flip or crop the wrong axes silently.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.augment.rrc import resample_window

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
    """ImageNet evaluation: torchvision Resize(round(size / crop_ratio)) then CenterCrop(size), float32.

    The shorter side becomes S = round(size / crop_ratio), the longer int(S * long / short)
    (torchvision's truncation), by `resample_window` over the whole image (torch's antialiased
    bilinear); the crop starts at round((resized - size) / 2) on each axis. Each axis is cut
    right after it is resized, so the column pass only sees the kept rows.
    """
    if not 0 < crop_ratio <= 1:
        raise ValueError(f"crop_ratio must be in (0, 1], got {crop_ratio}")
    chex.assert_rank(image, 3)
    height, width, _ = image.shape
    short = round(size / crop_ratio)
    if height <= width:
        new_height, new_width = short, int(short * width / height)
    else:
        new_height, new_width = int(short * height / width), short
    top, left = round((new_height - size) / 2), round((new_width - size) / 2)
    rows = resample_window(image.astype(jnp.float32), 0, 0, height, new_height)[top:top + size]
    return resample_window(rows, 1, 0, width, new_width)[:, left:left + size]


def _mix_weight(key: jax.Array, alpha) -> jax.Array:
    """lam ~ Beta(alpha, alpha); alpha = 0 gives lam = 1 exactly (mixing off)."""
    on = jnp.asarray(alpha, jnp.float32) > 0
    safe_alpha = jnp.where(on, alpha, 1.0)
    return jnp.where(on, jax.random.beta(key, safe_alpha, safe_alpha), 1.0)


def _check_batch(images: jax.Array, targets: jax.Array) -> None:
    """(B, H, W, C) images and (B, K) targets: a rank or batch mismatch would broadcast in the mix."""
    chex.assert_rank([images, targets], [4, 2])
    chex.assert_equal_shape_prefix([images, targets], 1)


def _mix_with_reversed(images: jax.Array, targets: jax.Array, image_weight, lam) -> tuple[jax.Array, jax.Array]:
    """x_i = w x_i + (1 - w) x_{B-1-i} with w = image_weight (a scalar or an (H, W, 1) map),
    y_i = lam y_i + (1 - lam) y_{B-1-i}: example i's partner is the batch reversed (timm's batch mode)."""
    return ((image_weight * images + (1.0 - image_weight) * images[::-1]).astype(images.dtype),
            (lam * targets + (1.0 - lam) * targets[::-1]).astype(targets.dtype))


def _cutmix_box(key: jax.Array, lam, height: int, width: int) -> tuple[jax.Array, jax.Array]:
    """timm's rand_bbox: sides (int(H sqrt(1 - lam)), int(W sqrt(1 - lam))), centre (cy, cx) uniform over the
    pixels, rows [cy - h // 2, cy + (h + 1) // 2) (columns likewise) clipped to the image. (start, stop), (2,) each."""
    sides = jnp.array([height, width])
    box = jnp.floor(sides * jnp.sqrt(1.0 - lam)).astype(jnp.int32)
    centre = jax.random.randint(key, (2,), 0, sides)
    return jnp.clip(centre - box // 2, 0, sides), jnp.clip(centre + (box + 1) // 2, 0, sides)


def _cutmix_weights(start: jax.Array, stop: jax.Array, height: int, width: int) -> tuple[jax.Array, jax.Array]:
    """The box [start, stop) as an (H, W, 1) image weight (0 inside: the partner's pixels, 1 outside) and the
    label weight it implies, lam = 1 - box area / (H W) (timm's correct_lam)."""
    rows, cols = jnp.arange(height), jnp.arange(width)
    inside = (((rows >= start[0]) & (rows < stop[0]))[:, None] & ((cols >= start[1]) & (cols < stop[1]))[None, :])
    return jnp.where(inside, 0.0, 1.0)[:, :, None], 1.0 - jnp.prod(stop - start) / (height * width)


def _mixup_or_cutmix(images: jax.Array, targets: jax.Array, use_cutmix, lam, start, stop):
    """timm's Mixup._mix_batch given its draw: with use_cutmix, paste the partner's box [start, stop) (rows, columns)
    and mix the targets by the box's area; otherwise blend images and targets with lam."""
    box_weight, box_lam = _cutmix_weights(start, stop, images.shape[1], images.shape[2])
    return _mix_with_reversed(images, targets, jnp.where(use_cutmix, box_weight, lam),
                              jnp.where(use_cutmix, box_lam, lam))


def mixup(key: jax.Array, images: jax.Array, targets: jax.Array, *, alpha=0.2) -> tuple[jax.Array, jax.Array]:
    """mixup (Zhang et al. 2018): x = lam x + (1 - lam) x', y likewise, one lam ~ Beta(alpha, alpha) per batch.

    Partner x' of example i: example B - 1 - i (the batch reversed, as timm; torchvision v2's MixUp
    pairs with the batch rolled by one); no gather and no extra randomness; with odd B the middle
    example is mixed with itself. alpha = 0: identity (a pipeline requires alpha > 0: leave the op out instead).
    """
    _check_batch(images, targets)
    lam = _mix_weight(key, alpha)
    return _mix_with_reversed(images, targets, lam, lam)


def cutmix(key: jax.Array, images: jax.Array, targets: jax.Array, *, alpha=1.0) -> tuple[jax.Array, jax.Array]:
    """CutMix (Yun et al. 2019): paste the partner's box into every image, one box per batch.

    lam ~ Beta(alpha, alpha); the box is timm's rand_bbox (`_cutmix_box`): sides floor(H sqrt(1 - lam))
    x floor(W sqrt(1 - lam)) around a uniform centre, clipped to the image. Targets use the clipped box:
    lam' = 1 - box_area / (H W), y = lam' y + (1 - lam') y'. Partner: the batch reversed (as timm;
    torchvision v2's CutMix pairs with the batch rolled by one, and its box sides are
    2 int(W sqrt(1 - lam) / 2) x 2 int(H sqrt(1 - lam) / 2), even). alpha = 0: identity.
    """
    _check_batch(images, targets)
    lam_key, box_key = jax.random.split(key)
    _, height, width, _ = images.shape
    box_weight, lam = _cutmix_weights(*_cutmix_box(box_key, _mix_weight(lam_key, alpha), height, width), height, width)
    return _mix_with_reversed(images, targets, box_weight, lam)


def mixup_cutmix(key: jax.Array, images: jax.Array, targets: jax.Array, *, mixup_alpha=0.8, cutmix_alpha=1.0,
                 switch_prob=0.5, label_smoothing=0.1, mix_prob=1.0) -> tuple[jax.Array, jax.Array]:
    """timm's Mixup(mode="batch", correct_lam=True): mixup OR CutMix per batch, with label smoothing.

    With probability mix_prob the batch is mixed: CutMix with probability switch_prob when both alphas
    are > 0 (only the one whose alpha is > 0 otherwise), lam ~ Beta(alpha, alpha) of the chosen one,
    the CutMix box timm's rand_bbox and lam corrected to its clipped area; otherwise lam = 1 (no mix).
    Targets: optax.smooth_labels(y, label_smoothing), (1 - s) y + s / K (timm's mixup_target on one-hot y:
    on value 1 - s + s / K, off value s / K, as the trainer's training.label_smoothing), mixed with lam.
    Partner: the batch reversed, as timm. Defaults: the DeiT recipe's settings of timm's Mixup.
    The pipeline passes one-hot targets, so this smoothing is timm's. Smoothing commutes with the mix
    (an affine map of rows that sum to 1), so it equals training.label_smoothing (optax's, in the
    loss) with 0 here: use one of the two, both would smooth twice. Parameters may be traced.
    """
    _check_batch(images, targets)
    apply_key, switch_key, mixup_key, cutmix_key, box_key = jax.random.split(key, 5)
    mixup_on, cutmix_on = jnp.asarray(mixup_alpha) > 0, jnp.asarray(cutmix_alpha) > 0
    use_cutmix = jnp.where(mixup_on & cutmix_on, jax.random.uniform(switch_key) < switch_prob, cutmix_on)
    lam = jnp.where(use_cutmix, _mix_weight(cutmix_key, cutmix_alpha), _mix_weight(mixup_key, mixup_alpha))
    lam = jnp.where(jax.random.uniform(apply_key) < mix_prob, lam, 1.0)
    start, stop = _cutmix_box(box_key, lam, images.shape[1], images.shape[2])
    return _mixup_or_cutmix(images, optax.smooth_labels(targets, label_smoothing), use_cutmix, lam, start, stop)
