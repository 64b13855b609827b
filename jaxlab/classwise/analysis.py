"""The whole class-level analysis of a sweep, from labels and predictions only.

`analyze` takes the eval labels (N,) and the predictions of every run (S strengths x R seeds x N)
and returns one JSON-able dict: the average-vs-class trade-off (seed means and CIs per strength),
per-class accuracy (and multi-label accuracy when label sets exist), the affected classes
(jaxlab.classwise.affected), each class's confusion partner with its curves
(jaxlab.classwise.confusion) and the pair's category (jaxlab.classwise.categories).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxlab.classwise import affected as affected_lib
from jaxlab.classwise import categories, confusion, metrics


def _seed_summary(values, bounds: tuple[float, float] = (0.0, 1.0)) -> dict[str, list]:
    """Seed means (axis 1) and their 95% Student-t interval clipped to `bounds` (metrics.mean_and_interval):
    the numbers report.md prints and its plots draw."""
    mean, lower, upper = metrics.mean_and_interval(values, axis=1, bounds=bounds)
    return {"mean": np.asarray(mean).tolist(), "lower": np.asarray(lower).tolist(), "upper": np.asarray(upper).tolist()}


def per_class_rows(strengths: Sequence[float], seeds: Sequence[int], labels, predictions, num_classes: int,
                   label_sets=None) -> list[dict]:
    """One row per (strength, seed, class): n, accuracy, multilabel_accuracy (None without sets), false_positives."""
    accuracy = metrics.per_class_accuracy(labels, predictions, num_classes)
    fp = metrics.false_positives(labels, predictions, num_classes)
    ml = None if label_sets is None else metrics.per_class_multilabel_accuracy(labels, predictions, label_sets,
                                                                               num_classes)
    n = metrics.class_counts(labels, num_classes)
    rows = []
    for i, strength in enumerate(strengths):
        for j, seed in enumerate(seeds):
            for k in range(num_classes):
                rows.append({"strength": float(strength), "seed": int(seed), "class": k, "n": int(n[k]),
                             "accuracy": float(accuracy[i, j, k]),
                             "multilabel_accuracy": None if ml is None else float(ml[i, j, k]),
                             "false_positives": int(fp[i, j, k])})
    return rows


def analyze(strengths: Sequence[float], labels, predictions, num_classes: int, *, class_names=None,
            label_sets=None, groups=None, alpha: float = 0.05, min_drop: float = 0.0, correction: str = "none",
            symmetric_threshold: float = 0.2, cooccurrence_threshold: float = 0.2,
            reference_strength: float | None = None) -> dict:
    """predictions: (S, R, N) for strengths[S] and R seeds. See the module docstring.

    reference_strength: s* against which classes are scored (default: the best strength on average).
    """
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if labels.ndim != 1:
        raise ValueError(f"labels must be (examples,): one true class per evaluation example, got {labels.shape}")
    if predictions.ndim != 3 or predictions.shape[0] != len(strengths) or predictions.shape[2] != len(labels):
        raise ValueError(f"predictions must be (strengths={len(strengths)}, seeds, examples={len(labels)}), "
                         f"got {predictions.shape}")
    class_names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
    n = metrics.class_counts(labels, num_classes)
    accuracy = metrics.per_class_accuracy(labels, predictions, num_classes)  # (S, R, K)
    average = (predictions == labels).mean(axis=-1)  # (S, R)
    confusions = metrics.confusion_matrix(labels, predictions, num_classes)  # (S, R, K, K)
    result = {
        "strengths": [float(s) for s in strengths],
        "num_seeds": int(predictions.shape[1]),
        "class_names": class_names,
        "n": n.tolist(),
        "average_accuracy": _seed_summary(average),
        "per_class_accuracy": _seed_summary(accuracy),
        "false_positives": _seed_summary(metrics.false_positives(labels, predictions, num_classes), (0.0, np.inf)),
    }
    ml_accuracy, colabel = None, None
    if label_sets is not None:
        ml_accuracy = metrics.per_class_multilabel_accuracy(labels, predictions, label_sets, num_classes)
        result["multilabel_average_accuracy"] = _seed_summary(metrics.multilabel_accuracy(predictions, label_sets))
        result["per_class_multilabel_accuracy"] = _seed_summary(ml_accuracy)
        colabel = categories.colabel_matrix(labels, label_sets, num_classes)
    if reference_strength is not None and reference_strength not in strengths:
        raise ValueError(f"reference_strength={reference_strength} is not one of the strengths {list(strengths)}")
    scored = affected_lib.affected_classes(
        accuracy, average, n, alpha=alpha, min_drop=min_drop, correction=correction, multilabel_accuracy=ml_accuracy,
        reference_index=None if reference_strength is None else list(strengths).index(reference_strength))
    best = scored["reference_index"]
    result["reference_index"] = best
    result["reference_strength"] = float(strengths[best])
    result["best_average_strength"] = float(strengths[scored["best_average_index"]])
    for record in scored["classes"]:
        k = record["class"]
        partner = confusion.confusion_partner(confusions, k, at=best)
        record.update(name=class_names[k], best_strength=float(strengths[record["best_index"]]),
                      partner=partner, partner_name=class_names[partner],
                      category=categories.pair_category(k, partner, colabel=colabel, groups=groups,
                                                        symmetric_threshold=symmetric_threshold,
                                                        cooccurrence_threshold=cooccurrence_threshold),
                      curves=confusion.partner_curves(confusions, k, partner))
    result["classes"] = scored["classes"]
    result["affected"] = [r["class"] for r in sorted(scored["classes"], key=lambda r: -r["drop"]) if r["affected"]]
    result["tradeoff"] = tradeoff(accuracy, average, result["affected"])
    return result


def tradeoff(per_class_accuracy, average_accuracy, classes) -> dict[str, list]:
    """The average-vs-class trade-off per strength (seed means): average accuracy, the worst class's
    accuracy, and the mean accuracy of `classes` (e.g. the affected ones; None when empty)."""
    class_mean = np.nanmean(np.asarray(per_class_accuracy, np.float64), axis=1)  # (S, K)
    return {"average": np.mean(average_accuracy, axis=1).tolist(),
            "worst_class": np.nanmin(class_mean, axis=1).tolist(),
            "selected_classes": (class_mean[:, list(classes)].mean(axis=1).tolist() if len(classes) else None)}
