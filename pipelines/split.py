"""Rows (a task's, a site's samples) split into train, validation and test parts.

`split_rows` deals every row to exactly one part by a seeded permutation, so the same seed
gives the same parts and no row is lost (seed 003's loader also lost rows: it dropped each
epoch's last partial batch). Part sizes are the fractions of the rows rounded half up, each
requested part at least one row; the training part takes the rest.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from pipelines.errors import DataError, ParamError


@dataclass(frozen=True)
class Split:
    """Row indices of each part, sorted; together they are every row once."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_rows(
    n: int, val_fraction: float, test_fraction: float, seed: int, *, scope: str
) -> Split:
    """Deal `n` rows to train, val and test (a fraction of 0 asks for no part); `scope`
    names whose rows they are in a message ("task Q1")."""
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
        raise DataError(f"{scope}: a split into {parts} needs at least {needed} rows; it has {n}")
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
