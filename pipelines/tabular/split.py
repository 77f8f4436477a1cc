"""A task's rows split into train, validation and test parts, and the scale learnt from training.

`split_rows` deals every row to exactly one part by a seeded permutation, so the same seed
gives the same parts and no row is lost (the seed's loader also lost rows: it dropped each
epoch's last partial batch). Part sizes are the fractions of the rows rounded half up, each
requested part at least one row; the training part takes the rest.

`Standardiser` learns the scale from the training part only: the seed min-max scaled the
target by the whole set's range (a leak of the validation and test targets into training)
and never scaled predictions back. Here features and target are standardised with the
training rows' mean and standard deviation, and `invert_target` brings a prediction back to
the target's own units. Its `state` is plain arrays, stored with the model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from pipelines.errors import ParamError
from pipelines.tabular.errors import TaskError


@dataclass(frozen=True)
class Split:
    """Row indices of each part, sorted; together they are every row once."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_rows(n: int, val_fraction: float, test_fraction: float, seed: int, *, task: str) -> Split:
    """Deal `n` rows of `task` to train, val and test (a fraction of 0 asks for no part)."""
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= fraction < 1:
            raise ParamError(f"{name} {fraction}: expected a fraction from 0 to below 1")
    if val_fraction + test_fraction >= 1:
        raise ParamError(
            f"val_fraction {val_fraction} + test_fraction {test_fraction}: expected below 1, "
            "so that rows are left to train on"
        )
    fractions = (val_fraction, test_fraction)
    n_val, n_test = _sizes(n, *fractions)
    if n - n_val - n_test < 1:
        needed = next(m for m in itertools.count(n + 1) if m - sum(_sizes(m, *fractions)) >= 1)
        parts = ", ".join(["train", *(["val"] * (n_val > 0)), *(["test"] * (n_test > 0))])
        raise TaskError(task, f"a split into {parts} needs at least {needed} rows; it has {n}")
    order = np.random.default_rng(seed).permutation(n)
    return Split(
        train=np.sort(order[n_val + n_test :]),
        val=np.sort(order[:n_val]),
        test=np.sort(order[n_val : n_val + n_test]),
    )


def _sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Validation and test sizes: rounded half up, at least one row for a requested part."""

    def size(fraction: float) -> int:
        return max(1, int(n * fraction + 0.5)) if fraction > 0 else 0

    return size(val_fraction), size(test_fraction)


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
