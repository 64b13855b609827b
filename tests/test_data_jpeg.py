"""jaxlab.data.jpeg: decoding, torchvision's crop sampler and PIL crops, on real photographs (scikit-learn's
sample images, re-encoded as JPEG in the test), against references written here."""

import ast
import functools
import io
import math
import pickle
import random

import chex
import numpy as np
import pytest
import scipy.stats
from PIL import Image, ImageFile
from sklearn.datasets import load_sample_image

from jaxlab.data import jpeg
from jaxlab.errors import DataError

PHOTOS = ("china.jpg", "flower.jpg")  # 427 x 640 RGB


def _encode(image: Image.Image, fmt="JPEG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    return load_sample_image(name)


@functools.lru_cache(maxsize=None)
def _jpeg(name: str) -> bytes:
    return _encode(Image.fromarray(_photo(name)), quality=90)


def _full(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def _torchvision_get_params(rnd: random.Random, height, width, scale, ratio):
    """torchvision.transforms.RandomResizedCrop.get_params, transcribed with Python's random module."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rnd.uniform(scale[0], scale[1])
        aspect_ratio = math.exp(rnd.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = rnd.randint(0, height - h)
            j = rnd.randint(0, width - w)
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w = width
        h = height
    i = (height - h) // 2
    j = (width - w) // 2
    return i, j, h, w


def _torchvision_eval(image: Image.Image, resize: int, crop: int) -> np.ndarray:
    """transforms.Compose([Resize(resize), CenterCrop(crop)]) on a PIL image, as torchvision computes it."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = resize, int(resize * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_h, new_w) != (height, width):
        image = image.resize((new_w, new_h), Image.BILINEAR)
    top = int(round((new_h - crop) / 2.0))
    left = int(round((new_w - crop) / 2.0))
    return np.asarray(image.crop((left, top, left + crop, top + crop)))


def test_image_size_reads_the_header():
    assert jpeg.image_size(_jpeg("china.jpg"), name="china") == (427, 640)
    png = _encode(Image.fromarray(_photo("flower.jpg")).transpose(Image.TRANSPOSE), "PNG")
    assert jpeg.image_size(png, name="flower.png") == (640, 427)


@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.5, 1.0)])
def test_crop_window_follows_torchvision_sampler_on_the_original_size(scale):
    height, width, n = 427, 640, 2000
    rng, rnd = np.random.default_rng(0), random.Random(1)
    ours = np.array([jpeg.crop_window(height, width, rng, scale) for _ in range(n)], np.float64)
    ref = np.array([_torchvision_get_params(rnd, height, width, scale, (3 / 4, 4 / 3)) for _ in range(n)],
                   np.float64)

    def stats(windows):
        top, left, h, w = windows.T
        return {"area": h * w / (height * width), "log_aspect": np.log(w / h),
                "centre_y": (top + h / 2) / height, "centre_x": (left + w / 2) / width, "top": top, "left": left}

    for key, (a, b) in {k: (stats(ours)[k], stats(ref)[k]) for k in stats(ours)}.items():
        assert scipy.stats.ks_2samp(a, b).pvalue > 0.01, key
    assert np.all((ours[:, 0] + ours[:, 2] <= height) & (ours[:, 1] + ours[:, 3] <= width))
    area = ours[:, 2] * ours[:, 3] / (height * width)
    assert area.min() >= scale[0] - 0.01 and area.max() <= 1.0


def test_crop_window_falls_back_to_the_centred_crop():
    # nothing fits a 10 x 1000 strip: the centred crop clipped to the largest ratio
    assert jpeg.crop_window(10, 1000, np.random.default_rng(0), (0.9, 1.0)) == (0, (1000 - 13) // 2, 10, 13)
    assert jpeg.crop_window(1000, 10, np.random.default_rng(0), (0.9, 1.0)) == ((1000 - 13) // 2, 0, 13, 10)


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("size,scale", [(224, (0.08, 1.0)), (64, (0.08, 1.0)), (96, (0.5, 1.0))])
def test_random_resized_crop_is_torchvision_pil_path(photo, size, scale):
    data, full = _jpeg(photo), _full(_jpeg(photo))
    for seed in range(6):
        out = jpeg.random_resized_crop(data, np.random.default_rng(seed), size=size, scale=scale, name=photo,
                                       draft=False)
        chex.assert_shape(out, (size, size, 3))
        assert out.dtype == np.uint8
        top, left, h, w = jpeg.crop_window(427, 640, np.random.default_rng(seed), scale)
        ref = np.asarray(full.crop((left, top, left + w, top + h)).resize((size, size), Image.BILINEAR))
        np.testing.assert_array_equal(out, ref)  # exact: torchvision's F.resized_crop on PIL
        # resize(box=window) also weighs pixels just outside the window: within a level away from the border
        boxed = np.asarray(full.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h)))
        chex.assert_trees_all_close(out[2:-2, 2:-2].astype(np.int32), boxed[2:-2, 2:-2].astype(np.int32),
                                    atol=1, rtol=0)


@pytest.mark.parametrize("photo", PHOTOS)
def test_random_resized_crop_draft_within_stated_bound(photo):
    data = _jpeg(photo)
    means = []
    for size in (64, 96):
        for seed in range(40):
            top, left, h, w = jpeg.crop_window(427, 640, np.random.default_rng(seed))
            a = jpeg.random_resized_crop(data, np.random.default_rng(seed), size=size, name=photo, draft=True)
            b = jpeg.random_resized_crop(data, np.random.default_rng(seed), size=size, name=photo, draft=False)
            chex.assert_shape(a, (size, size, 3))
            diff = np.abs(a.astype(np.int32) - b.astype(np.int32))
            if min(h, w) < 2 * size:  # no DCT scaling: identical
                np.testing.assert_array_equal(a, b)
                continue
            means.append(diff.mean())
            assert diff.mean() < 6 and diff.max() <= 64, (size, seed, diff.mean(), diff.max())
    assert len(means) >= 20 and np.mean(means) < 2.0, (len(means), np.mean(means))


def test_decode_rgb_min_size_decodes_only_what_is_needed():
    data, full = _jpeg("china.jpg"), _full(_jpeg("china.jpg"))
    for min_size, expected in [((100, 100), (107, 160)), ((213, 320), (214, 320)), ((214, 320), (427, 640)),
                               ((40, 60), (54, 80)), ((10, 10), (54, 80)), ((427, 640), (427, 640))]:
        image = jpeg.decode_rgb(data, name="china", min_size=min_size)
        assert (image.height, image.width) == expected and image.mode == "RGB", min_size
        assert image.height >= min_size[0] and image.width >= min_size[1]
    # the DCT-scaled pixels are the original's s x s blocks (coordinates times 1/s, no shift)
    half = np.asarray(jpeg.decode_rgb(data, name="china", min_size=(200, 300)), np.float32)[:213]
    chex.assert_trees_all_close(half.mean(), np.asarray(full.reduce(2), np.float32).mean(), atol=0.5)
    assert np.abs(half - np.asarray(full.reduce(2), np.float32)[:213]).mean() < 2.0
    assert np.asarray(jpeg.decode_rgb(data, name="china")).shape == (427, 640, 3)


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("resize,crop", [(256, 224), (128, 112), (427, 400)])
def test_resize_center_crop_is_torchvision_eval_transform(photo, transpose, resize, crop):
    image = Image.fromarray(_photo(photo))
    if transpose:
        image = image.transpose(Image.TRANSPOSE)
    data = _encode(image, quality=90)
    ref = _torchvision_eval(_full(data), resize, crop)
    out = jpeg.resize_center_crop(data, resize=resize, crop=crop, name=photo, draft=False)
    chex.assert_shape(out, (crop, crop, 3))
    chex.assert_trees_all_close(out.astype(np.int32), ref.astype(np.int32), atol=1, rtol=0)
    drafted = jpeg.resize_center_crop(data, resize=resize, crop=crop, name=photo)
    if min(image.size) < 2 * resize:
        np.testing.assert_array_equal(drafted, out)
    else:  # DCT-scaled decode: the module docstring's stated bound
        diff = np.abs(drafted.astype(np.int32) - out.astype(np.int32))
        assert diff.mean() < 2.0 and diff.max() <= 40, (diff.mean(), diff.max())


def _formats():
    rgb = Image.fromarray(_photo("flower.jpg"))
    gray = rgb.convert("L")
    sixteen = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)
    palette = rgb.quantize(64)
    palette.info["transparency"] = 0
    return {
        "gray_jpeg": (_encode(gray, quality=90), None),
        "cmyk_jpeg": (_encode(rgb.convert("CMYK"), quality=90), np.asarray(rgb)),
        "png_named_jpeg": (_encode(rgb, "PNG"), np.asarray(rgb)),
        "rgba_png": (_encode(rgb.convert("RGBA"), "PNG"), np.asarray(rgb)),
        "palette_png": (_encode(palette, "PNG", transparency=0), np.asarray(palette.convert("RGB"))),
        "gray16_png": (_encode(sixteen, "PNG"), np.repeat(np.asarray(gray)[..., None], 3, -1)),
    }


@pytest.mark.parametrize("kind", ["gray_jpeg", "cmyk_jpeg", "png_named_jpeg", "rgba_png", "palette_png",
                                  "gray16_png"])
def test_other_modes_and_formats_decode_to_rgb(kind, tmp_path):
    data, expected = _formats()[kind]
    path = tmp_path / f"n01440764_{kind}.JPEG"  # ImageNet's extension, whatever the content
    path.write_bytes(data)
    image = jpeg.decode_rgb(path.read_bytes(), name=str(path))
    array = np.asarray(image)
    assert image.mode == "RGB"
    chex.assert_shape(array, (427, 640, 3))
    if kind == "gray_jpeg":
        np.testing.assert_array_equal(array[..., 0], array[..., 1])
        np.testing.assert_array_equal(array[..., 0], array[..., 2])
        assert 20 < array.mean() < 235
    elif kind == "cmyk_jpeg":  # lossy: close to the photo
        assert np.abs(array.astype(np.int32) - expected).mean() < 4
    else:
        np.testing.assert_array_equal(array, expected)
    out = jpeg.random_resized_crop(data, np.random.default_rng(0), size=64, name=str(path))
    chex.assert_shape(out, (64, 64, 3))
    chex.assert_shape(jpeg.resize_center_crop(data, name=str(path)), (224, 224, 3))


@pytest.mark.parametrize("cut", ["half", "last_bytes", "header", "garbage"])
def test_corrupt_files_are_data_errors_naming_the_file(cut):
    assert not ImageFile.LOAD_TRUNCATED_IMAGES  # PIL would decode a truncated JPEG silently
    data = _jpeg("china.jpg")
    data = {"half": data[:len(data) // 2], "last_bytes": data[:-200], "header": data[:300],
            "garbage": b"not an image at all" * 10}[cut]
    name = "record 123 of imagenet2012/train"
    calls = [lambda: jpeg.decode_rgb(data, name=name),
             lambda: jpeg.decode_rgb(data, name=name, min_size=(100, 100)),
             lambda: jpeg.random_resized_crop(data, np.random.default_rng(0), size=224, name=name),
             lambda: jpeg.random_resized_crop(data, np.random.default_rng(0), size=64, name=name),
             lambda: jpeg.resize_center_crop(data, name=name, draft=False)]
    if cut == "garbage":
        calls.append(lambda: jpeg.image_size(data, name=name))
    for call in calls:
        with pytest.raises(DataError, match="record 123 of imagenet2012/train"):
            call()


def test_same_seed_same_output_and_rng_advances_like_crop_window():
    data = _jpeg("flower.jpg")
    a = jpeg.random_resized_crop(data, np.random.default_rng(7), size=128, scale=(0.25, 1.0), name="f")
    b = jpeg.random_resized_crop(data, np.random.default_rng(7), size=128, scale=(0.25, 1.0), name="f")
    c = jpeg.random_resized_crop(data, np.random.default_rng(8), size=128, scale=(0.25, 1.0), name="f")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    rng, reference = np.random.default_rng(3), np.random.default_rng(3)
    jpeg.random_resized_crop(data, rng, size=64, name="f")
    jpeg.crop_window(427, 640, reference)
    assert rng.integers(1 << 62) == reference.integers(1 << 62)


def test_functions_are_picklable_and_module_imports_no_jax():
    fn = pickle.loads(pickle.dumps(functools.partial(jpeg.random_resized_crop, size=32, name="x")))
    chex.assert_shape(fn(_jpeg("china.jpg"), np.random.default_rng(0)), (32, 32, 3))
    tree = ast.parse(open(jpeg.__file__).read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m.split(".")[0] in ("jax", "flax", "chex", "optax")}, imported
