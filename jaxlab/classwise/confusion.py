"""Where an affected class's errors go, as a function of augmentation strength.

    c_k(l; s) = P(pred = l | y = k) = C_s[k, l] / n_k,      l* = argmax_{l != k} c_k(l; s_ref),
    FP_l(s) = #{pred = l, y != l} = sum_{j != l} C_s[j, l].
The expected pattern for a pair hurt by augmentation: as s falls, c_k(l*) and FP_{l*} rise while
the pair's joint accuracy P(pred in {k, l*} | y = k) stays roughly flat.
"""

from __future__ import annotations

import chex
import numpy as np

from jaxlab.classwise.metrics import mean_and_interval


def _check_square(confusion: np.ndarray, ranks) -> None:
    """(..., K, K) of one of the given ranks."""
    chex.assert_rank(confusion, ranks)
    chex.assert_axis_dimension(confusion, -2, confusion.shape[-1])


def confusion_rates(confusion) -> np.ndarray:
    """Row-normalised confusion: rates[..., k, l] = C[..., k, l] / sum_l C[..., k, l] (NaN for empty rows)."""
    confusion = np.asarray(confusion, np.float64)
    _check_square(confusion, {2, 3, 4})
    with np.errstate(invalid="ignore", divide="ignore"):
        return confusion / confusion.sum(axis=-1, keepdims=True)


def confusion_partner(confusions, k: int, *, at: int) -> int:
    """l* = argmax_{l != k} of the seed-mean c_k(l) at strength index `at`; confusions (S, R, K, K)."""
    _check_square(np.asarray(confusions), 4)
    rates = np.nanmean(confusion_rates(confusions)[at, :, k, :], axis=0)
    rates[k] = -np.inf
    return int(np.argmax(rates))


def partner_curves(confusions, k: int, partner: int) -> dict[str, list]:
    """Per strength: c_k(partner), FP_partner and the pair's joint accuracy, each as seed means with their
    95% Student-t interval clipped to the quantity's range (`<name>_lower`, `<name>_upper`)."""
    confusions = np.asarray(confusions, np.float64)
    _check_square(confusions, 4)  # (S, R, K, K)
    rates = confusion_rates(confusions)
    fp = confusions[..., :, partner].sum(axis=-1) - confusions[..., partner, partner]  # (S, R)
    curves = {}
    for name, values, bounds in (("confusion_rate", rates[..., k, partner], (0.0, 1.0)),
                                 ("partner_false_positives", fp, (0.0, np.inf)),
                                 ("pair_accuracy", rates[..., k, k] + rates[..., k, partner], (0.0, 1.0))):
        mean, lower, upper = mean_and_interval(values, axis=1, bounds=bounds)
        curves[name] = np.asarray(mean).tolist()
        curves[f"{name}_lower"] = np.asarray(lower).tolist()
        curves[f"{name}_upper"] = np.asarray(upper).tolist()
    return curves
