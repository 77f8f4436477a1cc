"""pipelines.tabular.split: every row in exactly one part, seeded; the scale learnt from the
training rows only, and the target's scale inverted back to its units."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from pipelines.errors import DataError, ParamError
from pipelines.split import split_rows
from pipelines.tabular.split import Standardiser


@pytest.mark.parametrize(
    ("n", "val", "test", "sizes"),
    [
        (10, 0.2, 0.2, (6, 2, 2)),
        (101, 0.2, 0.1, (71, 20, 10)),
        (5, 0.1, 0.3, (2, 1, 2)),  # 0.5 and 1.5 round half up
        (3, 0.2, 0.2, (1, 1, 1)),  # each requested part gets a row
        (7, 0.25, 0.0, (5, 2, 0)),  # a fraction of 0 asks for no part
    ],
)
def test_every_row_is_in_exactly_one_part(
    n: int, val: float, test: float, sizes: tuple[int, int, int]
) -> None:
    split = split_rows(n, val, test, seed=0, scope="task Q1")
    assert (len(split.train), len(split.val), len(split.test)) == sizes
    rows = np.concatenate([split.train, split.val, split.test])
    np.testing.assert_array_equal(np.sort(rows), np.arange(n))


def test_the_split_is_seeded() -> None:
    first = split_rows(50, 0.2, 0.2, seed=7, scope="task Q1")
    again = split_rows(50, 0.2, 0.2, seed=7, scope="task Q1")
    other = split_rows(50, 0.2, 0.2, seed=8, scope="task Q1")
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(first, part), getattr(again, part))
    assert not np.array_equal(first.test, other.test)
    assert not np.array_equal(first.test, np.arange(40, 50))  # shuffled, not the last rows


@pytest.mark.parametrize(
    ("n", "val", "test", "message"),
    [
        (2, 0.2, 0.2, "task Q3: a split into train, val, test needs at least 3 rows; it has 2"),
        (1, 0.2, 0.0, "task Q3: a split into train, val needs at least 2 rows; it has 1"),
        (0, 0.0, 0.0, "task Q3: a split into train needs at least 1 rows; it has 0"),
    ],
)
def test_too_few_rows_names_the_task_and_what_it_needs(
    n: int, val: float, test: float, message: str
) -> None:
    with pytest.raises(DataError) as caught:
        split_rows(n, val, test, seed=0, scope="task Q3")
    assert str(caught.value) == message
    split = split_rows(int(message.split()[-5]), val, test, seed=0, scope="task Q3")  # enough
    assert len(split.train) >= 1


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.2), (0.2, 1.0), (0.5, 0.5)])
def test_fractions_out_of_range_are_refused(val: float, test: float) -> None:
    with pytest.raises(ParamError, match="fraction"):
        split_rows(10, val, test, seed=0, scope="task Q1")


def _rows() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal([100.0, -3.0, 0.5], [20.0, 1.0, 0.01], size=(40, 3))
    return X, 3.0 * X[:, 0] + rng.normal(size=40)


def test_the_scale_is_the_training_rows_only() -> None:
    X, y = _rows()
    train = np.arange(30)
    scale = Standardiser.fit(X[train], y[train])
    np.testing.assert_allclose(scale.apply(X[train]).mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(scale.apply(X[train]).std(axis=0), 1.0)
    np.testing.assert_allclose(scale.apply_target(y[train]).mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(scale.apply_target(y[train]).std(), 1.0)
    X_other, y_other = X.copy(), y.copy()
    X_other[30:] *= 1000.0  # the held-out rows change: the scale does not
    y_other[30:] = -1e6
    other = Standardiser.fit(X_other[train], y_other[train])
    np.testing.assert_array_equal(other.state()["x_std"], scale.state()["x_std"])
    assert (other.y_mean, other.y_std) == (scale.y_mean, scale.y_std)


def test_predictions_come_back_in_the_targets_units() -> None:
    X, y = _rows()
    scale = Standardiser.fit(X, y)
    np.testing.assert_allclose(scale.invert_target(scale.apply_target(y)), y, rtol=1e-12)
    assert scale.invert_target(np.zeros(1))[0] == pytest.approx(y.mean())


def test_a_constant_column_or_target_maps_to_zero() -> None:
    X = np.array([[1.0, 0.1], [2.0, 0.1], [3.0, 0.1]])
    scale = Standardiser.fit(X, np.full(3, 7.0))
    assert scale.x_std[1] == scale.y_std == 1.0
    np.testing.assert_allclose(scale.apply(X)[:, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(scale.apply_target(np.full(3, 7.0)), 0.0, atol=1e-12)
    np.testing.assert_allclose(scale.invert_target(np.zeros(2)), 7.0)


def test_the_scale_is_stored_as_tensors_and_read_back() -> None:
    X, y = _rows()
    scale = Standardiser.fit(X, y)
    buffer = io.BytesIO()
    torch.save({key: torch.from_numpy(value) for key, value in scale.state().items()}, buffer)
    buffer.seek(0)
    again = Standardiser.from_state(torch.load(buffer, weights_only=True))
    np.testing.assert_array_equal(again.apply(X), scale.apply(X))
    np.testing.assert_array_equal(again.invert_target(y), scale.invert_target(y))
