"""Random resized crop with torchvision's sampler, on device, with traced per-example strength.

Sampler (torchvision `RandomResizedCrop.get_params`): up to ATTEMPTS draws of
    a ~ H*W*U(s_lo, s_hi),  r = exp(U(log r_lo, log r_hi)),  w = round(sqrt(a*r)),  h = round(sqrt(a/r));
the first draw with 0 < w <= W and 0 < h <= H is taken, with top ~ U{0..H-h}, left ~ U{0..W-w}.
If none fits, a centred crop of the whole image clipped to the ratio range:
    W/H < r_lo: (h, w) = (round(W/r_lo), W);  W/H > r_hi: (h, w) = (H, round(H*r_hi));  else (H, W),
with top = (H-h)//2, left = (W-w)//2. round is round-half-to-even, as Python's.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

ATTEMPTS = 10


def rrc_params(key, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """(top, left, h, w) as int32 scalars; all attempts drawn at once, the first fitting one taken by argmax.

    height, width: static ints. scale and ratio elements may be traced (per-example strength under vmap).
    """
    k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
    s_lo, s_hi, r_lo, r_hi = (jnp.asarray(v, jnp.float32) for v in (*scale, *ratio))
    area = height * width * jax.random.uniform(k_area, (ATTEMPTS,), minval=s_lo, maxval=s_hi)
    aspect = jnp.exp(jax.random.uniform(k_ratio, (ATTEMPTS,), minval=jnp.log(r_lo), maxval=jnp.log(r_hi)))
    ws = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    hs = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (ws > 0) & (ws <= width) & (hs > 0) & (hs <= height)
    first, found = jnp.argmax(fits), jnp.any(fits)

    lo, hi = jnp.minimum(r_lo, r_hi), jnp.maximum(r_lo, r_hi)
    in_ratio = width / height
    fallback_h = jnp.where(in_ratio < lo, jnp.round(width / lo), height).astype(jnp.int32)
    fallback_w = jnp.where(in_ratio > hi, jnp.round(height * hi), width).astype(jnp.int32)

    h = jnp.where(found, hs[first], fallback_h)
    w = jnp.where(found, ws[first], fallback_w)
    top = jnp.where(found, jax.random.randint(k_top, (), 0, height - h + 1), (height - h) // 2)
    left = jnp.where(found, jax.random.randint(k_left, (), 0, width - w + 1), (width - w) // 2)
    return top, left, h, w


def random_resized_crop(key, image, *, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True):
    """Crop the rrc_params(key, H, W, scale, ratio) window of an (H, W, C) image and resize it to `size`.

    One bilinear scale_and_translate (antialiased when shrinking, like torchvision): with pixel centres at
    i + 1/2, output coordinate y' = (y - top) * out_h/h (scale out_h/h, translation -top*out_h/h), so the
    window [top, top+h) maps onto [0, out_h) (likewise for columns). Unlike crop-then-resize, output pixels at the window's border also weigh image
    pixels just outside it (within the kernel's reach), where the image has them.
    Returns float32 (out_h, out_w, C).
    """
    out_h, out_w = (size, size) if np.ndim(size) == 0 else tuple(size)
    height, width, channels = image.shape
    top, left, h, w = rrc_params(key, height, width, scale, ratio)
    zoom = jnp.array([out_h, out_w], jnp.float32) / jnp.stack([h, w]).astype(jnp.float32)
    shift = -jnp.stack([top, left]).astype(jnp.float32) * zoom
    return jax.image.scale_and_translate(image.astype(jnp.float32), (out_h, out_w, channels), (0, 1),
                                         zoom, shift, method="linear", antialias=antialias)


def rrc_params_numpy(rng: np.random.Generator, height: int, width: int, scale=(0.08, 1.0),
                     ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """Reference: the module docstring's sampler in plain Python, one attempt at a time. (top, left, h, w)."""
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
