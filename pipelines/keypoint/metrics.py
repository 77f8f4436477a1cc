"""Seed 002's figures of located keypoints, in pixels of the captcha.

A sample's gap error is the mean of |dx| and |dy| of its gap, its slider error the same of
its slider piece. mae_px is the mean of all gap and slider errors, rmse_px the root of the
mean of their squares; gap_mae and slider_mae each part's mean. hit_le_{1,2,5}px are the
percentages (0 to 100) of samples whose two errors average at most 1, 2, 5 pixels.
"""

from __future__ import annotations

import numpy as np

from pipelines.keypoint import card

METRICS = card.METRICS  # which way each is better, the headline first: declared in the card
HITS = (1, 2, 5)  # pixels


def keypoint_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """The figures of predicted coordinates (N, 4: gap x, y, slider x, y) against the true."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 2 or pred.shape[1] != 4 or not len(pred):
        raise ValueError(f"predicted {pred.shape} and true {true.shape}: expected (N, 4) both")
    errors = np.abs(pred - true).reshape(-1, 2, 2).mean(axis=2)  # (N, gap/slider)
    sample = errors.mean(axis=1)
    figures = {f"hit_le_{px}px": float(100 * np.mean(sample <= px)) for px in HITS}
    figures |= {
        "mae_px": float(errors.mean()),
        "rmse_px": float(np.sqrt(np.mean(errors**2))),
        "gap_mae": float(errors[:, 0].mean()),
        "slider_mae": float(errors[:, 1].mean()),
    }
    return {name: figures[name] for name in METRICS}
