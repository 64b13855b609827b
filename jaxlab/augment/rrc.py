"""Random resized crop with torchvision's sampler, on device, with traced per-example strength.

Sampler (torchvision `RandomResizedCrop.get_params`): up to ATTEMPTS draws of
    a ~ H*W*U(s_lo, s_hi),  r = exp(U(log r_lo, log r_hi)),  w = round(sqrt(a*r)),  h = round(sqrt(a/r));
the first draw with 0 < w <= W and 0 < h <= H is taken, with top ~ U{0..H-h}, left ~ U{0..W-w}.
If none fits, a centred crop of the whole image clipped to the ratio range:
    W/H < r_lo: (h, w) = (round(W/r_lo), W);  W/H > r_hi: (h, w) = (H, round(H*r_hi));  else (H, W),
with top = (H-h)//2, left = (W-w)//2. round is round-half-to-even, as Python's.
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

    Bilinear scale_and_translate semantics (antialiased when shrinking, like torchvision): with pixel
    centres at i + 1/2, output coordinate y' = (y - top) * out_h/h (scale out_h/h, translation
    -top*out_h/h), so the window [top, top+h) maps onto [0, out_h) (likewise for columns). Unlike
    crop-then-resize, output pixels at the window's border also weigh image pixels just outside it
    (within the kernel's reach), where the image has them.

    When no crop can be shrunk (output >= image size on both axes, e.g. 32 -> 32 or 224 -> 224, since
    a crop is never larger than the image), or antialias is off, the kernel has 2 taps per axis and
    `_linear_resample_rows` computes the same values as jax.image.scale_and_translate without its
    dense (out x in) weight matrices: a row gather, a transpose, a row gather, a transpose back.
    Otherwise (a crop may be shrunk with antialiasing) scale_and_translate itself runs.

    flip_p (may be traced): also mirror the output's columns with probability flip_p, i.e. exactly
    random_flip_left_right(k2, random_resized_crop(k1, image, ...), p=flip_p) with k1, k2 =
    split(key). On the 2-tap path the flip reverses the column sample coordinates, so it costs
    nothing (a separate flip is another full pass over the image). Returns float32 (out_h, out_w, C).
    """
    chex.assert_rank(image, 3)  # one (H, W, C) image: vmap it over a batch
    out_h, out_w = (size, size) if np.ndim(size) == 0 else tuple(size)
    height, width, channels = image.shape
    flip = False
    if flip_p is not None:
        key, flip_key = jax.random.split(key)
        flip = jax.random.uniform(flip_key) < flip_p
    top, left, h, w = rrc_params(key, height, width, scale, ratio)
    zoom = jnp.array([out_h, out_w], jnp.float32) / jnp.stack([h, w]).astype(jnp.float32)
    shift = -jnp.stack([top, left]).astype(jnp.float32) * zoom
    image = image.astype(jnp.float32)
    if antialias and (out_h < height or out_w < width):
        out = jax.image.scale_and_translate(image, (out_h, out_w, channels), (0, 1), zoom, shift,
                                            method="linear", antialias=True)
        return jnp.where(flip, jnp.flip(out, 1), out)
    rows = _linear_resample_rows(image, zoom[0], shift[0], out_h)
    return jnp.swapaxes(_linear_resample_rows(jnp.swapaxes(rows, 0, 1), zoom[1], shift[1], out_w, flip), 0, 1)


def _linear_resample_rows(image, scale, translation, out_size: int, reverse=False):
    """Axis 0 of `image` resampled as scale_and_translate(method="linear", antialias=False) does it.

    Output row i samples input coordinate s = (i + 1/2)/scale - translation/scale - 1/2 (the same
    float32 expression as jax); the triangle kernel 1 - |s - j| is non-zero only at j0 = floor(s)
    and j0 + 1, with weights 1 - (s - j0) and 1 - (j0 + 1 - s), a tap outside [0, in) weighing 0 and
    both divided by their sum (jax's edge renormalisation). jax's further zeroing of samples with
    s outside [-1/2, in - 1/2] never applies to a window inside the image. Gathers whole rows:
    contiguous copies, fast on CPU even per example under vmap (a gather along axis 1 is not).
    reverse (may be traced): output rows in reverse order (the sample coordinates reversed).
    """
    in_size = image.shape[0]
    inv_scale = 1.0 / scale
    s = (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * inv_scale - translation * inv_scale - 0.5
    s = jnp.where(reverse, s[::-1], s)
    j0 = jnp.floor(s)
    w0 = jnp.where(j0 >= 0, 1.0 - (s - j0), 0.0)
    w1 = jnp.where(j0 + 1 <= in_size - 1, 1.0 - (j0 + 1 - s), 0.0)
    total = w0 + w1
    j0 = j0.astype(jnp.int32)
    below = jnp.take(image, j0, axis=0, mode="clip")  # clip: an index outside [0, in) takes the edge row,
    above = jnp.take(image, j0 + 1, axis=0, mode="clip")  # whose weight is then 0
    return (w0 / total)[:, None, None] * below + (w1 / total)[:, None, None] * above
