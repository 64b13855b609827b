"""Why a class is affected: ambiguous, co-occurring, fine-grained or other.

Co-labelling from multi-labels (ImageNet ReaL style), over usable examples (non-empty set):
    P[k, l] = #{i : y_i = k, l in set_i} / #{i : y_i = k, set_i non-empty}.
A pair (k, l) is
    ambiguous     if min(P[k, l], P[l, k]) >= symmetric_threshold (two names for one concept),
    co-occurring  if max(P[k, l], P[l, k]) >= cooccurrence_threshold but not ambiguous
                  (one object shows up with the other, one way round),
    fine-grained  if neither, and k and l share a group of the class hierarchy
                  (CIFAR-100 superclass, a user grouping),
    other         otherwise.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxlab.classwise.metrics import usable_multilabel

AMBIGUOUS, COOCCURRING, FINE_GRAINED, OTHER = "ambiguous", "co-occurring", "fine-grained", "other"
CATEGORIES = (AMBIGUOUS, COOCCURRING, FINE_GRAINED, OTHER)


def colabel_matrix(labels, label_sets, num_classes: int) -> np.ndarray:
    """P[k, l] as above (K, K); rows of classes without usable examples are NaN."""
    labels = np.asarray(labels)
    label_sets = np.asarray(label_sets, bool)
    usable = usable_multilabel(label_sets)
    one_hot = (labels[:, None] == np.arange(num_classes)) & usable[:, None]  # (N, K)
    counts = one_hot.T.astype(np.int64) @ label_sets.astype(np.int64)  # (K, K)
    n = one_hot.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n[:, None] > 0, counts / n[:, None], np.nan)


def pair_category(k: int, l: int, *, colabel: np.ndarray | None = None, groups: Sequence[int] | None = None,
                  symmetric_threshold: float = 0.2, cooccurrence_threshold: float = 0.2) -> str:
    """The category of the pair (k, l) by the rules of the module docstring."""
    if colabel is not None:
        forward, backward = np.nan_to_num(colabel[k, l]), np.nan_to_num(colabel[l, k])
        if min(forward, backward) >= symmetric_threshold:
            return AMBIGUOUS
        if max(forward, backward) >= cooccurrence_threshold:
            return COOCCURRING
    if groups is not None and groups[k] == groups[l]:
        return FINE_GRAINED
    return OTHER


def top_pairs(colabel: np.ndarray, *, count: int = 20, min_value: float = 0.0) -> list[tuple[int, int, float]]:
    """The `count` largest off-diagonal co-labellings (k, l, P[k, l]), largest first."""
    values = np.nan_to_num(np.asarray(colabel, np.float64), nan=-1.0).copy()
    np.fill_diagonal(values, -1.0)
    order = np.argsort(-values, axis=None, kind="stable")[:count]
    pairs = [(int(i // values.shape[1]), int(i % values.shape[1])) for i in order]
    return [(k, l, float(values[k, l])) for k, l in pairs if values[k, l] > min_value]
