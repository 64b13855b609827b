"""The class-level augmentation study: per-class measurement, affected classes, confusions, categories.

Pure functions on arrays of labels and predictions (metrics, affected, confusion, categories,
analysis, intervention) usable in a notebook; the sweep and its report (jaxlab.experiments.augmentation_sweep)
are the runner around them.
"""

from jaxlab.classwise.affected import affected_classes
from jaxlab.classwise.analysis import analyze, per_class_rows, tradeoff
from jaxlab.classwise.categories import CATEGORIES, colabel_matrix, pair_category, top_pairs
from jaxlab.classwise.confusion import confusion_partner, confusion_rates, partner_curves
from jaxlab.classwise.metrics import (class_counts, confusion_matrix, false_positives, mean_and_ci,
                                      mean_and_interval, multilabel_accuracy, multilabel_correct, per_class_accuracy,
                                      per_class_multilabel_accuracy, usable_multilabel)

__all__ = [
    "CATEGORIES", "affected_classes", "analyze", "class_counts", "colabel_matrix", "confusion_matrix",
    "confusion_partner", "confusion_rates", "false_positives", "mean_and_ci", "mean_and_interval", "multilabel_accuracy",
    "multilabel_correct", "pair_category", "partner_curves", "per_class_accuracy",
    "per_class_multilabel_accuracy", "per_class_rows", "top_pairs", "tradeoff", "usable_multilabel",
]
