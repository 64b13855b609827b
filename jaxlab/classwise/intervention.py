"""Class-conditional augmentation from the analysis: pick confused pairs, weaken their crops, measure.

Selection (pure, on labels and predictions of a sweep, predictions (S, R, N)):
  false_positive_growth: the classes whose false positives grow most from the weakest strength
      to s* (the reference strength, by default the best-average one), FP_l(s*) - FP_l(s_weakest) in seed means, each with the
      class whose errors it absorbs most at s* (argmax_{k != l} C_{s*}[k, l]); both are treated.
  affected: the affected classes (largest drop first), each with its confusion partner.
Treating only one class of a pair tends to move the bias to the other (notes/classwise.md), so
both classes of each pair are treated.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxlab.classwise import metrics

SELECTIONS = ("false_positive_growth", "affected")


def select_pairs(strengths: Sequence[float], labels, predictions, num_classes: int, *, best_index: int,
                 selection: str = "false_positive_growth", num_pairs: int = 2,
                 analysis: dict | None = None) -> list[tuple[int, int]]:
    """Up to `num_pairs` disjoint (class, partner) pairs to treat, most important first (see module docstring).

    `analysis` (from jaxlab.classwise.analyze) is needed for selection="affected".
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection={selection!r}; choose one of {SELECTIONS}")
    confusions = metrics.confusion_matrix(labels, predictions, num_classes).mean(axis=1)  # (S, K, K)
    candidates: list[tuple[int, int]] = []
    if selection == "false_positive_growth":
        weakest = int(np.argmax(strengths))
        fp = confusions.sum(axis=1) - np.diagonal(confusions, axis1=1, axis2=2)  # (S, K)
        growth = fp[best_index] - fp[weakest]
        for l in np.argsort(-growth, kind="stable"):
            if growth[l] <= 0:
                break
            column = confusions[best_index, :, l].copy()
            column[l] = -np.inf
            candidates.append((int(np.argmax(column)), int(l)))
    else:
        if analysis is None:
            raise ValueError("selection='affected' needs the analysis dict")
        by_class = {r["class"]: r for r in analysis["classes"]}
        candidates = [(k, by_class[k]["partner"]) for k in analysis["affected"]]
    pairs, used = [], set()
    for k, l in candidates:
        if k in used or l in used:
            continue
        pairs.append((k, l))
        used.update((k, l))
        if len(pairs) == num_pairs:
            break
    return pairs


def intervention_table(treated: Sequence[int], num_classes: int, *, treated_strength: float,
                       default_strength: float) -> list[float]:
    """Per-class strengths: treated_strength for the treated classes, default_strength for the others."""
    table = [float(default_strength)] * num_classes
    for k in treated:
        table[k] = float(treated_strength)
    return table


def compare(labels, baseline, treated, num_classes: int, classes: Sequence[int]) -> dict:
    """Per-class and average accuracy change, treated - baseline, paired by seed (both (R, N)).

    Returns the seed-mean change and its Student-t CI half-width for every class ("per_class"; the
    treated `classes` are listed under "treated") and for the average.
    """
    labels = np.asarray(labels)
    base_acc = metrics.per_class_accuracy(labels, baseline, num_classes)  # (R, K)
    new_acc = metrics.per_class_accuracy(labels, treated, num_classes)
    base_fp = metrics.false_positives(labels, baseline, num_classes)
    new_fp = metrics.false_positives(labels, treated, num_classes)
    per_class = {}
    for k in range(num_classes):
        change, half = metrics.mean_and_ci(new_acc[:, k] - base_acc[:, k])
        per_class[int(k)] = {"baseline": float(np.mean(base_acc[:, k])), "treated": float(np.mean(new_acc[:, k])),
                             "change": float(change), "change_ci": float(half),
                             "false_positives_baseline": float(np.mean(base_fp[:, k])),
                             "false_positives_treated": float(np.mean(new_fp[:, k]))}
    base_avg = (np.asarray(baseline) == labels).mean(axis=-1)
    new_avg = (np.asarray(treated) == labels).mean(axis=-1)
    change, half = metrics.mean_and_ci(new_avg - base_avg)
    return {"treated": sorted(int(k) for k in classes), "per_class": per_class,
            "average": {"baseline": float(base_avg.mean()), "treated": float(new_avg.mean()),
                        "change": float(change), "change_ci": float(half)}}
