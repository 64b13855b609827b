"""Per-class measurements from labels and predictions (pure numpy; usable in a notebook).

Shapes: labels (N,), predictions (..., N) — any leading axes (strength, seed) are kept, so a
whole sweep's predictions (S, R, N) are scored at once. K = num_classes. label_sets (N, K) bool.
The ranks and the shared N are asserted (chex; AssertionError): a mismatch would otherwise broadcast.
"""

from __future__ import annotations

import chex
import numpy as np
from scipy import stats


def _check_labels(labels, predictions) -> None:
    """labels (N,) and predictions (..., N)."""
    chex.assert_rank(labels, 1)
    chex.assert_axis_dimension(predictions, -1, labels.shape[0])


def _check_label_sets(label_sets, predictions=None, labels=None) -> None:
    """label_sets (N, K), predictions (..., N) and labels (N,) where given."""
    chex.assert_rank(label_sets, 2)
    if predictions is not None:
        chex.assert_axis_dimension(predictions, -1, label_sets.shape[0])
    if labels is not None:
        chex.assert_rank(labels, 1)
        chex.assert_equal_shape_prefix([labels, label_sets], 1)


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """C[..., k, l] = #{i : y_i = k, pred_i = l}."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    _check_labels(labels, predictions)
    lead = predictions.shape[:-1]
    flat = predictions.reshape(-1, predictions.shape[-1])
    index = labels[None, :] * num_classes + flat
    counts = [np.bincount(row, minlength=num_classes * num_classes) for row in index]
    return np.stack(counts).reshape(*lead, num_classes, num_classes)


def class_counts(labels, num_classes: int) -> np.ndarray:
    """n_k = #{i : y_i = k}."""
    labels = np.asarray(labels)
    chex.assert_rank(labels, 1)
    return np.bincount(labels, minlength=num_classes)


def per_class_accuracy(labels, predictions, num_classes: int) -> np.ndarray:
    """acc_k = mean over examples with label k of [pred = k]; NaN for a class absent from `labels`."""
    confusion = confusion_matrix(labels, predictions, num_classes)
    n = class_counts(labels, num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.diagonal(confusion, axis1=-2, axis2=-1) / n, np.nan)


def false_positives(labels, predictions, num_classes: int) -> np.ndarray:
    """FP_l = #{i : pred_i = l, y_i != l}."""
    confusion = confusion_matrix(labels, predictions, num_classes)
    return confusion.sum(axis=-2) - np.diagonal(confusion, axis1=-2, axis2=-1)


def usable_multilabel(label_sets) -> np.ndarray:
    """The empty-set rule: an example counts in multi-label scoring only if its label set is non-empty."""
    label_sets = np.asarray(label_sets, bool)
    _check_label_sets(label_sets)
    return label_sets.any(axis=-1)


def multilabel_correct(predictions, label_sets) -> np.ndarray:
    """[pred_i in set_i] per example (..., N), False where the set is empty."""
    label_sets = np.asarray(label_sets, bool)
    predictions = np.asarray(predictions)
    _check_label_sets(label_sets, predictions)
    return np.take_along_axis(np.broadcast_to(label_sets, predictions.shape + label_sets.shape[-1:]),
                              predictions[..., None], axis=-1)[..., 0]


def multilabel_accuracy(predictions, label_sets) -> np.ndarray:
    """ReaL accuracy: mean of [pred in set] over examples with a non-empty set; shape (...)."""
    usable = usable_multilabel(label_sets)
    return multilabel_correct(predictions, label_sets)[..., usable].mean(axis=-1)


def per_class_multilabel_accuracy(labels, predictions, label_sets, num_classes: int) -> np.ndarray:
    """mean over examples with original label k AND a non-empty set of [pred in set]; NaN if none."""
    labels, label_sets, predictions = np.asarray(labels), np.asarray(label_sets, bool), np.asarray(predictions)
    _check_label_sets(label_sets, predictions, labels)
    usable = usable_multilabel(label_sets)
    correct = multilabel_correct(predictions, label_sets)
    one_hot = (labels[:, None] == np.arange(num_classes)) & usable[:, None]  # (N, K)
    n = one_hot.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, correct.astype(np.float64) @ one_hot / n, np.nan)


def mean_and_ci(values, axis: int = 0, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Mean over `axis` (the seeds) and the half-width of a Student-t confidence interval.

    half = t_{(1+confidence)/2, R-1} * sd / sqrt(R); NaN when fewer than 2 values.
    """
    values = np.asarray(values, np.float64)
    count = np.sum(~np.isnan(values), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(values, axis=axis) if values.size else np.nan
        sd = np.nanstd(values, axis=axis, ddof=1) if np.max(count, initial=0) > 1 else np.full_like(mean, np.nan)
        t = stats.t.ppf((1 + confidence) / 2, np.maximum(count - 1, 1))
        half = np.where(count > 1, t * sd / np.sqrt(count), np.nan)
    return mean, half


def mean_and_interval(values, axis: int = 0, confidence: float = 0.95,
                      bounds: tuple[float, float] = (0.0, 1.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over `axis` (the seeds) and its Student-t interval clipped to `bounds`: (mean, lower, upper).

    lower, upper = clip(mean -+ half, *bounds) with half from `mean_and_ci`. With R = 2 seeds
    t_{0.975, 1} = 12.7, so an accuracy interval easily passes 1: clipped to what the quantity can take
    ([0, 1] for an accuracy, [-1, 1] for a change of accuracy, [0, inf) for a count). NaN for fewer than 2 values.
    """
    mean, half = mean_and_ci(values, axis=axis, confidence=confidence)
    return mean, np.clip(mean - half, *bounds), np.clip(mean + half, *bounds)
