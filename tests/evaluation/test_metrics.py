import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from videotl.evaluation import accuracy_metrics, charades_map, official_average_precision, sklearn_map


def test_ap_hand_computed():
    # Positives at ranks 1 and 3: (1/1 + 2/3) / 2.
    assert official_average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx(5 / 6)
    # Positives at ranks 2, 3 and 5: (1/2 + 2/3 + 3/5) / 3.
    ap = official_average_precision(np.array([5.0, 4.0, 3.0, 2.0, 1.0]), np.array([0, 1, 1, 0, 1]))
    assert ap == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3)


def test_ties_keep_file_order_unlike_sklearn():
    scores = np.array([0.5, 0.5, 0.5])
    # Stable order: the positive sits second among the ties.
    assert official_average_precision(scores, np.array([0, 1, 0])) == pytest.approx(0.5)
    assert official_average_precision(scores, np.array([1, 0, 0])) == pytest.approx(1.0)
    assert official_average_precision(scores, np.array([0, 0, 1])) == pytest.approx(1 / 3)
    # sklearn treats the tie as one threshold and gives 1/3 whatever the order.
    assert average_precision_score([1, 0, 0], scores) == pytest.approx(1 / 3)


def test_matches_sklearn_without_ties():
    rng = np.random.default_rng(0)
    scores = rng.random((60, 7))
    labels = (rng.random((60, 7)) < 0.3).astype(float)
    # Every video has an action (else the official rule hides its scores) and every class a positive.
    labels[np.arange(60), np.arange(60) % 7] = 1
    official = charades_map(scores, labels)
    expected = average_precision_score(labels, scores, average=None)
    np.testing.assert_allclose(official.per_class_ap, expected, rtol=1e-12)
    assert official.mean_ap == pytest.approx(float(np.mean(expected)), rel=1e-12)
    assert sklearn_map(scores, labels).mean_ap == pytest.approx(official.mean_ap, rel=1e-12)
    assert official.num_classes_evaluated == 7


def test_missing_video_ranks_last():
    # Video 2 (a positive) has no prediction: after video 0 (negative, 0.1).
    scores = np.array([[0.1], [0.9], [-np.inf]])
    labels = np.array([[0.0], [1.0], [1.0]])
    assert charades_map(scores, labels).mean_ap == pytest.approx((1 + 2 / 3) / 2)
    # Among unscored videos the file order decides: a missing negative before a missing positive.
    scores = np.array([[0.3], [-np.inf], [-np.inf]])
    labels = np.array([[1.0], [0.0], [1.0]])
    assert charades_map(scores, labels).mean_ap == pytest.approx((1 + 2 / 3) / 2)


def test_video_without_actions_is_a_negative_whose_scores_are_ignored():
    # Video 0 has no action; its high score must not count: the official loader never matches it.
    scores = np.array([[0.99, 0.99], [0.5, 0.2], [0.4, 0.7]])
    labels = np.array([[0, 0], [1, 0], [0, 1]], dtype=float)
    result = charades_map(scores, labels)
    assert result.per_class_ap == pytest.approx([1.0, 1.0])
    # It stays in the ranking as an unscored negative: a missing positive listed after it loses.
    scores = np.array([[0.99], [0.5], [-np.inf]])
    labels = np.array([[0.0], [1.0], [1.0]])
    assert charades_map(scores, labels).mean_ap == pytest.approx((1 + 2 / 3) / 2)


def test_class_without_positives_official_nan_sklearn_dropped():
    scores = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.6]])
    labels = np.array([[1, 0, 0], [0, 1, 0]], dtype=float)
    official = charades_map(scores, labels)
    assert math.isnan(official.mean_ap) and math.isnan(official.per_class_ap[2])
    assert official.num_classes_evaluated == 2 and official.classes_without_positives == [2]
    assert official.map_over_evaluated == pytest.approx(1.0)
    variant = sklearn_map(scores, labels)
    assert variant.mean_ap == pytest.approx(1.0) and variant.num_classes_evaluated == 2
    assert math.isnan(variant.per_class_ap[2])


def test_sklearn_variant_accepts_missing_videos():
    scores = np.array([[0.1], [0.9], [-np.inf]])
    labels = np.array([[0.0], [1.0], [1.0]])
    assert sklearn_map(scores, labels).mean_ap == pytest.approx((1 + 2 / 3) / 2)


def test_accuracy_hand_computed():
    scores = np.array(
        [
            [0.1, 0.7, 0.2, 0.0, 0.0, 0.0],  # label 1: top-1 hit
            [0.6, 0.1, 0.3, 0.0, 0.0, 0.0],  # label 2: second, top-5 hit
            [0.5, 0.5, 0.0, 0.0, 0.0, 0.0],  # label 1: tie goes to class 0 -> miss at top-1
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # label 5: rank 5 of a constant row -> miss at top-5
            [-np.inf] * 6,  # label 0: not scored -> miss everywhere
        ]
    )
    labels = [1, 2, 1, 5, 0]
    result = accuracy_metrics(scores, labels)
    assert result.top1 == pytest.approx(1 / 5)
    assert result.top5 == pytest.approx(3 / 5)
    # Per class: class 0 -> 0/1, class 1 -> 1/2, class 2 -> 0/1, class 5 -> 0/1; classes 3, 4 have no video.
    assert result.num_classes_evaluated == 4
    assert result.mean_class_accuracy == pytest.approx((0 + 0.5 + 0 + 0) / 4)
    assert math.isnan(result.per_class_accuracy[3])


def test_accuracy_rejects_bad_labels():
    with pytest.raises(ValueError, match="outside"):
        accuracy_metrics(np.zeros((2, 3)), [0, 3])
