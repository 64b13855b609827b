"""Choosing the K-prior's memory M among the past inputs (pure numpy, deterministic).

Score: lambda_i = tr h'(f_{w*}(x_i)), the curvature of the loss at the old model's output:

    softmax  lambda_i = sum_c s_ic (1 - s_ic),  s_i = softmax(f_{w*}(x_i))   (2 classes: 2 s (1 - s))
    sigmoid  lambda_i = sigma_i (1 - sigma_i)  (one output: half the 2-output softmax value, same ranking)
    squared  lambda_i = number of outputs      (constant: every point ties)

Leaving point i out of M makes the K-prior's gradient err by about lambda_i phi_i phi_i^T (w - w*)
(GLM), so the memory keeps the largest-lambda points: those the old model is least sure of.

Class balance (as the official code, generalised from 2 to C classes): each class gets
floor(size / C) slots; a class with fewer points than its share gives all its points and its
spare slots go to the other classes, shared again equally (repeated until no class is short).
The remainder of size / C is not used, so |M| can be up to C - 1 below `size` (the official
code takes int(n/2) points per class).

The soft labels h(f_{w*}(x_m)) stored with the memory are `jaxlab.kprior.prior.predictions`;
Replay uses the same points with their true labels.
"""

from __future__ import annotations

import numpy as np

from jaxlab.kprior.prior import SOFTMAX, ExpFamilyLoss

METHODS = ("lambda", "random", "all")


def memory_scores(outputs, loss: ExpFamilyLoss = SOFTMAX) -> np.ndarray:
    """lambda_i = tr h'(f_i) for the old model's outputs f_i = f_{w*}(x_i): (N,)."""
    return np.asarray(loss.curvature(outputs))


def class_quotas(labels, size: int, num_classes: int) -> np.ndarray:
    """Slots per class: floor(budget / #open classes) each, short classes take all theirs and
    pass their spare slots on, repeated until no open class is short. (num_classes,) ints."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes)
    quotas = np.zeros(num_classes, np.int64)
    open_classes = np.arange(num_classes)
    budget = size
    while open_classes.size:
        share = budget // open_classes.size
        short = counts[open_classes] < share
        if not short.any():
            quotas[open_classes] = share
            break
        quotas[open_classes[short]] = counts[open_classes[short]]
        budget -= counts[open_classes[short]].sum()
        open_classes = open_classes[~short]
    return quotas


def select_memory(labels, size: int, method: str = "lambda", *, scores=None, num_classes: int | None = None,
                  seed: int = 0, largest: bool = True) -> np.ndarray:
    """Indices (sorted ascending) of a class-balanced memory of at most `size` points.

    method "lambda": each class's `class_quotas` highest-`scores` points (`largest=False`: the
    lowest, for ablations); ties go to the lower index. "random": a uniform draw without
    replacement per class, seeded by `seed`. "all": every point (size ignored).
    """
    labels = np.asarray(labels)
    if method not in METHODS:
        raise ValueError(f"memory selection {method!r} is not one of {METHODS}")
    if method == "all":
        return np.arange(labels.shape[0])
    if method == "lambda" and scores is None:
        raise ValueError("lambda selection needs scores (memory_scores of the old model's outputs)")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    rng = np.random.default_rng(seed)
    chosen = []
    for label, quota in enumerate(class_quotas(labels, size, num_classes)):
        members = np.flatnonzero(labels == label)
        if method == "random":
            chosen.append(rng.choice(members, quota, replace=False))
        else:
            class_scores = np.asarray(scores)[members]
            order = np.argsort(-class_scores if largest else class_scores, kind="stable")
            chosen.append(members[order[:quota]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)
