"""jaxlab.classwise analysis: hand-computed per-class / multi-label metrics, affected classes,
confusion partners, categories and intervention selection."""

import chex
import numpy as np
import pytest

from jaxlab import classwise as cw
from jaxlab.classwise import intervention, metrics

LABELS = np.array([0, 0, 1, 1, 2])
PREDS = np.array([[0, 1, 1, 1, 0],
                  [0, 0, 0, 1, 2]])
SETS = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1]], bool)  # example 3: empty set


def test_per_class_accuracy_and_false_positives_by_hand():
    accuracy = cw.per_class_accuracy(LABELS, PREDS, 3)
    chex.assert_shape(accuracy, (2, 3))
    chex.assert_trees_all_close(accuracy, np.array([[0.5, 1.0, 0.0], [1.0, 0.5, 1.0]]), rtol=1e-7)
    chex.assert_trees_all_equal(cw.false_positives(LABELS, PREDS, 3), np.array([[1, 1, 0], [1, 0, 0]]))
    confusion = cw.confusion_matrix(LABELS, PREDS[0], 3)
    chex.assert_trees_all_equal(confusion, np.array([[1, 1, 0], [0, 2, 0], [1, 0, 0]]))
    chex.assert_shape(cw.confusion_matrix(LABELS, PREDS, 3), (2, 3, 3))
    # A class missing from the labels has NaN accuracy, not 0.
    assert np.isnan(cw.per_class_accuracy(LABELS, PREDS[0], 4)[3])


def test_multilabel_accuracy_skips_empty_sets():
    # Run 0: ex0 pred 0 in {0,1} yes; ex1 pred 1 in {0} no; ex2 pred 1 in {1} yes; ex3 empty (skipped); ex4 pred 0 no.
    chex.assert_trees_all_close(
        (cw.multilabel_accuracy(PREDS, SETS), cw.per_class_multilabel_accuracy(LABELS, PREDS, SETS, 3)),
        (np.array([0.5, 0.75]), np.array([[0.5, 1.0, 0.0], [1.0, 0.0, 1.0]])), rtol=1e-7)
    chex.assert_trees_all_equal(cw.usable_multilabel(SETS), np.array([True, True, True, False, True]))


def test_mean_and_ci_is_student_t():
    values = np.array([[0.5, 0.6], [0.7, 0.6]])  # seeds on axis 0
    mean, half = cw.mean_and_ci(values)
    np.testing.assert_allclose(mean, [0.6, 0.6])
    # t_{0.975, 1} = 12.706; sd of (0.5, 0.7) = 0.1414; half = 12.706 * 0.1414 / sqrt(2) = 1.2706
    np.testing.assert_allclose(half, [1.27062, 0.0], atol=1e-4)
    assert np.isnan(cw.mean_and_ci(np.array([[0.5]]))[1]).all()


def test_mean_and_interval_is_the_student_t_interval_clipped_to_the_bounds():
    values = np.array([[0.8, 0.5, -0.2], [0.9, 0.5, 0.0], [1.0, 0.5, 0.2]])  # 3 seeds (axis 0) x 3 quantities
    mean, lower, upper = metrics.mean_and_interval(values)
    # t_{0.975, 2} = 4.3027; column 0: sd 0.1, half = 4.3027 * 0.1 / sqrt(3) = 0.24841 -> [0.65159, 1.14841]
    np.testing.assert_allclose(mean, [0.9, 0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(lower, [0.65159, 0.5, 0.0], atol=1e-5)  # column 2 would reach -0.497: clipped at 0
    np.testing.assert_allclose(upper, [1.0, 0.5, 0.49682], atol=1e-5)  # column 0 would reach 1.148: clipped at 1
    _, lower, upper = metrics.mean_and_interval(values, bounds=(-1.0, 1.0))  # a change of accuracy
    np.testing.assert_allclose([lower[2], upper[0]], [-0.49682, 1.0], atol=1e-5)
    _, lower, upper = metrics.mean_and_interval(values * 100, bounds=(0.0, np.inf))  # a count
    np.testing.assert_allclose(upper[0], 114.841, atol=1e-3)
    assert np.isnan(metrics.mean_and_interval(np.array([[0.5]]))[1]).all()  # one seed: no interval


def test_analysis_intervals_are_the_clipped_t_intervals():
    """analysis.json's intervals (what the report prints and plots) are mean_and_interval's, inside [0, 1]."""
    strengths, labels, predictions = _planted_sweep(seeds=2)
    analysis = cw.analyze(strengths, labels, predictions, 4)
    accuracy = cw.per_class_accuracy(labels, predictions, 4)
    mean, lower, upper = metrics.mean_and_interval(accuracy, axis=1)
    np.testing.assert_allclose(analysis["per_class_accuracy"]["lower"], lower)
    np.testing.assert_allclose(analysis["per_class_accuracy"]["upper"], upper)
    assert (mean + cw.mean_and_ci(accuracy, axis=1)[1] > 1).any()  # unclipped, some interval passes 1 ...
    for key in ("average_accuracy", "per_class_accuracy"):  # ... clipped, none does
        assert np.min(analysis[key]["lower"]) >= 0 and np.max(analysis[key]["upper"]) <= 1
    curves = next(r for r in analysis["classes"] if r["class"] == 0)["curves"]
    assert all(lo <= m <= hi for lo, m, hi in zip(curves["partner_false_positives_lower"],
                                                   curves["partner_false_positives"],
                                                   curves["partner_false_positives_upper"]))
    assert min(analysis["false_positives"]["lower"][0]) >= 0


def _planted_sweep(seed=0, seeds=4, n_per_class=200):
    """Class 0 loses 30% of its examples to class 1 at strong augmentation (s = 0.08), which is nonetheless
    best on average because every other class gains; class 3 is unaffected."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), n_per_class)
    strengths = [0.08, 1.0]
    predictions = np.empty((2, seeds, len(labels)), int)
    for r in range(seeds):
        for i, error_rate in enumerate([0.02, 0.15]):
            p = labels.copy()
            wrong = rng.random(len(labels)) < error_rate
            p[wrong & (labels != 3)] = (labels[wrong & (labels != 3)] + 2) % 3
            if i == 0:
                moved = (labels == 0) & (rng.random(len(labels)) < 0.3)
                p[moved] = 1
            else:
                p[(labels == 0) & wrong] = 2
            predictions[i, r] = p
    return strengths, labels, predictions


def test_affected_class_and_partner_are_found():
    strengths, labels, predictions = _planted_sweep()
    analysis = cw.analyze(strengths, labels, predictions, 4)
    assert analysis["best_average_strength"] == analysis["reference_strength"] == 0.08
    assert analysis["affected"] == [0]
    record = next(r for r in analysis["classes"] if r["class"] == 0)
    assert record["best_strength"] == 1.0 and record["drop"] == pytest.approx(0.3 - 0.13 + 0.0, abs=0.06)
    assert record["partner"] == 1 and record["p_value"] < 1e-6
    # Class 0's confusion with class 1 rises with strong crops, and so do class 1's false positives.
    assert record["curves"]["confusion_rate"][0] > 0.25 > record["curves"]["confusion_rate"][1]
    assert record["curves"]["partner_false_positives"][0] > record["curves"]["partner_false_positives"][1]
    unaffected = next(r for r in analysis["classes"] if r["class"] == 3)
    assert not unaffected["affected"]


def test_affected_needs_more_than_seed_noise():
    """A drop of one example out of 10 with two seeds is not significant (binomial floor); of 1,000 out of 10,000 is."""
    # (S=2, R=2, K=2), no seed variance at all; class 1 makes strength 0 the best on average.
    accuracy = np.array([[[0.9, 1.0], [0.9, 1.0]], [[1.0, 0.5], [1.0, 0.5]]])
    average = accuracy.mean(axis=-1)
    result = cw.affected_classes(accuracy, average, n=np.array([10, 10]))
    assert result["best_average_index"] == 0
    assert result["classes"][0]["drop"] == pytest.approx(0.1) and not result["classes"][0]["affected"]
    assert result["classes"][1]["drop"] == 0 and not result["classes"][1]["affected"]
    big = cw.affected_classes(accuracy, average, n=np.array([10_000, 10_000]))
    assert big["classes"][0]["affected"]
    bonferroni = cw.affected_classes(accuracy, average, n=np.array([10_000, 10_000]), correction="bonferroni")
    assert bonferroni["classes"][0]["p_value"] >= big["classes"][0]["p_value"]
    with pytest.raises(ValueError, match="correction"):
        cw.affected_classes(accuracy, average, n=np.array([10]), correction="holm")


def test_multilabel_explains_an_ambiguous_drop():
    """Class 0's lost examples go to class 1, which is also in their label sets: multi-label accuracy stays flat."""
    strengths, labels, predictions = _planted_sweep()
    sets = np.zeros((len(labels), 4), bool)
    sets[np.arange(len(labels)), labels] = True
    sets[labels == 0, 1] = True  # class 0 images are also class 1
    sets[labels == 1, 0] = True
    analysis = cw.analyze(strengths, labels, predictions, 4, label_sets=sets)
    record = next(r for r in analysis["classes"] if r["class"] == 0)
    assert record["explained_by_multilabel"] > 0.9
    assert record["category"] == "ambiguous"


def test_categories_on_a_fixture():
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    sets = np.array([[1, 1, 0, 0], [1, 1, 0, 0],   # class 0 images are also labelled 1 ...
                     [1, 1, 0, 0], [0, 1, 0, 0],   # ... and class 1 images half the time 0: symmetric
                     [0, 0, 1, 1], [0, 0, 1, 1],   # class 2 images always show a 3 ...
                     [0, 0, 0, 1], [0, 0, 0, 1]],  # ... but never the reverse: co-occurring
                    bool)
    colabel = cw.colabel_matrix(labels, sets, 4)
    chex.assert_shape(colabel, (4, 4))
    chex.assert_trees_all_close(colabel[[0, 1, 3]], np.array([[1, 1, 0, 0], [0.5, 1, 0, 0], [0, 0, 0, 1]]), rtol=1e-7)
    assert cw.pair_category(0, 1, colabel=colabel) == "ambiguous"
    assert cw.pair_category(2, 3, colabel=colabel) == "co-occurring"
    assert cw.pair_category(3, 2, colabel=colabel) == "co-occurring"
    assert cw.pair_category(0, 3, colabel=colabel, groups=[0, 1, 1, 0]) == "fine-grained"
    assert cw.pair_category(0, 2, colabel=colabel, groups=[0, 1, 1, 0]) == "other"
    assert cw.pair_category(0, 1, groups=[0, 0, 1, 1]) == "fine-grained"  # no multi-labels: hierarchy only
    assert cw.top_pairs(colabel, count=3) == [(0, 1, 1.0), (2, 3, 1.0), (1, 0, 0.5)]


def _treated_pairs(candidates):
    return [(c["source"], c["absorber"]) for c in candidates if c["status"] == "treated"]


def test_intervention_selects_both_classes_of_the_pair_by_false_positive_growth():
    strengths, labels, predictions = _planted_sweep()
    candidates = intervention.rank_pairs(strengths, labels, predictions, 4, best_index=0, num_pairs=2)
    pairs = _treated_pairs(candidates)
    assert pairs[0] == (0, 1)  # class 1 absorbs class 0's errors under strong crops
    assert all(len(set(p)) == 2 for p in pairs) and len({k for p in pairs for k in p}) == 2 * len(pairs)
    table = intervention.intervention_table([0, 1], 4, treated_strength=1.0, default_strength=0.08)
    assert table == [1.0, 1.0, 0.08, 0.08]
    analysis = cw.analyze(strengths, labels, predictions, 4)
    affected = intervention.rank_pairs(strengths, labels, predictions, 4, best_index=0, selection="affected",
                                       analysis=analysis)
    assert _treated_pairs(affected) == [(0, 1)] and affected[0]["drop"] == analysis["classes"][0]["drop"]


def test_rank_pairs_says_why_a_candidate_is_not_treated():
    """By hand (one seed, s = 1 predicts perfectly): at s* = 0.25 class 0 sends 2 errors to 1 and 1 to 3, class 2
    sends 1 to 1, class 3 sends 1 to 2. False-positive growth: 1 +3, 2 +1, 3 +1 (ties keep class order)."""
    labels = np.array([0, 0, 0, 0, 1, 2, 2, 3, 3])
    strong = np.array([1, 1, 3, 0, 1, 1, 2, 2, 3])
    predictions = np.stack([strong, labels])[:, None, :]  # (S=2, R=1, N)
    candidates = intervention.rank_pairs([0.25, 1.0], labels, predictions, 4, best_index=0, num_pairs=1)
    assert [(c["source"], c["absorber"], c["rank"], c["status"]) for c in candidates] == [
        (0, 1, 1, "treated"),  # 1 absorbs 2 of its 3 false positives from 0
        (3, 2, 2, "limit"),    # intervention_pairs = 1 is reached
        (0, 3, 3, "overlap")]  # class 0 is already treated: pairs share no class
    assert candidates[0]["growth"] == 3 and candidates[0]["false_positives"] == [0.0, 3.0]
    assert candidates[0]["errors_absorbed"] == 2
    wider = intervention.rank_pairs([0.25, 1.0], labels, predictions, 4, best_index=0, num_pairs=2)
    assert [c["status"] for c in wider] == ["treated", "treated", "overlap"]


def test_intervention_compare_pairs_seeds():
    labels = np.array([0, 0, 1, 1])
    baseline = np.array([[1, 0, 1, 1], [1, 1, 1, 1]])  # class 0 accuracy 0.5, 0.0
    treated = np.array([[0, 0, 1, 1], [0, 1, 1, 1]])   # class 0 accuracy 1.0, 0.5
    result = intervention.compare(labels, baseline, treated, 2, [0])
    assert result["treated"] == [0] and sorted(result["per_class"]) == [0, 1]  # untreated classes reported too
    assert result["per_class"][0]["change"] == pytest.approx(0.5)
    assert result["per_class"][0]["change_lower"] == result["per_class"][0]["change_upper"] == pytest.approx(0.5)
    assert result["per_class"][1]["change"] == 0
    assert result["average"]["change"] == pytest.approx(0.25)
    assert result["per_class"][1]["false_positives_baseline"] == 1.5


def test_tradeoff_curve():
    strengths, labels, predictions = _planted_sweep()
    analysis = cw.analyze(strengths, labels, predictions, 4)
    trade = analysis["tradeoff"]
    assert trade["average"] == pytest.approx(analysis["average_accuracy"]["mean"])
    # strong crops: best average, but the affected class 0 is worse than without them
    assert trade["average"][0] > trade["average"][1] and trade["selected_classes"][0] < trade["selected_classes"][1]
    assert trade["worst_class"][0] == pytest.approx(np.mean(cw.per_class_accuracy(labels, predictions[0], 4)[:, 0]))
    assert cw.tradeoff(np.ones((2, 1, 3)), np.ones((2, 1)), [])["selected_classes"] is None


def test_reference_strength_overrides_the_best_average():
    strengths, labels, predictions = _planted_sweep()
    analysis = cw.analyze(strengths, labels, predictions, 4, reference_strength=1.0)
    assert analysis["reference_strength"] == 1.0 and analysis["best_average_strength"] == 0.08
    assert 0 not in analysis["affected"] and 1 in analysis["affected"]  # scored against s = 1.0 now
    with pytest.raises(ValueError, match="not one of the strengths"):
        cw.analyze(strengths, labels, predictions, 4, reference_strength=0.5)


def test_wrong_ranks_raise_instead_of_broadcasting():
    """The numpy metrics assert their ranks and the shared N (chex, AssertionError)."""
    for labels, predictions in [(LABELS[:, None], PREDS), (LABELS, PREDS[:, :4]), (LABELS[:1], PREDS)]:
        with pytest.raises(AssertionError):
            cw.confusion_matrix(labels, predictions, 3)
    with pytest.raises(AssertionError):
        cw.per_class_accuracy(LABELS, PREDS[:, :1], 3)  # one prediction for five labels
    with pytest.raises(AssertionError):
        cw.class_counts(LABELS[None], 3)
    with pytest.raises(AssertionError):
        cw.usable_multilabel(SETS[0])  # one set, not (N, K)
    with pytest.raises(AssertionError):
        cw.multilabel_correct(PREDS, SETS[:1])  # a single set would broadcast over all five examples
    with pytest.raises(AssertionError):
        cw.per_class_multilabel_accuracy(LABELS[:4], PREDS[:, :4], SETS, 3)
    with pytest.raises(AssertionError):
        cw.colabel_matrix(LABELS[:4], SETS, 3)
    with pytest.raises(AssertionError):
        cw.top_pairs(np.ones(4))


def test_confusion_and_affected_check_shapes():
    from jaxlab.classwise import confusion
    confusions = cw.confusion_matrix(LABELS, np.stack([PREDS, PREDS]), 3)  # (S=2, R=2, K, K)
    chex.assert_shape(confusions, (2, 2, 3, 3))
    assert confusion.confusion_partner(confusions, 0, at=0) in (1, 2)
    with pytest.raises(AssertionError):
        confusion.confusion_partner(confusions[0], 0, at=0)  # (R, K, K): no strength axis
    with pytest.raises(AssertionError):
        confusion.confusion_rates(confusions[..., :2])  # not square
    with pytest.raises(AssertionError):
        confusion.partner_curves(confusions[:, :, 0], 0, 1)
    accuracy = np.full((2, 2, 3), 0.5)
    cw.affected_classes(accuracy, accuracy.mean(-1), np.array([5, 5, 5]))
    for bad in [dict(average_accuracy=accuracy), dict(average_accuracy=accuracy[:1].mean(-1)),
                dict(n=np.array([5, 5])), dict(n=np.array(5)), dict(multilabel_accuracy=accuracy[:, :, :2])]:
        kwargs = {"per_class_accuracy": accuracy, "average_accuracy": accuracy.mean(-1), "n": np.array([5, 5, 5]),
                  **bad}
        with pytest.raises(AssertionError):
            cw.affected_classes(**kwargs)


def test_analyze_names_the_argument_with_the_wrong_shape():
    with pytest.raises(ValueError, match=r"labels must be \(examples,\).*\(10, 1\)"):
        cw.analyze([0.5, 1.0], np.zeros((10, 1), int), np.zeros((2, 1, 10), int), 3)
    with pytest.raises(ValueError, match=r"predictions must be \(strengths=2, seeds, examples=10\)"):
        cw.analyze([0.5, 1.0], np.zeros(10, int), np.zeros((2, 10), int), 3)
