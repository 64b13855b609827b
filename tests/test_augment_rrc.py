"""Random resized crop: the jax sampler against the plain-numpy transcription of torchvision's, and the resize."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxlab.augment.rrc import random_resized_crop, resample_window, rrc_params
from jaxlab.data.jpeg import crop_window

N = 20_000
P_MIN = 1e-3
DEFAULT_RATIO = (3 / 4, 4 / 3)

# (height, width, scale, the centred fallback crop (top, left, h, w) worked out by hand)
SETTINGS = {
    "32x32": (32, 32, (0.08, 1.0), (0, 0, 32, 32)),
    "224x224": (224, 224, (0.08, 1.0), (0, 0, 224, 224)),
    "64x48-s0.5": (64, 48, (0.5, 1.0), (0, 0, 64, 48)),
    "32x32-s1": (32, 32, (1.0, 1.0), (0, 0, 32, 32)),
    "16x200": (16, 200, (0.08, 1.0), (0, 89, 16, 21)),
    "200x16": (200, 16, (0.08, 1.0), (89, 0, 21, 16)),
    "16x200-s0.9": (16, 200, (0.9, 1.0), (0, 89, 16, 21)),
    "200x16-s0.9": (200, 16, (0.9, 1.0), (89, 0, 21, 16)),
    "32x32-s0.25": (32, 32, (0.25, 0.25), (0, 0, 32, 32)),
}


@functools.partial(jax.jit, static_argnums=(5, 6))
def _sample(keys, s_lo, s_hi, r_lo, r_hi, height, width):
    """(n, 4) params, one per key, with per-example traced scale and ratio (all (n,) arrays)."""
    fn = jax.vmap(lambda k, a, b, c, d: jnp.stack(rrc_params(k, height, width, (a, b), (c, d))))
    return fn(keys, s_lo, s_hi, r_lo, r_hi)


def _keys(seed, n=N):
    return jax.random.split(jax.random.PRNGKey(seed), n)


@functools.lru_cache(maxsize=None)
def _jax_draws(height, width, scale, ratio=DEFAULT_RATIO, seed=0):
    return np.asarray(_sample(_keys(seed), *(np.full(N, v, np.float32) for v in (*scale, *ratio)), height, width))


@functools.lru_cache(maxsize=None)
def _numpy_draws(height, width, scale, ratio=DEFAULT_RATIO, seed=1):
    rng = np.random.default_rng(seed)
    return np.array([crop_window(height, width, rng, scale, ratio) for _ in range(N)])


def _features(params, height, width):
    """Area fraction, aspect w/h and relative position of each crop."""
    top, left, h, w = params.T.astype(np.float64)
    return {"area": h * w / (height * width), "aspect": w / h,
            "top": top / (height - h + 1), "left": left / (width - w + 1)}


def _ks_pvalues(a, b, height, width):
    fa, fb = _features(a, height, width), _features(b, height, width)
    return {name: stats.ks_2samp(fa[name], fb[name]).pvalue for name in fa}


def _frequency(params, crop):
    return np.all(params == np.array(crop), axis=1).mean()


@pytest.mark.parametrize("name", list(SETTINGS))
def test_distribution_matches_numpy_reference(name):
    height, width, scale, fallback = SETTINGS[name]
    jax_params, np_params = _jax_draws(height, width, scale), _numpy_draws(height, width, scale)
    pvalues = _ks_pvalues(jax_params, np_params, height, width)
    assert min(pvalues.values()) > P_MIN, pvalues
    # The centred fallback crop (plus any attempt that lands on it) is as frequent as in the reference.
    p_jax, p_np = _frequency(jax_params, fallback), _frequency(np_params, fallback)
    pooled = (p_jax + p_np) / 2
    assert abs(p_jax - p_np) <= 4 * np.sqrt(pooled * (1 - pooled) * 2 / N), (p_jax, p_np)


@pytest.mark.parametrize("name", ["32x32-s1", "16x200-s0.9", "200x16-s0.9"])
def test_no_crop_fits_gives_the_exact_centred_fallback(name):
    height, width, scale, fallback = SETTINGS[name]
    np.testing.assert_array_equal(_jax_draws(height, width, scale), np.broadcast_to(fallback, (N, 4)))
    np.testing.assert_array_equal(_numpy_draws(height, width, scale), np.broadcast_to(fallback, (N, 4)))


@pytest.mark.parametrize("name", ["16x200", "200x16"])
def test_fallback_rate_is_ten_failed_attempts(name):
    """P(fallback) = (1 - q)^10 with q = P(one attempt fits), q from 10^6 vectorised numpy attempts (about 0.90)."""
    height, width, scale, fallback = SETTINGS[name]
    rng = np.random.default_rng(2)
    area = height * width * rng.uniform(*scale, 10**6)
    aspect = np.exp(rng.uniform(*np.log(DEFAULT_RATIO), 10**6))
    w, h = np.round(np.sqrt(area * aspect)), np.round(np.sqrt(area / aspect))
    q = np.mean((w > 0) & (w <= width) & (h > 0) & (h <= height))
    expected = (1 - q) ** 10
    p_jax = _frequency(_jax_draws(height, width, scale), fallback)
    tolerance = 4 * np.sqrt(expected * (1 - expected) / N + (10 * (1 - q) ** 9) ** 2 * q * (1 - q) / 10**6)
    assert abs(p_jax - expected) <= tolerance, (p_jax, expected)


def test_comparison_detects_a_slightly_different_sampler():
    """The KS check above has the power to see s_lo = 0.10 instead of 0.08, or ratio (0.7, 1.4)."""
    reference = _numpy_draws(32, 32, (0.08, 1.0))
    assert _ks_pvalues(_jax_draws(32, 32, (0.10, 1.0)), reference, 32, 32)["area"] < P_MIN
    assert _ks_pvalues(_jax_draws(32, 32, (0.08, 1.0), (0.7, 1.4)), reference, 32, 32)["aspect"] < P_MIN


def test_per_example_strength_under_vmap():
    """One batch with s_lo cycling through 1, 0.5, 0.08: each group follows the reference for its own s_lo."""
    strengths = (1.0, 0.5, 0.08)
    s_lo = np.resize(np.array(strengths, np.float32), N)
    ones = np.ones(N, np.float32)
    params = np.asarray(_sample(_keys(5), s_lo, ones, ones * 3 / 4, ones * 4 / 3, 32, 32))
    groups = [params[i::3] for i in range(3)]
    for group, s in zip(groups, strengths):
        pvalues = _ks_pvalues(group, _numpy_draws(32, 32, (s, 1.0)), 32, 32)
        assert min(pvalues.values()) > P_MIN, (s, pvalues)
    assert _ks_pvalues(groups[0], groups[2], 32, 32)["area"] < 1e-10
    assert _ks_pvalues(groups[1], groups[2], 32, 32)["area"] < 1e-10


@pytest.mark.parametrize("height,width", [(32, 32), (16, 200), (200, 16), (1, 7)])
def test_traced_scale_and_ratio_stay_in_bounds(height, width):
    """Random per-example (s_lo, s_hi) and (r_lo, r_hi), traced under jit and vmap: every crop lies inside."""
    rng = np.random.default_rng(height * 1000 + width)
    s_lo = rng.uniform(0.01, 1.0, N)
    s_hi = s_lo + (1 - s_lo) * rng.uniform(size=N)
    r_lo, r_hi = rng.uniform(0.2, 1.0, N), rng.uniform(1.0, 5.0, N)
    params = _sample(_keys(height + width), *(v.astype(np.float32) for v in (s_lo, s_hi, r_lo, r_hi)), height, width)
    assert params.dtype == jnp.int32
    top, left, h, w = np.asarray(params).T
    assert np.all((0 < h) & (h <= height) & (0 < w) & (w <= width))
    assert np.all((0 <= top) & (top <= height - h) & (0 <= left) & (left <= width - w))
    single = jax.eval_shape(lambda k, a: rrc_params(k, height, width, (a, 1.0)), _keys(0)[0], s_lo[0])
    assert all(x.dtype == jnp.int32 for x in single)
    chex.assert_shape(single, ())


@jax.jit
def _crop_batch(keys, images, s_lo):
    """Per-example traced s_lo, 16x16 images to 8x8."""
    return jax.vmap(lambda k, x, s: random_resized_crop(k, x, size=8, scale=(s, 1.0)))(keys, images, s_lo)


_crop = jax.jit(random_resized_crop, static_argnames=("size", "antialias"))
_params = jax.jit(rrc_params, static_argnums=(1, 2))


def test_same_key_same_crop_different_keys_different_crops():
    """A key repeated gives the same params and crop; distinct keys give distinct ones."""
    half = _keys(6, N // 2)
    defaults = (np.full(N, v, np.float32) for v in (0.08, 1.0, 3 / 4, 4 / 3))
    params = np.asarray(_sample(jnp.concatenate([half, half]), *defaults, 32, 32))
    np.testing.assert_array_equal(params[:N // 2], params[N // 2:])
    assert len(np.unique(params[:N // 2], axis=0)) > 1000
    keys = jnp.concatenate([_keys(6, 8)] * 2)
    image = jax.random.uniform(jax.random.PRNGKey(0), (16, 16, 3))
    crops = np.asarray(_crop_batch(keys, jnp.broadcast_to(image, (16, 16, 16, 3)), jnp.full(16, 0.08)))
    np.testing.assert_array_equal(crops[:8], crops[8:])
    assert min(np.abs(crops[i] - crops[j]).max() for i in range(8) for j in range(i)) > 1e-3


def test_whole_image_window_equals_resize():
    """At s = (1, 1) a square image's window is the whole image: the op is jax.image.resize (antialiased).
    20 < 32 rows exercise the antialiased shrink, 40 > 32 columns the plain bilinear enlargement."""
    image = jax.random.uniform(jax.random.PRNGKey(2), (32, 32, 3))
    expected = jax.image.resize(image, (20, 40, 3), "linear", antialias=True)
    for key in _keys(3, 4):
        np.testing.assert_allclose(_crop(key, image, size=(20, 40), scale=(1.0, 1.0)), expected, atol=1e-6)


def test_window_resized_to_its_own_size_is_an_exact_slice():
    """scale 3/16 and ratio 4/3 on 32x32 fix the window at h = 12, w = 16; only its position is random."""
    image = jax.random.uniform(jax.random.PRNGKey(4), (32, 32, 2))
    scale, ratio = (0.1875, 0.1875), (4 / 3, 4 / 3)
    positions = set()
    for key in _keys(5, 6):
        top, left, h, w = (int(x) for x in _params(key, 32, 32, scale, ratio))
        assert (h, w) == (12, 16)
        positions.add((top, left))
        out = _crop(key, image, size=(12, 16), scale=scale, ratio=ratio)
        np.testing.assert_array_equal(out, image[top:top + 12, left:left + 16])
    assert len(positions) > 1


def test_upsampled_window_of_a_ramp_is_the_ramp_at_the_mapped_centres():
    """Output centre i + 1/2 samples input row top + (i + 1/2) h/out_h - 1/2 clamped to the WINDOW's rows
    [top, top + h - 1] (crop then resize: the window's edge is the image's edge); bilinear interpolation of
    a ramp is the ramp there."""
    height, width = 24, 20
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    image = np.stack([2.0 * rows + 0.5 * cols, -rows + 3.0 * cols + 7.0], axis=-1).astype(np.float32)
    scale, ratio, size = (0.25, 0.25), (5 / 6, 5 / 6), (30, 40)   # window h = 12, w = 10
    for key in _keys(6, 4):
        top, left, h, w = (int(x) for x in _params(key, height, width, scale, ratio))
        assert (h, w) == (12, 10)
        y = np.clip(top + (np.arange(size[0]) + 0.5) * h / size[0] - 0.5, top, top + h - 1)[:, None]
        x = np.clip(left + (np.arange(size[1]) + 0.5) * w / size[1] - 0.5, left, left + w - 1)[None, :]
        expected = np.stack([2.0 * y + 0.5 * x, -y + 3.0 * x + 7.0], axis=-1)
        np.testing.assert_allclose(_crop(key, image, size=size, scale=scale, ratio=ratio), expected, atol=1e-4)


def test_output_shape_and_dtype():
    key, image = jax.random.PRNGKey(7), jnp.zeros((40, 30, 3), jnp.uint8)
    for size, shape in [(16, (16, 16, 3)), ((12, 20), (12, 20, 3)), ([8, 9], (8, 9, 3))]:
        out = jax.eval_shape(lambda k, x, size=size: random_resized_crop(k, x, size=size), key, image)
        chex.assert_shape(out, shape)
        chex.assert_type(out, jnp.float32)
    out = jax.eval_shape(lambda k, x: random_resized_crop(k, x, size=5), key, image[..., :1].astype(jnp.bfloat16))
    chex.assert_shape(out, (5, 5, 1))
    chex.assert_type(out, jnp.float32)


def test_vmapped_crop_with_per_example_scale():
    """s_lo = 1 examples are the whole image resized; s_lo = 0.08 examples are crops."""
    images = jax.random.uniform(jax.random.PRNGKey(8), (16, 16, 16, 3))
    out = _crop_batch(_keys(9, 16), images, jnp.where(jnp.arange(16) % 2 == 0, 1.0, 0.08))
    chex.assert_shape(out, (16, 8, 8, 3))
    chex.assert_type(out, jnp.float32)
    whole = jax.vmap(lambda x: jax.image.resize(x, (8, 8, 3), "linear"))(images)
    np.testing.assert_allclose(out[0::2], whole[0::2], atol=1e-6)
    assert np.all(np.abs(np.asarray(out[1::2] - whole[1::2])).reshape(8, -1).max(axis=1) > 1e-2)


def _crop_then_resize(key, image, size, scale, antialias):
    """The definition: slice the rrc_params window, then jax.image.resize it (bilinear, antialiased when shrinking
    if antialias), eagerly, one example at a time (static slices)."""
    out_h, out_w = (size, size) if np.ndim(size) == 0 else size
    top, left, h, w = (int(v) for v in _params(key, image.shape[0], image.shape[1], scale))
    window = image[top:top + h, left:left + w]
    return jax.image.resize(window, (out_h, out_w, image.shape[2]), "linear", antialias=antialias)


@pytest.mark.parametrize("shape,size,antialias", [
    ((32, 32, 3), 32, True),          # every crop magnified: the 2-tap row-gather path
    ((224, 224, 3), 224, True),       # the same at ImageNet size
    ((20, 24, 3), (40, 30), True),    # magnified, non-square
    ((32, 32, 3), (20, 40), False),   # shrinking rows without antialiasing: still 2 taps
    ((32, 32, 3), 20, True),          # antialiased shrink: the dense path
    ((32, 32, 3), (20, 32), True),    # rows dense, columns 2 taps
])
def test_equals_resize_of_the_sliced_window_under_vmap(shape, size, antialias):
    """Per-example traced s_lo (1, 0.5, 0.08 cycling; 1 puts the window on the image's edges): every crop
    equals jax.image.resize of its window sliced out (torchvision's resized_crop: crop, then resize). Tolerance:
    both compute float32 sample coordinates up to the image size in different orders, each rounded to about
    size * 6e-8, which moves the weights by as much (1.5e-5 seen at 224 px, also against float64)."""
    n = 6
    images = jax.random.uniform(jax.random.PRNGKey(10), (n, *shape))
    s_lo = np.resize(np.array([1.0, 0.5, 0.08], np.float32), n)
    fast = jax.jit(jax.vmap(lambda k, x, s: random_resized_crop(k, x, size=size, scale=(s, 1.0),
                                                                antialias=antialias)))
    out = fast(_keys(11, n), images, s_lo)
    for key, image, s, crop in zip(_keys(11, n), images, s_lo, out):
        np.testing.assert_allclose(crop, _crop_then_resize(key, image, size, (float(s), 1.0), antialias),
                                   rtol=0, atol=2e-7 * max(shape))


@pytest.mark.parametrize("size", [32, 20, (12, 40)])
def test_pixels_outside_the_window_do_not_matter(size):
    """Replacing every pixel outside the crop's window by 1e6 changes no output value (the window's edge is the
    image's edge; on the 2-tap and on the dense path)."""
    image = jax.random.uniform(jax.random.PRNGKey(16), (32, 32, 3))
    crop = jax.jit(lambda k, x: random_resized_crop(k, x, size=size, scale=(0.08, 0.5)))
    for key in _keys(17, 6):
        top, left, h, w = (int(v) for v in _params(key, 32, 32, (0.08, 0.5)))
        walled = jnp.full_like(image, 1e6).at[top:top + h, left:left + w].set(image[top:top + h, left:left + w])
        out = crop(key, walled)
        assert float(out.max()) <= 1.0
        chex.assert_trees_all_equal(out, crop(key, image))


def test_resample_window_by_hand():
    """A column [1000, 10, 20, 30, 40, -1000] (the +-1000 rows lie outside every window: they must weigh 0).
    Window [10, 20] (rows 1..2) magnified to 4 (fewer than the image's 6 rows: the dense path): centres 0.25, 0.75,
    1.25, 1.75, samples -0.25 .. 1.25 clamped to [0, 1]: 10, 12.5, 17.5, 20; to 8 (the 2-tap path): samples
    -0.375 .. 1.375 in steps of 0.25. Window [10, 20, 30, 40] shrunk to 2: triangles of half-width 2 at centres
    1 and 3, weights (3, 3, 1, 0) / 7 and (0, 1, 3, 3) / 7; without antialiasing (2 taps) samples 0.5 and 2.5:
    15 and 35. reverse: the same outputs in reverse order; columns like rows."""
    column = jnp.array([1000.0, 10.0, 20.0, 30.0, 40.0, -1000.0])
    image = jnp.stack([column, 2 * column], axis=1)[:, :, None]  # (6, 2, 1)
    magnified = resample_window(image, 0, 1, 2, 4)  # window rows 1..2: [10, 20]
    np.testing.assert_allclose(magnified[:, 0, 0], [10.0, 12.5, 17.5, 20.0], rtol=1e-6)
    np.testing.assert_allclose(magnified[:, 1, 0], [20.0, 25.0, 35.0, 40.0], rtol=1e-6)
    np.testing.assert_allclose(resample_window(image, 0, 1, 2, 8)[:, 0, 0],
                               [10.0, 10.0, 11.25, 13.75, 16.25, 18.75, 20.0, 20.0], rtol=1e-6)
    shrunk = resample_window(image, 0, 1, 4, 2)
    np.testing.assert_allclose(shrunk[:, 0, 0], [(30 + 60 + 30) / 7, (20 + 90 + 120) / 7], rtol=1e-6)
    plain = resample_window(image, 0, 1, 4, 2, antialias=False)  # 2 taps at samples 0.5 and 2.5
    np.testing.assert_allclose(plain[:, 0, 0], [15.0, 35.0], rtol=1e-6)
    rows = jnp.swapaxes(image, 0, 1)  # the same along columns, reversed
    np.testing.assert_allclose(resample_window(rows, 1, 1, 4, 2, reverse=True)[0, :, 0], shrunk[::-1, 0, 0],
                               rtol=1e-6)
    np.testing.assert_allclose(resample_window(rows, 1, 1, 2, 4, reverse=True)[0, :, 0], [20.0, 17.5, 12.5, 10.0],
                               rtol=1e-6)


@pytest.mark.parametrize("shape,size,antialias", [((32, 32, 3), 32, True), ((32, 32, 3), 20, True)])
def test_flip_p_equals_crop_then_random_flip(shape, size, antialias):
    """flip_p folds random_flip_left_right into the crop (2-tap path and dense path): the same values as
    crop with k1 then flip with k2, (k1, k2) = split(key), with a per-example traced flip_p."""
    from jaxlab.augment import random_flip_left_right
    n = 12
    images = jax.random.uniform(jax.random.PRNGKey(12), (n, *shape))
    p = jnp.resize(jnp.array([0.0, 1.0, 0.5]), n)

    def separate(key, x, p):
        k1, k2 = jax.random.split(key)
        return random_flip_left_right(k2, random_resized_crop(k1, x, size=size, antialias=antialias), p=p)
    fused = jax.jit(jax.vmap(lambda k, x, p: random_resized_crop(k, x, size=size, antialias=antialias, flip_p=p)))
    out = fused(_keys(13, n), images, p)
    np.testing.assert_allclose(out, jax.jit(jax.vmap(separate))(_keys(13, n), images, p), rtol=0, atol=5e-7)
    unflipped = jax.jit(jax.vmap(lambda k, x: random_resized_crop(jax.random.split(k)[0], x, size=size,
                                                          antialias=antialias)))(_keys(13, n), images)
    np.testing.assert_allclose(out[0::3], unflipped[0::3], rtol=0, atol=5e-7)
    np.testing.assert_allclose(out[1::3], unflipped[1::3, :, ::-1], rtol=0, atol=5e-7)


class CropVariantsTest(chex.TestCase):
    """rrc_params and random_resized_crop as pure functions, eager and jitted: the same windows and values."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_params_match_between_eager_and_jit_and_stay_inside(self):
        params = self.variant(lambda k, s: jnp.stack(rrc_params(k, 16, 24, (s, 1.0))))
        out = jnp.stack([params(k, 0.08) for k in _keys(14, 8)])
        chex.assert_shape(out, (8, 4))
        chex.assert_trees_all_equal(out, _sample(_keys(14, 8), *(np.full(8, v, np.float32) for v in
                                                                   (0.08, 1.0, *DEFAULT_RATIO)), 16, 24))
        top, left, h, w = np.asarray(out).T
        assert np.all((0 < h) & (top + h <= 16) & (0 < w) & (left + w <= 24))

    @chex.variants(with_jit=True, without_jit=True)
    def test_exact_slice_and_fused_flip(self):
        image = jax.random.uniform(jax.random.PRNGKey(4), (16, 16, 2))
        scale, ratio = (0.1875, 0.1875), (4 / 3, 4 / 3)  # the window is 6 x 8, only its position is random
        crop = self.variant(lambda k, x, p: random_resized_crop(k, x, size=(6, 8), scale=scale, ratio=ratio,
                                                                antialias=False, flip_p=p))
        key = _keys(15, 1)[0]
        top, left, h, w = (int(v) for v in _params(jax.random.split(key)[0], 16, 16, scale, ratio))
        assert (h, w) == (6, 8)
        window = image[top:top + 6, left:left + 8]
        out = crop(key, image, 0.0)
        chex.assert_shape(out, (6, 8, 2))
        chex.assert_trees_all_equal(out, window)
        chex.assert_trees_all_equal(crop(key, image, 1.0), window[:, ::-1])


def test_crop_rejects_a_batch_or_a_channelless_image():
    """random_resized_crop takes one (H, W, C) image: a batch, or (H, W), raises (chex) instead of cropping
    the wrong axes; also under jit. Vmapped over a batch, the op sees one image and passes."""
    key, images = jax.random.PRNGKey(0), jnp.zeros((2, 16, 16, 3))
    with pytest.raises(AssertionError):
        random_resized_crop(key, images, size=8)
    with pytest.raises(AssertionError):
        jax.jit(lambda k, x: random_resized_crop(k, x, size=8))(key, images)
    with pytest.raises(AssertionError):
        random_resized_crop(key, images[0, ..., 0], size=8)
    out = jax.eval_shape(jax.vmap(lambda k, x: random_resized_crop(k, x, size=8)), _keys(0, 2), images)
    chex.assert_shape(out, (2, 8, 8, 3))
