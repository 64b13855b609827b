"""Negatively affected classes: worse at the augmentation strength that is best on average.

With per-class accuracy acc[s, r, k] (strength s, seed r, class k) and m[s, k] its seed mean:
    s* = argmax_s mean_r avg_acc[s, r]          (the strength one would pick for average accuracy;
                                                 or a given reference, e.g. the standard s = 0.08)
    b_k = argmax_s m[s, k]                       (the class's own best strength)
    drop_k = m[b_k, k] - m[s*, k].
Noise: each seed mean has variance v[s, k] / R with v the between-seed variance, floored by the
binomial variance p(1 - p) / n_k of one model's accuracy on n_k eval examples (p shrunk to
(c + 1/2) / (n_k + 1) so p in {0, 1} still has noise). z_k = drop_k / sqrt(v[b_k]/R + v[s*]/R),
one-sided p-value 1 - Phi(z_k), optionally Bonferroni-corrected over the K classes.
A class is affected when p <= alpha and drop_k >= min_drop. Choosing b_k as a maximum biases
drop_k upwards (winner's curse); the binomial floor and the correction keep the test honest on few seeds.
With multi-labels, the part of the drop that multi-label (ReaL) scoring explains is
    explained_k = 1 - (ml[b_k, k] - ml[s*, k]) / drop_k, clipped to [0, 1].
"""

from __future__ import annotations

import chex
import numpy as np
from scipy import stats

CORRECTIONS = ("none", "bonferroni")


def seed_mean_variance(accuracy: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seed means m[s, k] and the variance of one seed's accuracy v[s, k] (see module docstring).

    accuracy (S, R, K); n (K,) (or a scalar: the same count for every class)."""
    accuracy = np.asarray(accuracy, np.float64)
    chex.assert_rank(accuracy, 3)
    if np.ndim(n):
        chex.assert_shape(np.asarray(n), accuracy.shape[2:])
    seeds = accuracy.shape[1]
    mean = np.nanmean(accuracy, axis=1)
    n = np.maximum(np.asarray(n, np.float64), 1.0)
    shrunk = (mean * n + 0.5) / (n + 1.0)
    binomial = shrunk * (1.0 - shrunk) / n
    between = np.nanvar(accuracy, axis=1, ddof=1) if seeds > 1 else np.zeros_like(mean)
    return mean, np.maximum(np.nan_to_num(between), binomial)


def affected_classes(per_class_accuracy, average_accuracy, n, *, alpha: float = 0.05, min_drop: float = 0.0,
                     correction: str = "none", multilabel_accuracy=None, reference_index: int | None = None) -> dict:
    """Score every class as in the module docstring.

    per_class_accuracy: (S, R, K); average_accuracy: (S, R); n: (K,) eval examples per class;
    multilabel_accuracy: optional (S, R, K); reference_index: s* (default: the best average strength).
    Returns {"reference_index": s*, "best_average_index", "classes": [one dict
    per class: class, best_index, drop, z, p_value, affected, and multilabel_drop / explained]}.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction={correction!r}; choose one of {CORRECTIONS}")
    acc = np.asarray(per_class_accuracy, np.float64)
    average_accuracy = np.asarray(average_accuracy, np.float64)
    chex.assert_rank([acc, average_accuracy, np.asarray(n)], [3, 2, 1])
    chex.assert_shape(average_accuracy, acc.shape[:2])
    chex.assert_shape(np.asarray(n), acc.shape[2:])
    if multilabel_accuracy is not None:
        chex.assert_shape(np.asarray(multilabel_accuracy), acc.shape)
    strengths, seeds, num_classes = acc.shape
    best_average = int(np.argmax(np.nanmean(average_accuracy, axis=1)))
    reference = best_average if reference_index is None else int(reference_index)
    mean, var = seed_mean_variance(acc, n)
    ml_mean = None if multilabel_accuracy is None else np.nanmean(np.asarray(multilabel_accuracy, np.float64), axis=1)
    factor = num_classes if correction == "bonferroni" else 1
    records = []
    for k in range(num_classes):
        if np.all(np.isnan(mean[:, k])):
            continue
        best = int(np.nanargmax(mean[:, k]))
        drop = float(mean[best, k] - mean[reference, k])
        se = float(np.sqrt((var[best, k] + var[reference, k]) / seeds))
        z = drop / se if se > 0 else (np.inf if drop > 0 else 0.0)
        p_value = float(min(1.0, factor * stats.norm.sf(z))) if drop > 0 else 1.0
        record = {"class": k, "best_index": best, "drop": drop, "z": float(z), "p_value": p_value,
                  "affected": bool(drop > 0 and p_value <= alpha and drop >= min_drop)}
        if ml_mean is not None and not np.isnan(ml_mean[best, k]):
            ml_drop = float(ml_mean[best, k] - ml_mean[reference, k])
            record["multilabel_drop"] = ml_drop
            record["explained_by_multilabel"] = float(np.clip(1 - ml_drop / drop, 0, 1)) if drop > 0 else None
        records.append(record)
    return {"reference_index": reference, "best_average_index": best_average, "classes": records}
