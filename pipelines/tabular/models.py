"""The tabular family's model types (`train.model`), each stored as a dict of tensors.

mlp    the seed's network: Linear layers of `hidden` widths, each followed by an optional
       BatchNorm1d, ReLU and an optional Dropout, then one linear output. Trained by the
       project's shared engine; here only its definition and `build_mlp`.
ridge  scikit-learn's Ridge: coef and intercept.
gbr    scikit-learn's GradientBoostingRegressor (squared error): its initial prediction, its
       learning rate and each tree's node arrays, padded to the largest tree.

All three take standardised features and predict the standardised target (split.py scales
back). A fitted model is its `architecture`, a JSON mapping whose `type` names the model
type, and its `state`, tensors only, so that `torch.save` writes it and
`torch.load(weights_only=True)` reads it: no pickled estimator is ever stored or loaded, and
`predict` walks the stored trees in numpy, as scikit-learn's own predict does.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge
from torch import nn

MODEL_TYPES = ("mlp", "ridge", "gbr")
_LEAF = -1  # scikit-learn's child index of a leaf, also the padding of a smaller tree


class MLP(nn.Module):
    """The seed's regressor. Its output has the target's shape, (rows,): a (rows, 1) output
    against (rows,) targets would broadcast MSELoss to a rows x rows matrix."""

    def __init__(
        self, in_features: int, hidden: tuple[int, ...], dropout: float, batch_norm: bool
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in pairwise((in_features, *hidden)):
            layers.append(nn.Linear(c_in, c_out))
            layers += [nn.BatchNorm1d(c_out)] if batch_norm else []
            layers.append(nn.ReLU())
            layers += [nn.Dropout(dropout)] if dropout > 0 else []
        layers.append(nn.Linear(hidden[-1] if hidden else in_features, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def mlp_architecture(
    in_features: int, hidden: tuple[int, ...], dropout: float, batch_norm: bool
) -> dict[str, Any]:
    return {
        "type": "mlp",
        "in_features": in_features,
        "hidden": list(hidden),
        "dropout": dropout,
        "batch_norm": batch_norm,
    }


def build_mlp(architecture: dict[str, Any]) -> MLP:
    """The network a recorded mlp architecture describes, with fresh weights."""
    a = architecture
    return MLP(a["in_features"], tuple(a["hidden"]), a["dropout"], a["batch_norm"])


@dataclass(frozen=True)
class Fitted:
    """A model as it is stored: what it is, and its tensors."""

    architecture: dict[str, Any]
    state: dict[str, torch.Tensor]


def fit_ridge(X: np.ndarray, y: np.ndarray, alpha: float) -> Fitted:
    """Ridge in closed form (scikit-learn's solver for dense rows): no seed to set."""
    ridge = Ridge(alpha=alpha).fit(X, y)
    state = {
        "coef": _tensor(ridge.coef_, torch.float64),
        "intercept": _tensor(np.atleast_1d(ridge.intercept_), torch.float64),
    }
    return Fitted({"type": "ridge", "in_features": X.shape[1], "alpha": alpha}, state)


def fit_gbr(
    X: np.ndarray,
    y: np.ndarray,
    *,
    n_estimators: int,
    learning_rate: float,
    max_depth: int,
    subsample: float,
    seed: int,
) -> Fitted:
    gbr = GradientBoostingRegressor(
        n_estimators=n_estimators,
        learning_rate=learning_rate,
        max_depth=max_depth,
        subsample=subsample,
        random_state=seed,
    ).fit(X, y)
    trees = [gbr.estimators_[i, 0].tree_ for i in range(gbr.n_estimators_)]
    state = {
        "init": _tensor(gbr.init_.predict(X[:1]), torch.float64),  # the training mean
        "learning_rate": torch.tensor([learning_rate], dtype=torch.float64),
        "feature": _stacked([t.feature for t in trees], torch.int64),
        "threshold": _stacked([t.threshold for t in trees], torch.float64),
        "children_left": _stacked([t.children_left for t in trees], torch.int64),
        "children_right": _stacked([t.children_right for t in trees], torch.int64),
        "value": _stacked([t.value[:, 0, 0] for t in trees], torch.float64),
    }
    architecture = {
        "type": "gbr",
        "in_features": X.shape[1],
        "n_estimators": gbr.n_estimators_,
        "learning_rate": learning_rate,
        "max_depth": max_depth,
        "subsample": subsample,
    }
    return Fitted(architecture, state)


def predict(
    architecture: dict[str, Any], state: dict[str, torch.Tensor], X: np.ndarray
) -> np.ndarray:
    """The standardised target a stored model predicts for standardised rows X."""
    kind = architecture["type"]
    if kind not in MODEL_TYPES:
        raise ValueError(f"model type {kind!r}: expected one of {', '.join(MODEL_TYPES)}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != architecture["in_features"]:
        raise ValueError(
            f"rows of shape {X.shape}: the {kind} model takes {architecture['in_features']} "
            "features a row"
        )
    if kind == "ridge":
        return X @ state["coef"].numpy() + state["intercept"].numpy()[0]
    if kind == "gbr":
        return _predict_trees(state, X)
    net = build_mlp(architecture)
    net.load_state_dict(state)
    with torch.no_grad():
        return net.eval()(torch.from_numpy(X).float()).double().numpy()


def _predict_trees(state: dict[str, torch.Tensor], X: np.ndarray) -> np.ndarray:
    """Every row down every tree at once, as scikit-learn's predict: a row goes left when its
    feature is at most the node's threshold, compared in float32 as scikit-learn does."""
    feature, threshold = state["feature"].numpy(), state["threshold"].numpy()
    left, right = state["children_left"].numpy(), state["children_right"].numpy()
    value, rate = state["value"].numpy(), float(state["learning_rate"][0])
    X32 = X.astype(np.float32).astype(np.float64)
    rows = np.arange(len(X))
    out = np.full(len(X), float(state["init"][0]))
    for t in range(len(feature)):
        node = np.zeros(len(X), dtype=np.int64)
        while (inner := left[t, node] != _LEAF).any():
            # a leaf's feature is -2: any column serves, as a leaf does not move
            goes_left = X32[rows, feature[t, node].clip(0)] <= threshold[t, node]
            step = np.where(goes_left, left[t, node], right[t, node])
            node = np.where(inner, step, node)
        out += rate * value[t, node]  # tree by tree, in scikit-learn's order of sums
    return out


def _stacked(arrays: list[np.ndarray], dtype: torch.dtype) -> torch.Tensor:
    """Arrays of different lengths as rows of one tensor, padded with _LEAF."""
    rows = np.full((len(arrays), max(len(a) for a in arrays)), _LEAF, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        rows[i, : len(a)] = a
    return torch.from_numpy(rows).to(dtype)


def _tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.array(array)).to(dtype)  # a copy: not a view of the estimator
