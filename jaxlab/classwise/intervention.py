"""Class-conditional augmentation from the analysis: pick confused pairs, weaken their crops, measure.

Candidate pairs (source k, absorber l: k's errors go to l), ranked, from labels and predictions (S, R, N):
  false_positive_growth: every class l whose false positives grow from the weakest strength to s* (the
      reference strength), g_l = FP_l(s*) - FP_l(s_weakest) > 0 in seed means, largest g_l first, paired with
      the class whose errors it absorbs most at s*, k = argmax_{k != l} C_{s*}[k, l].
  affected: the affected classes (largest drop first), each with its confusion partner l*.
The first `num_pairs` candidates that share no class with an earlier treated one are treated: both
classes of each (treating only one class of a pair tends to move the bias to the other, notes/classwise.md).
Every other candidate is "overlap" (shares a class with a treated pair) or "limit" (num_pairs reached).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxlab.classwise import metrics

SELECTIONS = ("false_positive_growth", "affected")


def rank_pairs(strengths: Sequence[float], labels, predictions, num_classes: int, *, best_index: int,
               selection: str = "false_positive_growth", num_pairs: int = 2,
               analysis: dict | None = None) -> list[dict]:
    """Every candidate pair, most important first, with its status (see the module docstring).

    Each candidate: source, absorber, rank (1 = first), status ("treated", "overlap" or "limit"),
    errors_absorbed (seed mean C_{s*}[source, absorber]); for false_positive_growth also false_positives
    [FP_l(s_weakest), FP_l(s*)] and growth; for affected the source's drop and p_value. `analysis`
    (jaxlab.classwise.analyze) is needed for selection="affected".
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection={selection!r}; choose one of {SELECTIONS}")
    confusions = metrics.confusion_matrix(labels, predictions, num_classes).mean(axis=1)  # (S, K, K)
    candidates: list[dict] = []
    if selection == "false_positive_growth":
        weakest = int(np.argmax(strengths))
        fp = confusions.sum(axis=1) - np.diagonal(confusions, axis1=1, axis2=2)  # (S, K)
        growth = fp[best_index] - fp[weakest]
        for l in np.argsort(-growth, kind="stable"):
            if growth[l] <= 0:
                break
            column = confusions[best_index, :, l].copy()
            column[l] = -np.inf
            candidates.append({"source": int(np.argmax(column)), "absorber": int(l), "growth": float(growth[l]),
                               "false_positives": [float(fp[weakest, l]), float(fp[best_index, l])]})
    else:
        if analysis is None:
            raise ValueError("selection='affected' needs the analysis dict")
        by_class = {r["class"]: r for r in analysis["classes"]}
        candidates = [{"source": k, "absorber": by_class[k]["partner"], "drop": by_class[k]["drop"],
                       "p_value": by_class[k]["p_value"]} for k in analysis["affected"]]
    used, treated = set(), 0
    for rank, candidate in enumerate(candidates, 1):
        pair = {candidate["source"], candidate["absorber"]}
        status = "overlap" if pair & used else "limit" if treated == num_pairs else "treated"
        if status == "treated":
            used |= pair
            treated += 1
        candidate.update(rank=rank, status=status,
                         errors_absorbed=float(confusions[best_index, candidate["source"], candidate["absorber"]]))
    return candidates


def intervention_table(treated: Sequence[int], num_classes: int, *, treated_strength: float,
                       default_strength: float) -> list[float]:
    """Per-class strengths: treated_strength for the treated classes, default_strength for the others."""
    table = [float(default_strength)] * num_classes
    for k in treated:
        table[k] = float(treated_strength)
    return table


def compare(labels, baseline, treated, num_classes: int, classes: Sequence[int]) -> dict:
    """Per-class and average accuracy change, treated - baseline, paired by seed (both (R, N)).

    Returns the seed-mean change and its 95% Student-t interval over seeds, clipped to [-1, 1]
    (metrics.mean_and_interval: change_lower, change_upper), for every class ("per_class"; the treated
    `classes` are listed under "treated") and for the average.
    """
    labels = np.asarray(labels)
    base_acc = metrics.per_class_accuracy(labels, baseline, num_classes)  # (R, K)
    new_acc = metrics.per_class_accuracy(labels, treated, num_classes)
    base_fp = metrics.false_positives(labels, baseline, num_classes)
    new_fp = metrics.false_positives(labels, treated, num_classes)

    def change(base, new) -> dict:
        mean, lower, upper = metrics.mean_and_interval(new - base, bounds=(-1.0, 1.0))
        return {"baseline": float(np.mean(base)), "treated": float(np.mean(new)), "change": float(mean),
                "change_lower": float(lower), "change_upper": float(upper)}

    per_class = {int(k): {**change(base_acc[:, k], new_acc[:, k]),
                          "false_positives_baseline": float(np.mean(base_fp[:, k])),
                          "false_positives_treated": float(np.mean(new_fp[:, k]))} for k in range(num_classes)}
    average = change((np.asarray(baseline) == labels).mean(axis=-1), (np.asarray(treated) == labels).mean(axis=-1))
    return {"treated": sorted(int(k) for k in classes), "per_class": per_class, "average": average}
