"""Random resized crop with torchvision's sampler, on device, with traced per-example strength.

Sampler (torchvision `RandomResizedCrop.get_params`): up to ATTEMPTS draws of
    a ~ H*W*U(s_lo, s_hi),  r = exp(U(log r_lo, log r_hi)),  w = round(sqrt(a*r)),  h = round(sqrt(a/r));
the first draw with 0 < w <= W and 0 < h <= H is taken, with top ~ U{0..H-h}, left ~ U{0..W-w}.
If none fits, a centred crop of the whole image clipped to the ratio range:
    W/H < r_lo: (h, w) = (round(W/r_lo), W);  W/H > r_hi: (h, w) = (H, round(H*r_hi));  else (H, W),
with top = (H-h)//2, left = (W-w)//2. round is round-half-to-even, as Python's.

Resize (torchvision's `resized_crop`: crop, then resize): the window alone is resampled, bilinear and
antialiased when shrinking, exactly as torch's interpolate of the sliced window (`resample_window`).
"""

from __future__ import annotations


import chex
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


def random_resized_crop(key, image, *, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True,
                        flip_p=None):
    """Crop the rrc_params(key, H, W, scale, ratio) window of an (H, W, C) image and resize it to `size`.

    torchvision's `resized_crop(image, top, left, h, w, size, antialias)` (bilinear) on float tensors:
    crop, then resize, so the window's edges act as the image's edges (`resample_window`, per axis).
    The window is traced (per example under vmap) while shapes are static, so the crop is not sliced:
    taps outside the window get weight 0 and the remaining weights are renormalised.

    An axis that is never shrunk (output >= image size, e.g. 32 -> 32 or 224 -> 224, since a crop is
    never larger than the image), or any axis with antialias off, has 2 taps per output pixel: a row
    gather (`_linear_resample_rows`), no dense (out x in) weight matrix. An axis that may be shrunk
    with antialiasing takes the dense weights (`_window_weights`) in one matmul.

    flip_p (may be traced): also mirror the output's columns with probability flip_p, i.e. exactly
    random_flip_left_right(k2, random_resized_crop(k1, image, ...), p=flip_p) with k1, k2 =
    split(key). The flip reverses the columns' sample coordinates, so it costs nothing (a separate
    flip is another full pass over the image). Returns float32 (out_h, out_w, C).
    """
    chex.assert_rank(image, 3)  # one (H, W, C) image: vmap it over a batch
    out_h, out_w = (size, size) if np.ndim(size) == 0 else tuple(size)
    flip = False
    if flip_p is not None:
        key, flip_key = jax.random.split(key)
        flip = jax.random.uniform(flip_key) < flip_p
    top, left, h, w = rrc_params(key, image.shape[0], image.shape[1], scale, ratio)
    rows = resample_window(image.astype(jnp.float32), 0, top, h, out_h, antialias=antialias)
    return resample_window(rows, 1, left, w, out_w, antialias=antialias, reverse=flip)


def resample_window(image, axis: int, start, length, out_size: int, *, antialias=True, reverse=False):
    """Axis `axis` (0 rows, 1 columns) of an (H, W, C) image: its window [start, start + length) bilinearly
    resized to out_size, as torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
    antialias=antialias) of the sliced window does it (start and length may be traced).

    Output pixel i has centre c_i = (i + 1/2) length / out_size in window coordinates (pixel j's centre
    at j + 1/2) and weights tri((j + 1/2 - c_i) / max(1, length / out_size)) over the window's pixels
    j in [0, length), tri(x) = max(0, 1 - |x|), divided by their sum: the triangle widened by the
    shrink factor when antialiasing (torch's `_upsample_bilinear2d_aa`), plain bilinear with the
    source coordinate clamped to the window otherwise. reverse (may be traced): outputs in reverse order.
    Computed with 2 taps per output pixel (`_linear_resample_rows`, a row gather) unless an antialiased
    window may be shrunk (out_size < the image's size): then the dense (out x in) weights, one matmul.
    """
    if antialias and out_size < image.shape[axis]:  # the window may be shrunk: the widened triangle, dense
        weights = _window_weights(image.shape[axis], start, length, out_size, reverse)
        return jnp.einsum("oh,hwc->owc" if axis == 0 else "ow,hwc->hoc", weights, image,
                          precision=jax.lax.Precision.HIGHEST)
    if axis == 0:
        return _linear_resample_rows(image, start, length, out_size, reverse)
    return jnp.swapaxes(_linear_resample_rows(jnp.swapaxes(image, 0, 1), start, length, out_size, reverse), 0, 1)


def _window_centres(start, length, out_size: int, reverse):
    """(c, length / out_size): c_i = (i + 1/2) length / out_size, output pixel i's centre in window coordinates
    (torch's float32 `center`), reversed when `reverse`."""
    ratio = jnp.asarray(length, jnp.float32) / out_size
    centres = (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * ratio
    return jnp.where(reverse, centres[::-1], centres), ratio


def _window_weights(in_size: int, start, length, out_size: int, reverse=False):
    """(out_size, in_size) antialiased bilinear weights of `resample_window` over every image pixel (0 outside the
    window): tri((j - start + 1/2 - c_i) / max(1, length / out_size)) on the window, normalised per row."""
    centres, ratio = _window_centres(start, length, out_size, reverse)
    taps = jnp.arange(in_size) - start  # window coordinates of every image pixel
    inside = (taps >= 0) & (taps < length)
    distance = jnp.abs(taps.astype(jnp.float32)[None, :] + 0.5 - centres[:, None]) / jnp.maximum(ratio, 1.0)
    weights = jnp.where(inside[None, :], jnp.maximum(0.0, 1.0 - distance), 0.0)
    return weights / jnp.sum(weights, axis=1, keepdims=True)


def _linear_resample_rows(image, start, length, out_size: int, reverse=False):
    """Axis 0 of `image` as `resample_window` without antialiasing: 2 taps per output row.

    Output row i samples s = c_i - 1/2 (window coordinates); the triangle 1 - |s - j| is non-zero
    only at j0 = floor(s) and j0 + 1, with weights 1 - (s - j0) and 1 - (j0 + 1 - s), a tap outside
    the window [0, length) weighing 0 and both divided by their sum (at the window's edges this is
    the source coordinate clamped to the window). Gathers whole rows start + j0 and start + j0 + 1:
    contiguous copies, fast on CPU even per example under vmap (a gather along axis 1 is not).
    """
    centres, _ = _window_centres(start, length, out_size, reverse)
    s = centres - 0.5
    j0 = jnp.floor(s)
    w0 = jnp.where(j0 >= 0, 1.0 - (s - j0), 0.0)
    w1 = jnp.where(j0 + 1 <= length - 1, 1.0 - (j0 + 1 - s), 0.0)
    total = w0 + w1
    row = start + j0.astype(jnp.int32)
    below = jnp.take(image, row, axis=0, mode="clip")  # clip: an index outside the image takes the edge row,
    above = jnp.take(image, row + 1, axis=0, mode="clip")  # whose weight is then 0
    return (w0 / total)[:, None, None] * below + (w1 / total)[:, None, None] * above
