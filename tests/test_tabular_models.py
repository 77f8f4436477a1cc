"""pipelines.tabular.models: each model type stored as tensors only, read back with
weights_only=True, predicting what it predicted before; the stored trees predict what
scikit-learn's own predict does."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge

from pipelines.tabular.models import (
    MODEL_TYPES,
    Fitted,
    build_mlp,
    fit_gbr,
    fit_ridge,
    mlp_architecture,
    predict,
)

GBR = {"n_estimators": 40, "learning_rate": 0.1, "max_depth": 3, "subsample": 1.0, "seed": 0}


def _rows(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    return X, np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.standard_normal(n)


def _saved_and_loaded(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _mlp(batch_norm: bool) -> Fitted:
    architecture = json.loads(json.dumps(mlp_architecture(4, (16, 8), 0.25, batch_norm)))
    torch.manual_seed(0)
    net = build_mlp(architecture)
    if batch_norm:  # running statistics other than the initial ones, so they must be stored
        net.train()(torch.randn(32, 4) * 3 + 1)
    return Fitted(architecture, net.state_dict())


def _fitted(kind: str, X: np.ndarray, y: np.ndarray) -> Fitted:
    if kind == "mlp":
        return _mlp(batch_norm=True)
    return fit_ridge(X, y, alpha=1.0) if kind == "ridge" else fit_gbr(X, y, **GBR)


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_a_stored_model_predicts_as_before(kind: str) -> None:
    X, y = _rows()
    fitted = _fitted(kind, X, y)
    assert fitted.architecture["type"] == kind
    json.dumps(fitted.architecture)  # recorded as JSON metadata
    assert all(isinstance(v, torch.Tensor) for v in fitted.state.values())
    loaded = _saved_and_loaded(fitted.state)
    before = predict(fitted.architecture, fitted.state, X)
    assert before.shape == (len(X),) and before.dtype == np.float64
    np.testing.assert_array_equal(predict(fitted.architecture, loaded, X), before)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_the_mlp_builds_from_its_architecture_and_gives_one_output_a_row(batch_norm: bool) -> None:
    fitted = _mlp(batch_norm)
    net = build_mlp(fitted.architecture)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in net.modules()) == batch_norm
    assert any(isinstance(m, torch.nn.Dropout) for m in net.modules())
    assert net(torch.randn(7, 4)).shape == (7,)
    plain = build_mlp(mlp_architecture(3, (), 0.0, False))
    assert plain(torch.randn(5, 3)).shape == (5,)
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.modules())


def test_ridge_predicts_as_scikit_learn() -> None:
    X, y = _rows()
    fitted = fit_ridge(X, y, alpha=2.0)
    ours = predict(fitted.architecture, _saved_and_loaded(fitted.state), X[:50] * 3)
    np.testing.assert_allclose(ours, Ridge(alpha=2.0).fit(X, y).predict(X[:50] * 3), atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_stored_trees_predict_as_scikit_learn(seed: int) -> None:
    X, y = _rows(seed=seed)
    settings = {k: v for k, v in GBR.items() if k != "seed"} | {"max_depth": 4 + seed}
    fitted = fit_gbr(X, y, **settings, seed=seed)
    reference = GradientBoostingRegressor(**settings, random_state=seed).fit(X, y)
    trees = [reference.estimators_[i, 0].tree_ for i in range(reference.n_estimators_)]
    assert len({t.node_count for t in trees}) > 1  # trees of several sizes: padding is tested
    # New rows, rows far outside the training range, and rows exactly on a split threshold
    # (the float32 comparison decides their side, as in scikit-learn).
    rng = np.random.default_rng(seed + 10)
    on_threshold = np.tile(X[:1], (len(trees), 1))
    for i, t in enumerate(trees):
        on_threshold[i, t.feature[0]] = t.threshold[0]
    rows = np.vstack(
        [rng.standard_normal((200, 4)), 50 * rng.standard_normal((20, 4)), on_threshold]
    )
    ours = predict(fitted.architecture, _saved_and_loaded(fitted.state), rows)
    np.testing.assert_allclose(ours, reference.predict(rows), rtol=0, atol=1e-9)


def test_rows_of_the_wrong_width_or_an_unknown_type_are_refused() -> None:
    X, y = _rows()
    fitted = fit_ridge(X, y, alpha=1.0)
    with pytest.raises(ValueError, match=r"rows of shape \(3, 5\): the ridge model takes 4"):
        predict(fitted.architecture, fitted.state, np.ones((3, 5)))
    with pytest.raises(ValueError, match="model type 'lasso': expected one of mlp, ridge, gbr"):
        predict({"type": "lasso"}, fitted.state, X)
