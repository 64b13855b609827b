"""Augmentation ops: torchvision semantics, exact identities, traced per-example strengths under vmap,
the same ops eagerly and under jit (chex.variants), and rank asserts instead of silent broadcasting."""

import colorsys
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from jaxlab.augment import ops


def _keys(n, seed=0):
    return jax.random.split(jax.random.PRNGKey(seed), n)


def _images(n, height=6, width=5, channels=3, seed=1):
    return jax.random.uniform(jax.random.PRNGKey(seed), (n, height, width, channels))


# ---------------------------------------------------------------- flips

@pytest.mark.parametrize("op, axis", [(ops.random_flip_left_right, 1), (ops.random_flip_up_down, 0)])
def test_flip_probability_one_zero_and_involution(op, axis):
    image = _images(1)[0]
    flipped = jax.jit(lambda k, x: op(k, x, p=1.0))(_keys(1)[0], image)
    chex.assert_shape(flipped, image.shape)
    chex.assert_type(flipped, jnp.float32)
    chex.assert_trees_all_equal(flipped, np.flip(image, axis))
    chex.assert_trees_all_equal(op(_keys(2)[1], flipped, p=1.0), op(_keys(1)[0], image, p=0.0), image)


def test_flip_traced_per_example_p_and_keys():
    images = _images(16)
    p = jnp.array([0.0, 1.0] * 8)
    out = jax.jit(jax.vmap(lambda k, x, q: ops.random_flip_left_right(k, x, p=q)))(_keys(16), images, p)
    np.testing.assert_array_equal(out[0::2], images[0::2])
    np.testing.assert_array_equal(out[1::2], images[1::2, :, ::-1])
    # p = 0.5: same keys same result, both outcomes occur
    half = jax.jit(jax.vmap(lambda k, x: ops.random_flip_left_right(k, x)))
    images = _images(64)
    a = half(_keys(64), images)
    np.testing.assert_array_equal(a, half(_keys(64), images))
    flipped = np.all(np.asarray(a) == np.asarray(images)[:, :, ::-1], axis=(1, 2, 3))
    assert 16 < flipped.sum() < 48


# ---------------------------------------------------------------- pad and random crop

PAD, SIDE = 3, 6


def _window_offsets(out, image, padding=PAD):
    """The (top, left) of the exact window of the zero-padded image that each output equals (asserts one exists)."""
    padded = np.pad(np.asarray(image), ((padding, padding), (padding, padding), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, image.shape[:2], axis=(0, 1))  # (T, L, C, H, W)
    windows = np.moveaxis(windows, 2, -1)
    match = np.all(np.asarray(out)[:, None, None] == windows[None], axis=(3, 4, 5))  # (N, T, L)
    assert np.all(match.reshape(len(out), -1).sum(-1) == 1), "an output is not a window of the padded image"
    return np.stack(np.nonzero(match)[1:], axis=-1)


def _coded_image():
    return (1.0 + jnp.arange(SIDE * SIDE, dtype=jnp.float32).reshape(SIDE, SIDE, 1)) / (SIDE * SIDE)


def test_pad_and_random_crop_windows_are_uniform():
    image = _coded_image()
    n = 2000
    crop = jax.jit(jax.vmap(lambda k: ops.pad_and_random_crop(k, image, padding=PAD)))
    out = crop(_keys(n))
    chex.assert_shape(out, (n, SIDE, SIDE, 1))
    chex.assert_type(out, jnp.float32)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    np.testing.assert_array_equal(out, crop(_keys(n)))
    offsets = _window_offsets(out, image)
    assert offsets.min() == 0 and offsets.max() == 2 * PAD
    joint = np.bincount(offsets[:, 0] * (2 * PAD + 1) + offsets[:, 1], minlength=(2 * PAD + 1) ** 2)
    assert stats.chisquare(joint).pvalue > 1e-3


def test_pad_and_random_crop_traced_max_shift():
    image = _coded_image()
    shifts = jnp.array([0.0, 1.0, 2.0, 3.0] * 64)
    out = jax.jit(jax.vmap(lambda k, s: ops.pad_and_random_crop(k, image, padding=PAD, max_shift=s)))(
        _keys(256), shifts)
    np.testing.assert_array_equal(out[0::4], jnp.broadcast_to(image, out[0::4].shape))
    offsets = _window_offsets(out, image)
    deviation = np.abs(offsets - PAD).max(-1)
    for s in (1, 2, 3):
        assert deviation[s::4].max() == s  # within range and reaching it
    np.testing.assert_array_equal(ops.pad_and_random_crop(_keys(1)[0], image, padding=PAD, max_shift=0), image)


def test_pad_and_random_crop_edge_mode():
    image = _coded_image()
    out = jax.jit(jax.vmap(lambda k: ops.pad_and_random_crop(k, image, padding=2, mode="edge")))(_keys(32))
    assert float(out.min()) > 0  # no zeros from edge padding
    padded = np.pad(np.asarray(image), ((2, 2), (2, 2), (0, 0)), mode="edge")
    windows = np.moveaxis(np.lib.stride_tricks.sliding_window_view(padded, (SIDE, SIDE), axis=(0, 1)), 2, -1)
    assert all(np.any(np.all(windows == np.asarray(o), axis=(2, 3, 4))) for o in out)


# ---------------------------------------------------------------- colour

def _reference_hue(image, shift):
    flat = np.asarray(image, np.float64).reshape(-1, 3)
    out = []
    for pixel in flat:
        h, s, v = colorsys.rgb_to_hsv(*pixel)
        out.append(colorsys.hsv_to_rgb((h + shift) % 1.0, s, v))
    return np.asarray(out).reshape(np.shape(image))


def _reference_jitter(image, factors, hue_shift, order):
    """torchvision's ColorJitter steps in numpy (float64), applied in `order` (0 b, 1 c, 2 s, 3 hue)."""
    x = np.asarray(image, np.float64)
    weights = np.array(ops.LUMA_WEIGHTS)
    for op in order:
        if op == 3:
            x = _reference_hue(x, float(hue_shift)) if hue_shift != 0 else x
            continue
        luma = (x @ weights)[..., None]
        target = [0.0, luma.mean(), luma][op]
        x = np.clip(factors[op] * x + (1 - factors[op]) * target, 0, 1)
    return x


def test_hue_shift_matches_colorsys_and_rotates_hue():
    pixels = jnp.concatenate([jax.random.uniform(jax.random.PRNGKey(0), (200, 3)),
                              jnp.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [1.0, 1.0, 0.0],
                                         [0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.2, 0.7, 0.7]])])
    for shift in (0.0, 0.27, -0.27, 0.5, -0.5, 0.03, -0.1):
        np.testing.assert_allclose(ops._shift_hue(pixels, shift), _reference_hue(pixels, shift), atol=1e-6)
    np.testing.assert_allclose(ops._shift_hue(jnp.array([1.0, 0.0, 0.0]), 1 / 3), [0.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(ops._shift_hue(jnp.array([1.0, 0.0, 0.0]), -1 / 3), [0.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(ops._shift_hue(ops._shift_hue(pixels, 0.5), 0.5), pixels, atol=1e-6)


# one compiled jitter for every test: (B,) keys, (B, 6, 5, 3) images, (B, 4) traced magnitudes b, c, s, h
_jitter = jax.jit(jax.vmap(lambda k, x, m: ops.color_jitter(k, x, brightness=m[0], contrast=m[1], saturation=m[2],
                                                            hue=m[3])))
_jitter_params = jax.jit(jax.vmap(lambda k, m: ops._jitter_params(k, *m)))


def _magnitudes(*values, n=16):
    return jnp.broadcast_to(jnp.asarray(values, jnp.float32), (n, 4))


def test_color_jitter_zero_magnitudes_are_exact_identity():
    images = _images(16)
    np.testing.assert_array_equal(_jitter(_keys(16), images, _magnitudes(0.0, 0.0, 0.0, 0.0)), images)


def test_color_jitter_brightness_alone_scales_by_sampled_factor():
    images = _images(16) * 0.6  # at most 0.6 * 1.4 < 1: no clipping
    magnitudes = _magnitudes(0.4, 0.0, 0.0, 0.0)
    ratio = np.asarray(_jitter(_keys(16), images, magnitudes)) / np.asarray(images)
    np.testing.assert_allclose(ratio, ratio[:, :1, :1, :1] * np.ones_like(ratio), rtol=1e-5)
    factors = ratio[:, 0, 0, 0]
    assert factors.min() >= 0.6 and factors.max() <= 1.4 and factors.std() > 0.05
    sampled = _jitter_params(_keys(16), magnitudes)[0]
    np.testing.assert_allclose(sampled[:, 0], factors, rtol=1e-5)
    np.testing.assert_array_equal(sampled[:, 1:], 1.0)


def test_color_jitter_per_example_magnitudes_under_vmap():
    images = _images(16)
    magnitudes = _magnitudes(0.5, 0.5, 0.5, 0.1) * jnp.array([0.0, 1.0] * 8)[:, None]
    out = _jitter(_keys(16), images, magnitudes)
    chex.assert_shape(out, images.shape)
    chex.assert_type(out, jnp.float32)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    np.testing.assert_array_equal(out[0::2], images[0::2])
    assert np.all(np.abs(np.asarray(out[1::2] - images[1::2])).max(axis=(1, 2, 3)) > 1e-3)
    np.testing.assert_array_equal(out, _jitter(_keys(16), images, magnitudes))
    assert not np.allclose(out, _jitter(_keys(16, seed=5), images, magnitudes))


def test_color_jitter_follows_the_sampled_order_and_orders_are_uniform():
    """The output equals torchvision's steps applied in the sampled order; all 24 orders occur uniformly."""
    n = 4800
    magnitudes = _magnitudes(0.8, 0.8, 0.8, 0.3, n=n)
    factors, hue_shift, hue_position, blend_order = jax.device_get(_jitter_params(_keys(n), magnitudes))
    orders = [tuple(o[:k]) + (3,) + tuple(o[k:]) for o, k in zip(blend_order.tolist(), hue_position.tolist())]
    counts = [orders.count(o) for o in itertools.permutations(range(4))]
    assert min(counts) > 0 and stats.chisquare(counts).pvalue > 1e-3
    assert np.all(factors >= 0.2) and np.all(factors <= 1.8) and np.all(np.abs(hue_shift) <= 0.3)

    images = _images(16)
    out = _jitter(_keys(n)[:16], images, magnitudes[:16])
    for i in range(16):
        expected = _reference_jitter(images[i], factors[i], hue_shift[i], orders[i])
        np.testing.assert_allclose(out[i], expected, atol=2e-5)
        # the order matters for these factors: the reversed order gives a different result
        assert np.abs(_reference_jitter(images[i], factors[i], hue_shift[i], orders[i][::-1]) - expected).max() > 1e-3
    assert len(set(orders[:16])) > 1


def test_saturation_zero_is_grayscale_and_single_channel_skips_colour():
    image = _images(1)[0]
    params = (jnp.array([1.0, 1.0, 0.0]), jnp.float32(0.0), jnp.int32(0), jnp.array([2, 0, 1]))
    gray = jax.jit(ops._jitter_apply)(image, *params)
    luma = np.asarray(image) @ np.array(ops.LUMA_WEIGHTS, np.float32)
    np.testing.assert_allclose(gray, np.repeat(luma[..., None], 3, -1), atol=1e-6)
    mono = _images(2, channels=1) * 2  # out of [0, 1]: a saturation blend would clip, skipping does not
    out = jax.jit(jax.vmap(lambda k, x, m: ops.color_jitter(k, x, brightness=m[0], contrast=m[1], saturation=m[2],
                                                            hue=m[3])))(_keys(2), mono, _magnitudes(0, 0, 1, 0.5, n=2))
    np.testing.assert_array_equal(out, mono)


def test_random_grayscale():
    images = _images(8)
    p = jnp.array([1.0, 0.0] * 4)
    out = jax.jit(jax.vmap(lambda k, x, q: ops.random_grayscale(k, x, p=q)))(_keys(8), images, p)
    luma = np.asarray(images) @ np.array(ops.LUMA_WEIGHTS, np.float32)
    np.testing.assert_allclose(out[0::2], np.repeat(luma[0::2, ..., None], 3, -1), atol=1e-6)
    assert np.all(out[0::2, ..., 0] == out[0::2, ..., 1]) and np.all(out[0::2, ..., 1] == out[0::2, ..., 2])
    np.testing.assert_array_equal(out[1::2], images[1::2])
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    chex.assert_shape(ops.grayscale(images), (8, 6, 5, 1))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        ops.grayscale(jnp.zeros((2, 2, 4)))


# ---------------------------------------------------------------- deterministic

def test_normalize_round_trip():
    images = _images(4)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    normed = jax.jit(lambda x: ops.normalize(x, mean=mean, std=std))(images)
    np.testing.assert_allclose(normed[..., 1], (images[..., 1] - 0.456) / 0.224, rtol=1e-6)
    np.testing.assert_allclose(ops.denormalize(normed, mean=mean, std=std), images, atol=1e-6)


def test_center_crop_and_resize():
    crop = jax.jit(jax.vmap(lambda x: ops.center_crop_and_resize(x, size=224)))
    # no resize needed (shorter side 256 = round(224 / 0.875)): exactly the centre window
    image = jax.random.uniform(jax.random.PRNGKey(0), (256, 320, 3))
    out = crop(image[None])[0]
    chex.assert_shape(out, (224, 224, 3))
    chex.assert_type(out, jnp.float32)
    np.testing.assert_allclose(out, image[16:240, 48:272], atol=1e-6)
    # 300 x 400 -> 256 x int(256 * 4 / 3) = 256 x 341, crop from (16, round(58.5) = 58); portrait likewise
    image = jax.random.uniform(jax.random.PRNGKey(1), (300, 400, 3))
    resized = jax.image.resize(image, (256, 341, 3), "bilinear", antialias=True)
    np.testing.assert_allclose(crop(image[None])[0], resized[16:240, 58:282], atol=5e-5)
    np.testing.assert_allclose(crop(image.transpose(1, 0, 2)[None])[0], resized.transpose(1, 0, 2)[58:282, 16:240],
                               atol=5e-5)
    small = jax.jit(lambda x: ops.center_crop_and_resize(x, size=32))(jnp.full((40, 50, 1), 0.3))
    chex.assert_shape(small, (32, 32, 1))
    np.testing.assert_allclose(small, 0.3, rtol=1e-6)


# ---------------------------------------------------------------- batch mixing

def _batch(n=6):
    return _images(n, 8, 8), jax.nn.one_hot(jnp.arange(n), n)


def test_mixup_mixes_images_and_targets_with_one_lambda():
    images, targets = _batch()
    alphas = jnp.array([0.0, 0.2, 0.2, 0.2, 0.2, 1.0])  # alpha may be traced; 0 = off
    outs, mixed = jax.jit(jax.vmap(lambda k, a: ops.mixup(k, images, targets, alpha=a)))(_keys(6), alphas)
    chex.assert_trees_all_equal((outs[0], mixed[0]), (images, targets))
    np.testing.assert_allclose(mixed.sum(-1), 1.0, rtol=1e-6)
    lams = mixed[:, 0, 0]
    for out, mix, lam in zip(outs, mixed, lams):
        np.testing.assert_allclose(np.diag(mix), lam, rtol=1e-6)
        np.testing.assert_allclose(np.diag(mix[:, ::-1]), 1 - lam, atol=1e-6)
        np.testing.assert_allclose(out, lam * images + (1 - lam) * images[::-1], atol=1e-6)
    assert 0 <= lams[1:].min() < lams[1:].max() < 1


def test_cutmix_pastes_the_partner_box_and_weights_by_its_area():
    images, targets = _batch(4)
    alphas = jnp.array([0.0] + [1.0] * 39)
    outs, mixes = jax.device_get(jax.jit(jax.vmap(lambda k, a: ops.cutmix(k, images, targets, alpha=a)))(
        _keys(40), alphas))
    chex.assert_trees_all_equal((outs[0], mixes[0]), (images, targets))
    np.testing.assert_allclose(mixes.sum(-1), 1.0, rtol=1e-6)
    clipped = 0
    for out, mixed in zip(outs, mixes):
        own, partner = out == np.asarray(images), out == np.asarray(images)[::-1]
        assert np.all(own | partner)
        pasted = ~np.all(own, axis=-1)  # (B, H, W)
        np.testing.assert_array_equal(pasted, np.broadcast_to(pasted[0], pasted.shape))  # one box per batch
        rows, cols = np.nonzero(pasted[0])
        if len(rows):
            assert pasted[0].sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)  # a filled rectangle
            clipped += rows.min() == 0 or cols.min() == 0 or rows.max() == 7 or cols.max() == 7
        np.testing.assert_allclose(pasted.mean(axis=(1, 2)), 1 - np.diag(mixed), atol=1e-6)
    assert clipped > 0


def _tiny_batch():
    """Three 2x2 one-channel images with every pixel of image b equal to 10 b + pixel number, one-hot targets."""
    images = 10.0 * jnp.arange(3.0)[:, None, None, None] + jnp.arange(4.0).reshape(1, 2, 2, 1)
    return images, jax.nn.one_hot(jnp.arange(3), 3)


def test_mixup_or_cutmix_given_lam_and_box_by_hand():
    """Partner of example i is example 2 - i. Mixup at lam = 0.25: image 0 = 0.25 [0, 1, 2, 3] + 0.75 [20, 21, 22,
    23]. CutMix with the box rows [0, 2) x columns [1, 2) (the right column, half the area): the partner's right
    column pasted, targets 0.5 / 0.5 whatever lam was drawn."""
    images, targets = _tiny_batch()
    mixed, mixed_targets = ops._mixup_or_cutmix(images, targets, False, 0.25, jnp.array([0, 0]), jnp.array([0, 0]))
    np.testing.assert_allclose(mixed[0, :, :, 0], [[15.0, 16.0], [17.0, 18.0]], rtol=1e-6)
    np.testing.assert_allclose(mixed[1, :, :, 0], [[10.0, 11.0], [12.0, 13.0]], rtol=1e-6)  # the middle: itself
    np.testing.assert_allclose(mixed_targets, [[0.25, 0, 0.75], [0, 1, 0], [0.75, 0, 0.25]], rtol=1e-6)
    pasted, pasted_targets = ops._mixup_or_cutmix(images, targets, True, 0.9, jnp.array([0, 1]), jnp.array([2, 2]))
    chex.assert_trees_all_equal(pasted[0, :, :, 0], jnp.array([[0.0, 21.0], [2.0, 23.0]]))
    chex.assert_trees_all_equal(pasted[2, :, :, 0], jnp.array([[20.0, 1.0], [22.0, 3.0]]))
    np.testing.assert_allclose(pasted_targets, [[0.5, 0, 0.5], [0, 1, 0], [0.5, 0, 0.5]], rtol=1e-6)


def test_cutmix_box_is_timms_rand_bbox():
    """lam = 0.75 on 8x8: sides int(8 sqrt(0.25)) = 4, rows [cy - 2, cy + 2) clipped; lam = 0.5 on 5x5: sides
    int(5 sqrt(0.5)) = 3, rows [cy - 1, cy + 2) (timm's (h + 1) // 2 after the centre); lam = 1: an empty box."""
    for key in _keys(8):
        centre = np.asarray(jax.random.randint(key, (2,), 0, np.array([8, 8])))
        start, stop = ops._cutmix_box(key, 0.75, 8, 8)
        np.testing.assert_array_equal(start, np.clip(centre - 2, 0, 8))
        np.testing.assert_array_equal(stop, np.clip(centre + 2, 0, 8))
        centre = np.asarray(jax.random.randint(key, (2,), 0, np.array([5, 5])))
        start, stop = ops._cutmix_box(key, 0.5, 5, 5)
        np.testing.assert_array_equal(start, np.clip(centre - 1, 0, 5))
        np.testing.assert_array_equal(stop, np.clip(centre + 2, 0, 5))
        start, stop = ops._cutmix_box(key, 1.0, 8, 8)
        np.testing.assert_array_equal(stop - start, [0, 0])


def test_label_smoothing_values():
    """timm's mixup_target smoothing on one-hot rows: off = s / K, on = 1 - s + s / K (K = 4, s = 0.1: 0.025, 0.925)."""
    smoothed = optax.smooth_labels(jax.nn.one_hot(jnp.array([2, 0]), 4), 0.1)
    np.testing.assert_allclose(smoothed, [[0.025, 0.025, 0.925, 0.025], [0.925, 0.025, 0.025, 0.025]], rtol=1e-6)
    np.testing.assert_allclose(smoothed.sum(-1), 1.0, rtol=1e-6)


# one compiled mixup_cutmix for the tests below: (N,) keys, one (mixup_alpha, cutmix_alpha, switch_prob,
# label_smoothing, mix_prob) row per key, the same batch of three random 16x16 images
_mixup_cutmix = jax.jit(jax.vmap(lambda k, p, x, y: ops.mixup_cutmix(k, x, y, mixup_alpha=p[0], cutmix_alpha=p[1],
                                                                     switch_prob=p[2], label_smoothing=p[3],
                                                                     mix_prob=p[4]), in_axes=(0, 0, None, None)))


def _mixup_cutmix_runs(n, *params, seed=0):
    """(images, outputs (n, 3, 16, 16, 1), targets (n, 3, 3), kind per run, lam of example 0 per run) where kind
    is 'none' (unchanged), 'cutmix' (every pixel its own or its partner's) or 'mixup', and lam is read off the
    image: the pasted area's complement, or the blend weight (least squares)."""
    images, targets = _images(3, 16, 16, 1), jax.nn.one_hot(jnp.arange(3), 3)
    out, mixed = jax.device_get(_mixup_cutmix(_keys(n, seed), jnp.broadcast_to(jnp.asarray(params, jnp.float32),
                                                                               (n, 5)), images, targets))
    images = np.asarray(images)
    own, partner = out == images, out == images[::-1]
    kinds = np.where(np.all(own, axis=(1, 2, 3, 4)), "none",
                     np.where(np.all(own | partner, axis=(1, 2, 3, 4)), "cutmix", "mixup"))
    difference = images[0] - images[2]
    blend = np.sum((out[:, 0] - images[2]) * difference, axis=(1, 2, 3)) / np.sum(difference ** 2)
    lam = np.where(kinds == "mixup", blend, np.mean(own[:, 0], axis=(1, 2, 3)))
    return images, out, mixed, kinds, lam


def test_mixup_cutmix_switch_and_apply_frequencies():
    """switch_prob = 0.3: CutMix in 30% of the mixed batches; mix_prob = 0.6: 40% of batches unchanged (binomial,
    4 standard deviations; an empty 16x16 box, lam > 1 - 1/256, has probability 1/256 and is neglected)."""
    n = 2000
    kinds = _mixup_cutmix_runs(n, 0.8, 1.0, 0.3, 0.0, 0.6)[3]
    unchanged, cut = np.mean(kinds == "none"), np.mean(kinds == "cutmix")
    assert abs(unchanged - 0.4) < 4 * np.sqrt(0.4 * 0.6 / n), unchanged
    assert abs(cut - 0.6 * 0.3) < 4 * np.sqrt(0.18 * 0.82 / n), cut
    assert np.all(_mixup_cutmix_runs(100, 0.8, 0.0, 0.5, 0.0, 1.0)[3] == "mixup")  # cutmix off: always mixup
    assert np.all(_mixup_cutmix_runs(100, 0.0, 1.0, 0.5, 0.0, 1.0)[3] == "cutmix")  # mixup off: always cutmix


def test_mixup_cutmix_targets_are_smoothed_then_mixed():
    """mix_prob = 0: images unchanged, targets exactly smoothed (0.9 + 0.1 / 3 and 0.1 / 3). Mixed batches: each
    target is lam on(y) + (1 - lam) on(y') with the smoothed rows, lam read off the image (mixup: the blend;
    CutMix: the area left), rows summing to 1."""
    images, out, targets, _, _ = _mixup_cutmix_runs(8, 0.8, 1.0, 0.5, 0.1, 0.0)
    chex.assert_trees_all_equal(out, np.broadcast_to(images, out.shape))
    np.testing.assert_allclose(targets, np.broadcast_to(0.1 / 3 + 0.9 * np.eye(3), targets.shape), rtol=1e-6)
    _, _, targets, kinds, lam = _mixup_cutmix_runs(64, 0.8, 1.0, 0.5, 0.1, 1.0, seed=1)
    assert {"mixup", "cutmix"} <= set(kinds)
    np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
    expected = 0.1 / 3 + 0.9 * np.stack([lam, np.zeros_like(lam), 1 - lam], axis=-1)
    np.testing.assert_allclose(targets[:, 0], expected, atol=1e-5)


def test_mixup_lam_follows_beta():
    """Mixup only (cutmix_alpha = 0): lam read off example 0's blend is Beta(0.8, 0.8) (KS test)."""
    lam = _mixup_cutmix_runs(2000, 0.8, 0.0, 0.5, 0.0, 1.0, seed=2)[4]
    assert stats.kstest(lam, stats.beta(0.8, 0.8).cdf).pvalue > 1e-3


# ---------------------------------------------------------------- eager and jitted (chex.variants)

class PureOpsTest(chex.TestCase):
    """The public ops as pure functions, run eagerly and jitted: the same exact identities and references."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_flips(self):
        image = _images(1)[0]
        for op, axis in ((ops.random_flip_left_right, 1), (ops.random_flip_up_down, 0)):
            flip = self.variant(lambda k, x, p, op=op: op(k, x, p=p))
            flipped = flip(_keys(1)[0], image, 1.0)
            chex.assert_shape(flipped, image.shape)
            chex.assert_trees_all_equal(flipped, np.flip(image, axis))
            chex.assert_trees_all_equal(flip(_keys(1)[0], image, 0.0), image)

    @chex.variants(with_jit=True, without_jit=True)
    def test_pad_and_random_crop(self):
        image = _coded_image()
        crop = self.variant(lambda k, x, s: ops.pad_and_random_crop(k, x, padding=PAD, max_shift=s))
        chex.assert_trees_all_equal(crop(_keys(1)[0], image, 0.0), image)
        outs = jnp.stack([crop(k, image, 2.0) for k in _keys(4)])
        chex.assert_shape(outs, (4, SIDE, SIDE, 1))
        assert np.abs(_window_offsets(outs, image) - PAD).max() <= 2

    @chex.variants(with_jit=True, without_jit=True)
    def test_color_jitter_follows_its_sampled_parameters(self):
        image, key = _images(1)[0], _keys(1, seed=3)[0]
        jitter = self.variant(lambda k, x, m: ops.color_jitter(k, x, brightness=m[0], contrast=m[1],
                                                               saturation=m[2], hue=m[3]))
        chex.assert_trees_all_equal(jitter(key, image, jnp.zeros(4)), image)  # all magnitudes 0: identity
        magnitudes = jnp.array([0.8, 0.8, 0.8, 0.3])
        factors, hue_shift, hue_position, blend_order = jax.device_get(ops._jitter_params(key, *magnitudes))
        order = tuple(blend_order[:hue_position]) + (3,) + tuple(blend_order[hue_position:])
        out = jitter(key, image, magnitudes)
        chex.assert_shape(out, image.shape)
        chex.assert_trees_all_close(out, _reference_jitter(image, factors, hue_shift, order), rtol=1e-7, atol=2e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_random_grayscale_and_normalize(self):
        image = _images(1)[0]
        gray = self.variant(lambda k, x, p: ops.random_grayscale(k, x, p=p))
        luma = np.asarray(image) @ np.array(ops.LUMA_WEIGHTS, np.float32)
        chex.assert_trees_all_close(gray(_keys(1)[0], image, 1.0), np.repeat(luma[..., None], 3, -1),
                                    rtol=1e-7, atol=1e-6)
        chex.assert_trees_all_equal(gray(_keys(1)[0], image, 0.0), image)
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        normed = self.variant(lambda x: ops.normalize(x, mean=mean, std=std))(image)
        chex.assert_trees_all_close(normed, (image - np.array(mean)) / np.array(std), rtol=1e-6)
        chex.assert_trees_all_close(self.variant(lambda x: ops.denormalize(x, mean=mean, std=std))(normed), image,
                                    rtol=1e-7, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_center_crop_without_resize_is_the_centre_window(self):
        image = jax.random.uniform(jax.random.PRNGKey(0), (16, 20, 3))  # short side 16 = round(14 / 0.875)
        out = self.variant(lambda x: ops.center_crop_and_resize(x, size=14))(image)
        chex.assert_shape(out, (14, 14, 3))
        chex.assert_trees_all_close(out, image[1:15, 3:17], rtol=1e-7, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_mixup_and_cutmix(self):
        images, targets = _batch(4)
        mixup = self.variant(lambda k, x, y, a: ops.mixup(k, x, y, alpha=a))
        cutmix = self.variant(lambda k, x, y, a: ops.cutmix(k, x, y, alpha=a))
        for mix in (mixup, cutmix):
            chex.assert_trees_all_equal(mix(_keys(1)[0], images, targets, 0.0), (images, targets))
        out, mixed = mixup(_keys(1, seed=2)[0], images, targets, 0.4)
        chex.assert_equal_shape([out, images])
        lam = mixed[0, 0]
        chex.assert_trees_all_close((out, mixed), (lam * images + (1 - lam) * images[::-1],
                                                   lam * targets + (1 - lam) * targets[::-1]), rtol=1e-6, atol=1e-6)
        out, mixed = cutmix(_keys(1, seed=3)[0], images, targets, 1.0)
        chex.assert_equal_shape([out, images])
        pasted = np.any(np.asarray(out) != np.asarray(images), axis=-1)  # (B, H, W)
        assert 0 < pasted.mean() < 1
        chex.assert_trees_all_close(mixed.sum(-1), 1.0, rtol=1e-6)
        chex.assert_trees_all_close(pasted.mean(axis=(1, 2)), 1 - np.diag(mixed), rtol=1e-7, atol=1e-6)


# ---------------------------------------------------------------- rank asserts

@pytest.mark.parametrize("op", [ops.random_flip_left_right, ops.random_flip_up_down, ops.pad_and_random_crop,
                                ops.color_jitter, ops.random_grayscale])
def test_per_image_ops_reject_a_batch(op):
    """A (B, H, W, C) batch given to a per-image op would flip / crop the wrong axes: chex raises, also under jit."""
    key, batch = _keys(1)[0], _images(2)
    with pytest.raises(AssertionError):
        op(key, batch)
    with pytest.raises(AssertionError):
        jax.jit(op)(key, batch)
    with pytest.raises(AssertionError):
        op(key, batch[0, ..., 0])  # (H, W): no channel axis


def test_deterministic_and_batch_ops_check_ranks():
    key, images, targets = _keys(1)[0], *_batch(4)
    with pytest.raises(AssertionError):
        ops.center_crop_and_resize(images, size=4)
    with pytest.raises(AssertionError):
        ops.mixup(key, images[0], targets)  # one image instead of a batch
    with pytest.raises(AssertionError):
        jax.jit(ops.cutmix)(key, images, targets[:, :, None])  # (B, K, 1) targets
    with pytest.raises(AssertionError):
        ops.cutmix(key, images, targets[:3])  # 4 images, 3 targets
    with pytest.raises(AssertionError):
        ops.mixup(key, images, targets[:1])  # a (1, K) target would broadcast over the batch
    with pytest.raises(AssertionError):
        ops.normalize(images[0], mean=[[0.5], [0.4], [0.3]], std=0.2)  # (3, 1) mean
    with pytest.raises(AssertionError):
        ops.normalize(images[0, ..., :1], mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))  # 3 means, 1 channel
    chex.assert_shape(ops.normalize(images, mean=(0.5,), std=0.25), images.shape)  # length 1 or C is fine


@pytest.mark.parametrize("op", [ops.normalize, ops.denormalize])
@pytest.mark.parametrize("mean, std, message", [
    ((0.5,), (0.0,), r"std=\[0\.0\] must be finite and > 0"),
    (0.5, (0.2, -0.1, 0.2), r"std=.* must be finite and > 0"),
    ((np.nan,), 0.2, r"mean=\[nan\] must be finite"),
])
def test_normalize_and_denormalize_reject_bad_concrete_stats(op, mean, std, message):
    """A zero std would make inf/NaN images; concrete values are checked, also under jit (they are static there)."""
    images = _images(2)
    with pytest.raises(ValueError, match=message):
        op(images, mean=mean, std=std)
    with pytest.raises(ValueError, match=message):
        jax.jit(lambda x: op(x, mean=mean, std=std))(images)
    traced = jax.jit(lambda x, s: op(x, mean=0.5, std=s))(images, jnp.float32(0.5))  # a traced std is not checked
    chex.assert_shape(traced, images.shape)


def test_grayscale_weights_are_torchvisions_tensor_path():
    """torchvision's F.rgb_to_grayscale on tensors: 0.2989 R + 0.587 G + 0.114 B (PIL's "L" uses 0.299 for red); the
    device ops follow the tensor path, which saturation and contrast jitter also use."""
    assert ops.LUMA_WEIGHTS == (0.2989, 0.587, 0.114)
    red = jnp.zeros((1, 1, 3)).at[..., 0].set(1.0)
    np.testing.assert_allclose(ops.grayscale(red), [[[0.2989]]], rtol=1e-6)
