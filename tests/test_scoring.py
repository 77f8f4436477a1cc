"""pipelines.scoring: thresholds fitted on normal scores, and the metrics that judge them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from pipelines.params import EvaluateParams
from pipelines.scoring import (
    Detection,
    detection_metrics,
    fit_threshold,
    mean_by_clip,
    roc_points,
    score_histogram,
)


def test_sigma_threshold_is_mean_plus_k_std() -> None:
    scores = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    mean, std = 4.0, float(np.sqrt((9 + 4 + 1 + 0 + 36) / 5))  # population std
    assert fit_threshold(scores, EvaluateParams(threshold="sigma", sigma_k=3.0)) == pytest.approx(
        mean + 3.0 * std, rel=1e-12
    )
    assert fit_threshold(scores, EvaluateParams(sigma_k=1.5)) == pytest.approx(mean + 1.5 * std)


def test_sigma_threshold_of_one_score_is_that_score() -> None:
    assert fit_threshold(np.array([0.25]), EvaluateParams()) == 0.25


def test_percentile_threshold() -> None:
    scores = np.arange(101, dtype=float)  # percentile p is p itself
    p = EvaluateParams(threshold="percentile", percentile=90.0)
    assert fit_threshold(scores, p) == pytest.approx(90.0)
    assert fit_threshold([3, 1, 2], EvaluateParams(threshold="percentile", percentile=50.0)) == 2.0


def test_gamma_threshold_is_near_the_true_quantile() -> None:
    shape, scale = 2.0, 0.01
    scores = stats.gamma.rvs(shape, scale=scale, size=4000, random_state=np.random.default_rng(0))
    p = EvaluateParams(threshold="gamma", gamma_quantile=0.9)
    true_quantile = stats.gamma.ppf(0.9, shape, scale=scale)
    assert fit_threshold(scores, p) == pytest.approx(true_quantile, rel=0.05)
    higher = fit_threshold(scores, EvaluateParams(threshold="gamma", gamma_quantile=0.99))
    assert higher == pytest.approx(stats.gamma.ppf(0.99, shape, scale=scale), rel=0.08)
    assert higher > true_quantile


@pytest.mark.parametrize("kind", ["sigma", "percentile", "gamma"])
def test_no_scores_is_a_value_error(kind: str) -> None:
    with pytest.raises(ValueError, match="no normal scores"):
        fit_threshold(np.array([]), EvaluateParams(threshold=kind))  # type: ignore[arg-type]


def test_perfect_separation() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    d = detection_metrics(labels, scores, threshold=0.5, max_fpr=0.1)
    assert d.auc == 1.0
    assert d.pauc == 1.0
    assert (d.precision, d.recall, d.f1) == (1.0, 1.0, 1.0)
    assert (d.clips, d.anomalies, d.threshold) == (5, 2, 0.5)


def test_reversed_scores() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.8, 0.9, 0.7, 0.1, 0.2])
    d = detection_metrics(labels, scores, threshold=0.5, max_fpr=0.1)
    assert d.auc == 0.0
    assert d.recall == 0.0
    assert d.precision == 0.0  # all three flagged clips are normal
    assert d.f1 == 0.0


@pytest.mark.parametrize("max_fpr", [0.05, 0.1, 0.3, 1.0])
def test_pauc_is_sklearns_standardised_partial_auc(max_fpr: float) -> None:
    rng = np.random.default_rng(5)
    labels = np.array([0] * 60 + [1] * 40)
    scores = rng.normal(size=100) + labels * 1.0
    d = detection_metrics(labels, scores, threshold=0.0, max_fpr=max_fpr)
    assert d.pauc == pytest.approx(roc_auc_score(labels, scores, max_fpr=max_fpr), abs=1e-12)
    assert d.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert 0.5 < d.pauc <= 1.0


def test_precision_recall_f1_by_hand() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.5, 0.4, 0.7, 0.9])
    # Flagged (> 0.5): 0.6 (normal), 0.7, 0.9 (anomalies); 0.5 itself is not above.
    d = detection_metrics(labels, scores, threshold=0.5, max_fpr=0.1)
    tp, fp, fn = 2, 1, 1
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert d.precision == pytest.approx(precision)
    assert d.recall == pytest.approx(recall)
    assert d.f1 == pytest.approx(2 * precision * recall / (precision + recall))
    # Pairs ranked right: each anomaly against the 4 normals.
    assert d.auc == pytest.approx((2 + 4 + 4) / 12)


def test_nothing_flagged_gives_zero_not_an_error() -> None:
    d = detection_metrics(np.array([0, 1]), np.array([0.1, 0.2]), threshold=5.0, max_fpr=0.1)
    assert (d.precision, d.recall, d.f1) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1], []])
def test_one_class_is_a_value_error(labels: list[int]) -> None:
    scores = np.linspace(0.0, 1.0, len(labels))
    with pytest.raises(ValueError, match="need both normal and anomalous"):
        detection_metrics(np.array(labels), scores, threshold=0.5, max_fpr=0.1)


def test_detection_as_dict() -> None:
    d = detection_metrics(np.array([0, 1]), np.array([0.1, 0.9]), threshold=0.5, max_fpr=0.1)
    assert d.as_dict() == {
        "auc": 1.0,
        "pauc": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "threshold": 0.5,
        "clips": 2,
        "anomalies": 1,
    }
    assert isinstance(d, Detection)


def test_roc_points_run_from_origin_to_one_one() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 50)
    labels[:2] = [0, 1]
    points = roc_points(labels, rng.normal(size=50) + labels)
    assert points[0] == {"fpr": 0.0, "tpr": 0.0}
    assert points[-1] == {"fpr": 1.0, "tpr": 1.0}
    fpr = [pt["fpr"] for pt in points]
    tpr = [pt["tpr"] for pt in points]
    assert fpr == sorted(fpr)
    assert tpr == sorted(tpr)
    assert all(type(v) is float for pt in points for v in pt.values())


@pytest.mark.parametrize("threshold", [0.0, 0.37, 0.95, 3.0])
def test_score_histogram(threshold: float) -> None:
    rng = np.random.default_rng(3)
    labels = np.array([0] * 30 + [1] * 12)
    scores = np.abs(rng.normal(size=42)) * 0.3 + labels * 0.5
    bins = score_histogram(labels, scores, threshold, bins=20)
    assert len(bins) == 20
    assert sum(b["normal"] for b in bins) == 30
    assert sum(b["anomaly"] for b in bins) == 12
    marked = [b for b in bins if b["threshold"] == 1]
    assert len(marked) == 1
    width = bins[1]["score"] - bins[0]["score"]
    assert abs(marked[0]["score"] - threshold) <= width / 2 + 1e-12
    assert sum(b["threshold"] for b in bins) == 1
    assert bins[0]["score"] == pytest.approx(width / 2)  # the first bin starts at 0


def test_mean_by_clip() -> None:
    window_scores = np.array([1.0, 3.0, 10.0, 2.0, 4.0, 6.0])
    clip_of_window = np.array([0, 0, 1, 3, 3, 3])
    means = mean_by_clip(window_scores, clip_of_window, clips=5)
    np.testing.assert_allclose(means, [2.0, 10.0, 0.0, 4.0, 0.0])
    assert means.shape == (5,)
