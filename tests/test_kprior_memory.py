"""K-prior memory selection on hand-made examples: class balance, ties, odd sizes, short classes."""
import numpy as np
import pytest

from jaxlab import kprior


@pytest.mark.parametrize("counts, size, expected", [
    ([5, 5], 6, [3, 3]),            # floor(n / C) each
    ([5, 5], 7, [3, 3]),            # odd size: the remainder is not used (as the official code)
    ([2, 10], 8, [2, 6]),           # a short class gives its spare slots to the other
    ([0, 4], 2, [0, 2]),            # an absent class is short too
    ([2, 3], 9, [2, 3]),            # size > N: every point
    ([1, 5, 5], 9, [1, 4, 4]),      # C = 3: spare slots shared equally
    ([1, 2, 10], 9, [1, 2, 6]),     # two short classes
])
def test_class_quotas(counts, size, expected):
    labels = np.repeat(np.arange(len(counts)), counts)
    np.testing.assert_array_equal(kprior.class_quotas(labels, size, len(counts)), expected)


LABELS = np.array([0, 0, 0, 1, 1, 1, 1])
SCORES = np.array([0.1, 0.3, 0.3, 0.2, 0.5, 0.5, 0.1])


@pytest.mark.parametrize("size, largest, expected", [
    (4, True, [1, 2, 4, 5]),
    (2, True, [1, 4]),   # ties (0.3, 0.3) and (0.5, 0.5) go to the lower index
    (3, True, [1, 4]),   # odd size: floor(3 / 2) per class
    (2, False, [0, 6]),  # the lowest-lambda points
    (6, False, [0, 1, 2, 3, 6, 4]),
])
def test_lambda_selection_takes_each_class_highest_scores(size, largest, expected):
    chosen = kprior.select_memory(LABELS, size, "lambda", scores=SCORES, largest=largest)
    np.testing.assert_array_equal(chosen, np.sort(expected))


def test_lambda_selection_short_class_gives_slots_to_the_other():
    labels = np.array([1, 0, 1, 1, 1, 1])
    scores = np.array([0.9, 0.1, 0.2, 0.8, 0.7, 0.3])
    np.testing.assert_array_equal(kprior.select_memory(labels, 4, "lambda", scores=scores), [0, 1, 3, 4])


def test_random_selection_is_class_balanced_and_seeded():
    labels = np.repeat([0, 1, 2], [30, 30, 4])
    chosen = kprior.select_memory(labels, 24, "random", seed=3)
    np.testing.assert_array_equal(np.bincount(labels[chosen]), [10, 10, 4])
    assert len(np.unique(chosen)) == 24
    np.testing.assert_array_equal(chosen, kprior.select_memory(labels, 24, "random", seed=3))
    assert not np.array_equal(chosen, kprior.select_memory(labels, 24, "random", seed=4))


def test_all_selection_and_errors():
    np.testing.assert_array_equal(kprior.select_memory(LABELS, 2, "all"), np.arange(7))
    with pytest.raises(ValueError, match="not one of"):
        kprior.select_memory(LABELS, 2, "fisher")
    with pytest.raises(ValueError, match="needs scores"):
        kprior.select_memory(LABELS, 2, "lambda")


def test_memory_scores_are_the_curvature_of_the_loss():
    """softmax: sum_c s_c (1 - s_c) (2 classes: 2 sigma (1 - sigma) of the logit difference);
    sigmoid: sigma (1 - sigma), the same ranking; squared: constant."""
    logits = np.array([[0.0, 0.0], [2.0, -1.0], [0.5, 3.0]])
    sigma = 1 / (1 + np.exp(-(logits[:, 0] - logits[:, 1])))
    softmax = kprior.memory_scores(logits, kprior.SOFTMAX)
    np.testing.assert_allclose(softmax, 2 * sigma * (1 - sigma), rtol=1e-6)
    sigmoid = kprior.memory_scores((logits[:, 0] - logits[:, 1])[:, None], kprior.SIGMOID)
    np.testing.assert_allclose(sigmoid, softmax / 2, rtol=1e-6)
    np.testing.assert_array_equal(kprior.memory_scores(logits, kprior.SQUARED), [2, 2, 2])
