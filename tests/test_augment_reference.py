"""jaxlab.augment against torchvision's and timm's own outputs, stored in tests/fixtures/torchvision_reference.npz
by benchmarks/torchvision_reference.py (which says how each case was made); these tests need neither torch nor timm.

Tolerance: 1e-5 on images in [0, 1] (0.003 uint8 levels). Both sides compute in float32 with the same formulas
in a different order: the crops' sample coordinates reach 32, where one float32 rounding step is 1.9e-6 and moves a
weight by as much (XLA fuses the multiply-add of a coordinate that torch rounds twice: up to 3e-6 seen, jitted);
the colour jitter's HSV round trip and the mixing differ by a few rounding steps of values <= 1 (< 1e-6). A wrong
formula (a tap, a weight, an order, a coefficient) moves values by 1e-3 or more.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.augment import center_crop_and_resize, grayscale, ops
from jaxlab.augment.rrc import resample_window

TOLERANCE = 1e-5
REFERENCE = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "torchvision_reference.npz"))


def _cases(prefix):
    """The case numbers n of the arrays named prefix_n_*."""
    numbers = {name.split("_")[1] for name in REFERENCE.files if name.startswith(prefix + "_")}
    return sorted((n for n in numbers if n.isdigit()), key=int)


def _image(name):
    """The stored uint8 image(s) as the ops see them: uint8 / 255 in float32."""
    return jnp.asarray(REFERENCE[name].astype(np.float32) / 255)


def _resized_crop(image, top, left, h, w, out_h, out_w, antialias, flip):
    """torchvision's resized_crop (then hflip) of one window: rows, then columns, as random_resized_crop does."""
    rows = resample_window(image, 0, top, h, out_h, antialias=antialias)
    return resample_window(rows, 1, left, w, out_w, antialias=antialias, reverse=flip)


_crop = jax.jit(_resized_crop, static_argnums=(5, 6, 7))


@pytest.mark.parametrize("case", _cases("crop"))
def test_resized_crop_equals_torchvision(case):
    top, left, h, w, out_h, out_w, antialias, flip = (int(v) for v in REFERENCE[f"crop_{case}_params"])
    out = _crop(_image(f"crop_{case}_image"), top, left, h, w, out_h, out_w, bool(antialias), bool(flip))
    np.testing.assert_allclose(out, REFERENCE[f"crop_{case}_expected"], rtol=0, atol=TOLERANCE)


def test_cifar_crops_equal_torchvision_to_within_one_uint8_level():
    """32 px images, torchvision's RandomResizedCrop windows, 32 px output: no pixel differs by a uint8 level (the
    previous whole-image resampling differed by more than one level at 4.7% of pixels of real CIFAR-10 crops)."""
    windows = REFERENCE["cifar_windows"]
    crops = jax.vmap(lambda x, w: _resized_crop(x, *w, 32, 32, True, False))(_image("cifar_images"), windows)
    difference = np.abs(np.asarray(crops) - REFERENCE["cifar_expected"])
    assert np.mean(difference * 255 > 1) == 0
    np.testing.assert_allclose(crops, REFERENCE["cifar_expected"], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("case", _cases("center"))
def test_center_crop_equals_torchvision_resize_then_center_crop(case):
    size, crop_ratio = REFERENCE[f"center_{case}_params"]
    out = center_crop_and_resize(_image(f"center_{case}_image"), size=int(size), crop_ratio=float(crop_ratio))
    np.testing.assert_allclose(out, REFERENCE[f"center_{case}_expected"], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("channels", ["rgb", "gray"])
def test_color_jitter_equals_torchvision_in_each_of_the_24_orders(channels):
    """ops._jitter_apply (color_jitter after its draws) with torchvision's factors, the order given as hue's position
    and the order of the three blends."""
    factors, orders = REFERENCE["jitter_factors"], REFERENCE["jitter_orders"]
    hue_positions = np.argmax(orders == 3, axis=1)
    blend_orders = np.stack([order[order != 3] for order in orders])
    apply = jax.jit(jax.vmap(ops._jitter_apply, in_axes=(None, None, None, 0, 0)))
    out = apply(_image(f"jitter_{channels}_image"), jnp.asarray(factors[:3], jnp.float32),
                jnp.float32(factors[3]), hue_positions, blend_orders)
    np.testing.assert_allclose(out, REFERENCE[f"jitter_{channels}_expected"], rtol=0, atol=TOLERANCE)


def test_grayscale_equals_torchvision():
    np.testing.assert_allclose(grayscale(_image("gray_image")), REFERENCE["gray_expected"], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("case", _cases("mix"))
def test_mixup_cutmix_equals_timm_given_its_draw(case):
    """timm's Mixup(mode="batch") with lam and the mixup-or-CutMix choice fixed and its own CutMix box: the
    deterministic part of mixup_cutmix (smoothing, then the mix) gives the same images and targets."""
    use_cutmix, lam, smoothing, top, bottom, left, right = REFERENCE[f"mix_{case}_params"]
    targets = jax.nn.one_hot(REFERENCE[f"mix_{case}_labels"], int(REFERENCE["mix_classes"]))
    images, mixed = ops._mixup_or_cutmix(_image(f"mix_{case}_images"), optax.smooth_labels(targets, smoothing),
                                         bool(use_cutmix), lam, jnp.array([top, left], jnp.int32),
                                         jnp.array([bottom, right], jnp.int32))
    np.testing.assert_allclose(images, REFERENCE[f"mix_{case}_expected_images"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(mixed, REFERENCE[f"mix_{case}_expected_targets"], rtol=0, atol=TOLERANCE)
