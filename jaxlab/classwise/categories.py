"""Why a class is affected: ambiguous, co-occurring, fine-grained or other.

Co-labelling from multi-labels (ImageNet ReaL style), over usable examples (non-empty set):
    P[k, l] = #{i : y_i = k, l in set_i} / #{i : y_i = k, set_i non-empty}.
A pair (k, l) is
    ambiguous     if min(P[k, l], P[l, k]) >= symmetric_threshold (two names for one concept),
    co-occurring  if max(P[k, l], P[l, k]) >= cooccurrence_threshold but not ambiguous
                  (one object shows up with the other, one way round),
    fine-grained  if neither, and k and l share a group of the class hierarchy
                  (CIFAR-100 superclass, ImageNet's WordNet group: real_labels.imagenet_class_groups,
                  a user grouping),
    other         otherwise.
"""

from __future__ import annotations

from typing import Sequence

import chex
import numpy as np

from jaxlab.classwise.metrics import usable_multilabel

AMBIGUOUS, COOCCURRING, FINE_GRAINED, OTHER = "ambiguous", "co-occurring", "fine-grained", "other"
CATEGORIES = (AMBIGUOUS, COOCCURRING, FINE_GRAINED, OTHER)


def colabel_matrix(labels, label_sets, num_classes: int) -> np.ndarray:
    """P[k, l] as above (K, K); rows of classes without usable examples are NaN.

    Counts only the set members (bincount over the (example, label) pairs): seconds for ImageNet's
    50,000 x 1,000 sets, where a dense integer (K, N) @ (N, K) product takes minutes.
    """
    labels = np.asarray(labels)
    label_sets = np.asarray(label_sets, bool)
    chex.assert_rank([labels, label_sets], [1, 2])
    chex.assert_equal_shape_prefix([labels, label_sets], 1)
    rows, cols = np.nonzero(label_sets)  # empty sets contribute nothing: the empty-set rule
    counts = np.bincount(labels[rows] * num_classes + cols, minlength=num_classes * num_classes)
    n = np.bincount(labels[usable_multilabel(label_sets)], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n[:, None] > 0, counts.reshape(num_classes, num_classes) / n[:, None], np.nan)


def pair_category(k: int, l: int, *, colabel: np.ndarray | None = None, groups: Sequence[int] | None = None,
                  symmetric_threshold: float = 0.2, cooccurrence_threshold: float = 0.2) -> str:
    """The category of the pair (k, l) by the rules of the module docstring."""
    if colabel is not None:
        chex.assert_rank(np.asarray(colabel), 2)
        forward, backward = np.nan_to_num(colabel[k, l]), np.nan_to_num(colabel[l, k])
        if min(forward, backward) >= symmetric_threshold:
            return AMBIGUOUS
        if max(forward, backward) >= cooccurrence_threshold:
            return COOCCURRING
    if groups is not None and groups[k] == groups[l]:
        return FINE_GRAINED
    return OTHER


def top_pairs(colabel: np.ndarray, *, count: int | None = 20, min_value: float = 0.0) -> list[tuple[int, int, float]]:
    """Off-diagonal pairs (k, l, P[k, l]) with P > 0 and P >= min_value, largest first (ties in (k, l)
    order); the first `count` (None: all)."""
    values = np.nan_to_num(np.asarray(colabel, np.float64), nan=-1.0).copy()
    chex.assert_rank(values, 2)
    np.fill_diagonal(values, -1.0)
    flat = values.ravel()
    keep = np.flatnonzero((flat > 0) & (flat >= min_value))
    order = keep[np.argsort(-flat[keep], kind="stable")][:count]
    width = values.shape[1]
    return [(int(i // width), int(i % width), float(flat[i])) for i in order]
