"""The scale a task's model learns from its training rows (its split: pipelines/split.py).

`Standardiser` learns the scale from the training part only: the seed min-max scaled the
target by the whole set's range (a leak of the validation and test targets into training)
and never scaled predictions back. Here features and target are standardised with the
training rows' mean and standard deviation, and `invert_target` brings a prediction back to
the target's own units. Its `state` is plain arrays, stored with the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Standardiser:
    """Per-feature and target mean and standard deviation of the training rows."""

    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float
    y_std: float

    @classmethod
    def fit(cls, X_train: np.ndarray, y_train: np.ndarray) -> Standardiser:
        """The scale of the training rows; a column constant there (or a constant target)
        gets a standard deviation of 1, so it maps to 0 instead of dividing by 0."""
        if len(X_train) == 0:
            raise ValueError("no training rows to learn a scale from")
        X_train = np.asarray(X_train, dtype=np.float64)
        y_train = np.asarray(y_train, dtype=np.float64)
        x_std = np.where(np.ptp(X_train, axis=0) > 0, X_train.std(axis=0), 1.0)
        y_std = float(y_train.std()) if np.ptp(y_train) > 0 else 1.0
        return cls(X_train.mean(axis=0), x_std, float(y_train.mean()), y_std)

    def apply(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.x_mean) / self.x_std

    def apply_target(self, y: np.ndarray) -> np.ndarray:
        return (np.asarray(y, dtype=np.float64) - self.y_mean) / self.y_std

    def invert_target(self, z: np.ndarray) -> np.ndarray:
        """Standardised predictions back in the target's units."""
        return np.asarray(z, dtype=np.float64) * self.y_std + self.y_mean

    def state(self) -> dict[str, np.ndarray]:
        """The scale as float64 arrays, to be stored with a model (as tensors or .npy)."""
        return {
            "x_mean": self.x_mean.copy(),
            "x_std": self.x_std.copy(),
            "y_mean": np.array(self.y_mean),
            "y_std": np.array(self.y_std),
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> Standardiser:
        """The scale `state` wrote; its values may be arrays or CPU tensors."""
        x_mean, x_std, y_mean, y_std = (
            np.asarray(state[key], dtype=np.float64)
            for key in ("x_mean", "x_std", "y_mean", "y_std")
        )
        return cls(x_mean, x_std, float(y_mean), float(y_std))
