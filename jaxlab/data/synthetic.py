"""A 10-class synthetic image set with planted class-level structure (pure numpy, seeded, fast).

It reproduces, at CPU scale, the kinds of classes that strong random-resized-crop (RRC) hurts
(Kirichenko et al., NeurIPS 2023), so the class-level analyses (jaxlab.classwise) can be checked
against a known answer; config.data.source="synthetic" loads it. Every image is an object drawn on a
noisy background (a random base colour, a random colour gradient and per-pixel noise) at a random
position and size, in a random colour that contrasts with the background; the two texture classes are
colour/texture fields instead.

What is planted (class ids are the module constants below), and the effect each should produce:

* AMBIGUOUS_PAIR = (0, 1), "ring (a)" / "ring (b)": two names for one concept. Both classes come
  from ONE generator (a ring) and each image's label is a coin flip between the two. Nothing tells
  them apart, so per-class accuracy of 0 and 1 is far below 1 (their sum is about 1, the split
  between them swings from run to run) while the multi-label accuracy stays near 1: the test label
  set of every image of 0 or 1 is {0, 1}.
* COOCCURRING = (2, 3), "triangle with a small cross" / "cross": one object appears with another,
  one way round. Every image of class 2 shows a triangle AND a small cross beside it; class 3
  images show a (larger) cross alone. Test label sets of class 2 are {2, 3}; those of class 3 are
  {3} only. Strong crops of class-2 images often keep only the small cross, enlarged, labelled 2,
  so the model learns "cross -> sometimes 2" and class 3's errors should move into class 2.
* FINE_GRAINED_PAIR = (4, 5), "square" / "square + tag": class 5 is class 4 plus a small tag, a
  square of the object's colour at a fixed position in the middle of the top border
  (`tag_box(image_size)`; objects never reach that band, in any class). Both share a class group,
  and their label sets are their own class only. Strong crops usually cut the tag off, so many
  training images of 5 look exactly like 4: the model learns that a tagless square may be a 5,
  and class 4's accuracy should fall as its errors move into 5 (5's false positives rise).
* SHAPE_CLASSES = (6, 7), "disc" / "x": classes defined by their outline only (random colour).
  A small crop of a disc or an x is a patch of flat colour or a bar that says little about the
  outline, so strong crops should hurt them. (Classes 0-5 are shape-defined too.)
* TEXTURE_CLASSES = (8, 9), "stripes" / "dots": colour/texture fields covering the whole image
  (fixed colour pairs, random orientation/phase/spacing). Any crop still shows the colours and the
  texture, so strong crops should barely change their accuracy.

`class_groups` = (0, 0, 1, 2, 3, 3, 4, 5, 6, 7): each pair of (ambiguous, fine-grained) classes
shares a group, all others have their own. Images are rendered at 2x and averaged down (soft
edges), then stored as uint8 (H, W, 3). Any image_size >= 16 works (16 and 32 are the tested ones);
geometry scales with the size. The same seed gives the same dataset, bit for bit.

Measured (one seed, 16 px, 300 train / 100 test per class, cnn width 16, 14 epochs, rrc scale (s, 1);
s = 1.0 / 0.3 / 0.08): top-1 0.855 / 0.55 / 0.389 (short training: strong crops never catch up here);
class 4 accuracy 1.0 / 0.44 / 0.29 with 4->5 errors 0 / 49 / 41 and class 5 false positives 0 / 63 / 68
(the planted fine-grained shift); textures 8, 9 at 1.0 throughout; shapes 6, 7 0.99, 0.90 / 0.34, 0.40 /
0.04, 0.13; ambiguous 0, 1 per-class 0.48, 0.41 / 0.31, 0.57 / 0.32, 0.61 vs multi-label 0.98 / 0.94 /
0.95. The co-occurrence shift (3 -> 2 errors) did NOT show: 13 / 12 / 9.
"""

from __future__ import annotations

import numpy as np

from jaxlab.data.dataset import Dataset, from_arrays

NUM_CLASSES = 10
AMBIGUOUS_PAIR = (0, 1)
COOCCURRING = (2, 3)          # images of 2 also show a 3-object; label sets of 2 contain 3, not the reverse
FINE_GRAINED_PAIR = (4, 5)    # 5 = 4 + a small tag at tag_box(image_size)
SHAPE_CLASSES = (6, 7)
TEXTURE_CLASSES = (8, 9)
CLASS_NAMES = (
    "ring (a): ambiguous with 1",
    "ring (b): ambiguous with 0",
    "triangle with a small cross: co-occurs with 3",
    "cross",
    "square",
    "square + top tag: fine-grained sibling of 4",
    "disc: shape",
    "x: shape",
    "stripes: texture",
    "dots: texture",
)
CLASS_GROUPS = (0, 0, 1, 2, 3, 3, 4, 5, 6, 7)
# The kind of structure each class takes part in (for analysis tests and reports).
CLASS_KINDS = ("ambiguous", "ambiguous", "co-occurring", "co-occurring", "fine-grained", "fine-grained",
               "shape", "shape", "texture", "texture")

_SUPERSAMPLE = 2
_NOISE_STD = 0.07          # per-pixel Gaussian noise (pixel scale 0..1)
_TOP_BAND = 0.22           # objects stay below this fraction of the height (the tag's band stays clear)


def tag_box(image_size: int) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1), half-open pixel box of the class-5 tag: centred on the top border band."""
    side = max(2, round(image_size / 10))
    row0 = max(1, round(0.06 * image_size))
    col0 = (image_size - side) // 2
    return row0, row0 + side, col0, col0 + side


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-mask of a unit shape in object coordinates u (right), v (down), both in [-1, 1]."""
    if kind == "ring":
        r2 = u * u + v * v
        return (r2 < 1.0) & (r2 > 0.55 ** 2)
    if kind == "triangle":  # apex at the top
        return (v > -1.0) & (v < 0.9) & (np.abs(u) < (v + 1.0) / 1.9)
    if kind == "cross":
        return ((np.abs(u) < 0.3) & (np.abs(v) < 1.0)) | ((np.abs(v) < 0.3) & (np.abs(u) < 1.0))
    if kind == "square":
        return (np.abs(u) < 0.85) & (np.abs(v) < 0.85)
    if kind == "disc":
        return u * u + v * v < 1.0
    if kind == "x":
        return ((np.abs(u - v) < 0.42) | (np.abs(u + v) < 0.42)) & (np.abs(u) < 0.9) & (np.abs(v) < 0.9)
    raise ValueError(kind)


_OBJECT = {0: "ring", 1: "ring", 2: "triangle", 3: "cross", 4: "square", 5: "square", 6: "disc", 7: "x"}


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Supersampled pixel-centre coordinates (rows, cols) in output-pixel units, shape (S*k, S*k)."""
    k = _SUPERSAMPLE
    c = ((np.arange(size * k) + 0.5) / k).astype(np.float32)
    return np.meshgrid(c, c, indexing="ij")


def _coverage(inside: np.ndarray) -> np.ndarray:
    """(N, S*k, S*k) bool -> (N, S, S) float32 fraction of each pixel's k x k samples inside."""
    k = _SUPERSAMPLE
    counts = sum(inside[:, i::k, j::k].view(np.uint8) for i in range(k) for j in range(k))
    return counts.astype(np.float32) * np.float32(1.0 / (k * k))


def _backgrounds(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(N, S, S, 3) float backgrounds: base colour + a linear colour gradient (noise is added last)."""
    base = rng.uniform(0.15, 0.85, (n, 1, 1, 3)).astype(np.float32)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    slope = rng.uniform(-0.25, 0.25, (n, 2, 1, 1, 3)).astype(np.float32)
    return base + slope[:, 0] * ramp[None, :, None, None] + slope[:, 1] * ramp[None, None, :, None]


def _contrast_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """(N, 3) random colours whose mean brightness differs from the background's by about 0.35-0.5."""
    n = len(background)
    bg = background[:, ::4, ::4].mean(axis=(1, 2, 3))       # (N,) mean brightness, from a subsample
    direction = np.where(bg < 0.5, 1.0, -1.0)
    target = np.clip(bg + direction * rng.uniform(0.35, 0.5, n), 0.1, 0.9)
    hue = rng.uniform(-0.25, 0.25, (n, 3))
    hue -= hue.mean(axis=1, keepdims=True)                  # random chroma around the target brightness
    return np.clip(target[:, None] + hue, 0.0, 1.0).astype(np.float32)


def _paint(images: np.ndarray, masks: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Blend (N, S, S) coverage masks in (N, 3) colours over (N, S, S, 3) images."""
    m = masks[..., None]
    return images + (colours.astype(np.float32)[:, None, None, :] - images) * m


def _objects(rng, kind: str, n: int, size: int, *, radius, center_rows, center_cols) -> np.ndarray:
    """(N, S, S) soft masks of `kind` with per-image radius and centre (pixel units)."""
    rows, cols = _grid(size)
    inverse = (1.0 / np.asarray(radius, np.float32))[:, None, None]
    u = (cols[None] - np.asarray(center_cols, np.float32)[:, None, None]) * inverse
    v = (rows[None] - np.asarray(center_rows, np.float32)[:, None, None]) * inverse
    return _coverage(_shape_mask(kind, u, v))


def _place(rng, n: int, size: int, radius: np.ndarray, col_low=None, col_high=None):
    """Random centres keeping the object inside the image and below the top band."""
    top = _TOP_BAND * size
    row = rng.uniform(top + radius, size - radius - 0.5)
    low = radius + 0.5 if col_low is None else col_low
    high = size - radius - 0.5 if col_high is None else col_high
    col = rng.uniform(low, high)
    return row, col


def _render_class(rng: np.random.Generator, label: int, n: int, size: int) -> np.ndarray:
    """(N, S, S, 3) float images of one planted class (before noise)."""
    if label in TEXTURE_CLASSES:
        return _texture(rng, label, n, size)
    images = _backgrounds(rng, n, size)
    colour = _contrast_colour(rng, images)
    kind = _OBJECT[label]
    if label == COOCCURRING[0]:
        # The triangle on one side, a small cross beside it (no overlap); mirrored at random.
        radius = rng.uniform(0.17, 0.24, n) * size
        small = rng.uniform(0.10, 0.13, n) * size
        main_row, main_col = _place(rng, n, size, radius, col_low=radius + 0.5,
                                    col_high=size - radius - 2 * small - 1.0)
        small_row, small_col = _place(rng, n, size, small, col_low=main_col + radius + small,
                                      col_high=size - small - 0.5)
        mirror = rng.random(n) < 0.5
        main_col = np.where(mirror, size - main_col, main_col)
        small_col = np.where(mirror, size - small_col, small_col)
        images = _paint(images, _objects(rng, kind, n, size, radius=radius, center_rows=main_row,
                                         center_cols=main_col), colour)
        colour2 = _contrast_colour(rng, images)
        return _paint(images, _objects(rng, "cross", n, size, radius=small, center_rows=small_row,
                                       center_cols=small_col), colour2)
    radius = rng.uniform(0.2, 0.36, n) * size
    row, col = _place(rng, n, size, radius)
    images = _paint(images, _objects(rng, kind, n, size, radius=radius, center_rows=row, center_cols=col), colour)
    if label == FINE_GRAINED_PAIR[1]:
        r0, r1, c0, c1 = tag_box(size)
        images[:, r0:r1, c0:c1, :] = colour[:, None, None, :]
    return images


_TEXTURE_COLOURS = {8: ((0.9, 0.25, 0.1), (0.95, 0.8, 0.2)),   # stripes: red / yellow
                    9: ((0.1, 0.3, 0.85), (0.2, 0.8, 0.45))}   # dots: blue on green


def _texture(rng: np.random.Generator, label: int, n: int, size: int) -> np.ndarray:
    rows, cols = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32), indexing="ij")
    rows, cols = rows[None], cols[None]
    period = (rng.uniform(0.14, 0.25, (n, 1, 1)) * size).astype(np.float32)
    angle = rng.uniform(0, np.pi, (n, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    x = cols * np.cos(angle) + rows * np.sin(angle)
    if label == TEXTURE_CLASSES[0]:
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * x / period + phase)
    else:
        y = -cols * np.sin(angle) + rows * np.cos(angle)
        mix = ((np.sin(2 * np.pi * x / period + phase) > 0.3) & (np.sin(2 * np.pi * y / period + phase) > 0.3))
        mix = mix.astype(np.float32)
    a, b = (np.asarray(c, np.float32) for c in _TEXTURE_COLOURS[label])
    jitter = rng.uniform(-0.12, 0.12, (n, 1, 1, 3)).astype(np.float32)
    return a * (1 - mix[..., None]) + b * mix[..., None] + jitter


def _split(rng: np.random.Generator, per_class: int, size: int):
    """Images (N, S, S, 3) uint8, labels (N,), label sets (N, K) bool, shuffled."""
    images, labels, sets = [], [], []
    for concept in range(NUM_CLASSES):
        if concept == AMBIGUOUS_PAIR[1]:
            continue  # drawn together with AMBIGUOUS_PAIR[0]
        count = 2 * per_class if concept == AMBIGUOUS_PAIR[0] else per_class
        x = _render_class(rng, concept, count, size)
        y = np.full(count, concept, np.int32)
        s = np.zeros((count, NUM_CLASSES), bool)
        s[:, concept] = True
        if concept == AMBIGUOUS_PAIR[0]:
            # One generator, two names: exactly per_class images per name, assigned at random.
            y[rng.permutation(count)[:per_class]] = AMBIGUOUS_PAIR[1]
            s[:, AMBIGUOUS_PAIR[1]] = True
        if concept == COOCCURRING[0]:
            s[:, COOCCURRING[1]] = True
        x = rng.standard_normal(x.shape, dtype=np.float32) * np.float32(255.0 * _NOISE_STD) + x * np.float32(255.0)
        images.append(np.clip(x + 0.5, 0, 255, out=x).astype(np.uint8))
        labels.append(y)
        sets.append(s)
    order = rng.permutation(sum(len(y) for y in labels))
    return np.concatenate(images)[order], np.concatenate(labels)[order], np.concatenate(sets)[order]


def make_planted_dataset(*, num_train_per_class: int = 500, num_test_per_class: int = 100, image_size: int = 32,
                         seed: int = 0) -> Dataset:
    """The planted 10-class dataset (see the module docstring); deterministic from `seed`.

    Returns a Dataset named "synthetic" with uint8 (image_size, image_size, 3) images,
    `eval_label_sets` (the test split's multi-labels) and `class_groups`.
    """
    if image_size < 16:
        raise ValueError(f"image_size={image_size} is too small for the planted tag; use >= 16 (16 or 32)")
    if num_train_per_class < 1 or num_test_per_class < 1:
        raise ValueError("num_train_per_class and num_test_per_class must be >= 1")
    train_rng, test_rng = (np.random.default_rng([seed, i]) for i in (0, 1))
    x_train, y_train, _ = _split(train_rng, num_train_per_class, image_size)
    x_test, y_test, test_sets = _split(test_rng, num_test_per_class, image_size)
    return from_arrays(x_train, y_train, x_test, y_test, name="synthetic", class_names=CLASS_NAMES,
                       num_classes=NUM_CLASSES, eval_label_sets=test_sets, class_groups=CLASS_GROUPS)


def load_synthetic(data_config) -> Dataset:
    """The "synthetic" data source: seed = config.data.seed, size = config.data.image_size or 32."""
    size = int(getattr(data_config, "image_size", 0) or 32)
    return make_planted_dataset(seed=int(getattr(data_config, "seed", 0)), image_size=size)
