"""From anomaly scores to a decision threshold and the metrics that judge it.

Thresholds are fitted on scores of normal training data only:
  sigma       mean + k * std (the seed's 3-sigma rule with k = 3)
  percentile  the p-th percentile of the scores
  gamma       the q-quantile of a gamma distribution fitted to the scores (DCASE 2021 baseline)
AUC and pAUC come from scikit-learn; pAUC (max FPR 0.1) is McClish-standardised as
scikit-learn does, so 0.5 means chance at any max FPR (DCASE reports it unstandardised).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score, roc_curve

from pipelines.params import EvaluateParams


def fit_threshold(normal_scores: np.ndarray, p: EvaluateParams) -> float:
    scores = np.asarray(normal_scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("no normal scores to fit a threshold on")
    if p.threshold == "sigma":
        return float(scores.mean() + p.sigma_k * scores.std())
    if p.threshold == "percentile":
        return float(np.percentile(scores, p.percentile))
    shape, loc, scale = stats.gamma.fit(scores)
    return float(stats.gamma.ppf(p.gamma_quantile, shape, loc=loc, scale=scale))


@dataclass(frozen=True)
class Detection:
    auc: float
    pauc: float
    precision: float
    recall: float
    f1: float
    threshold: float
    clips: int
    anomalies: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def detection_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float, max_fpr: float
) -> Detection:
    """Ranking (AUC, pAUC) and decision (precision, recall, F1 at `threshold`) quality."""
    labels = np.asarray(labels, dtype=int)
    if len(set(labels.tolist())) < 2:
        raise ValueError("need both normal and anomalous test clips to score a detector")
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, (scores > threshold).astype(int), average="binary", zero_division=0
    )
    return Detection(
        auc=float(roc_auc_score(labels, scores)),
        pauc=float(roc_auc_score(labels, scores, max_fpr=max_fpr)),
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        threshold=float(threshold),
        clips=len(labels),
        anomalies=int(labels.sum()),
    )


def roc_points(labels: np.ndarray, scores: np.ndarray) -> list[dict[str, float]]:
    fpr, tpr, _ = roc_curve(labels, scores)
    return [{"fpr": float(f), "tpr": float(t)} for f, t in zip(fpr, tpr, strict=True)]


def score_histogram(
    labels: np.ndarray, scores: np.ndarray, threshold: float, bins: int = 30
) -> list[dict[str, float]]:
    """Counts of normal and anomalous clips per score bin, the threshold's bin marked."""
    top = max(float(np.max(scores)), threshold) * 1.05
    edges = np.linspace(0.0, top, bins + 1)
    normal, _ = np.histogram(scores[labels == 0], edges)
    anomaly, _ = np.histogram(scores[labels == 1], edges)
    return [
        {
            "score": float((lo + hi) / 2),
            "normal": int(n),
            "anomaly": int(a),
            "threshold": int(lo <= threshold < hi),
        }
        for lo, hi, n, a in zip(edges[:-1], edges[1:], normal, anomaly, strict=True)
    ]


def mean_by_clip(window_scores: np.ndarray, clip_of_window: np.ndarray, clips: int) -> np.ndarray:
    """A clip's score is the mean of its windows' scores (as the DCASE baselines do)."""
    clip_of_window = np.asarray(clip_of_window, dtype=int)
    sums = np.bincount(clip_of_window, weights=window_scores, minlength=clips)
    return sums / np.maximum(np.bincount(clip_of_window, minlength=clips), 1)
