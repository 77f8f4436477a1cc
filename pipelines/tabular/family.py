"""The tabular family as the registry sees it: its artifact kinds, bundle layout and comparison.

A version is one task's regressor (`scope`: the task, e.g. Q1). Its model.pth is a trained
task's state (training.py): the model's tensors and the scale's, so that it predicts in the
target's units from the file alone. Its `inference` settings say what the model is
(`architecture`), what it reads (`features`, in order) and what it predicts (`target`).
eval_x.npy and eval_y.npy are its own validation rows, in the features' and target's units,
on which the gate compares it with the production holder.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from registry.errors import IncomparableError
from registry.families import Version

# torch comes with training and versions, imported by the functions that load a model: the
# registry reads this module's POLICY and ARTIFACTS for commands that load none.
if TYPE_CHECKING:
    from pipelines.tabular.training import TrainedTask

ARTIFACTS = {"model": "model.pth", "eval_x": "eval_x.npy", "eval_y": "eval_y.npy"}
CHECKPOINTS: tuple[str, ...] = ()  # ridge and gbr fit at once; an mlp's resume point stays local
# The gate while no policy was set: no worse on the test rows than predicting the mean (an
# RMSE ceiling is in the target's units, so it is each project's own: `registry set-policy
# --family tabular --ceiling rmse=...`).
POLICY = {"floors": {"r2": 0.0}}
INFERENCE = ("architecture", "features", "target")
LAYOUT = {"model.pth": "model"}  # the bundle: file -> artifact kind (bundle.py reads it back)

Predictor = Callable[[np.ndarray], np.ndarray]


def bundle(version: Version) -> tuple[dict[str, str], dict[str, Any]]:
    """The inference layout (bundle file -> artifact kind) and the manifest's settings. The
    model predicts one row first, from its safely loaded weights: nothing ships that would
    not load or not predict."""
    inference = _inference(version)
    features = list(inference["features"])
    try:
        out = predictor(version)(np.zeros((1, len(features))))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a missing tensor, a shape
        raise ValueError(
            f"{version.ref}: its weights do not make a model of its architecture "
            f"predicting from {len(features)} features ({exc!r})"
        ) from exc
    if out.shape != (1,) or not np.isfinite(out).all():
        raise ValueError(f"{version.ref}: predicts {out!r} for one row, not a finite number")
    settings = {
        "task": version.meta["scope"],
        "architecture": inference["architecture"],
        "features": features,
        "target": inference["target"],
    }
    return dict(LAYOUT), settings


def compare(candidate: Version, holder: Version) -> tuple[float, float]:
    """(candidate RMSE, holder RMSE) on the candidate's validation rows, each model through its
    own scale, in the target's units. Models that read other features, or predict another
    target, have errors on different rows or scales: IncomparableError (the gate compares
    metrics)."""
    reads = [_reads(v) for v in (candidate, holder)]
    for i, key in enumerate(("features", "target")):
        if reads[0][i] != reads[1][i]:
            raise IncomparableError(
                f"{candidate.ref} has {key} {reads[0][i]}, {holder.ref} has {key} {reads[1][i]}"
            )
    X, y = _array(candidate, "eval_x"), _array(candidate, "eval_y")
    if X.ndim != 2 or y.shape != (len(X),):
        raise ValueError(
            f"{candidate.ref}: eval_x {X.shape} and eval_y {y.shape} are not rows and targets"
        )
    c, h = (float(np.sqrt(np.mean((predictor(v)(X) - y) ** 2))) for v in (candidate, holder))
    return c, h


def predictor(version: Version) -> Predictor:
    """X (rows x the version's features, in their units) -> its predictions in the target's
    units, as training.predict_task makes them. The weights are read and loaded once, here."""
    from pipelines.tabular.training import predict_task

    return functools.partial(predict_task, trained(version))


def trained(version: Version) -> TrainedTask:
    """The version as a trained task (without its split, which is not stored: prediction
    never reads it)."""
    from pipelines import versions
    from pipelines.split import Split
    from pipelines.tabular.training import TrainedTask

    no_rows = Split(*(np.empty(0, dtype=np.int64) for _ in range(3)))
    return TrainedTask(
        _inference(version)["architecture"], versions.tensors(version), no_rows, None, 0
    )


def _inference(version: Version) -> dict[str, Any]:
    return version.inference(INFERENCE, "register it with them")


def _reads(version: Version) -> tuple[list[str], str]:
    """(features in order, target); a list, as stored in JSON, whatever the caller gave."""
    inference = _inference(version)
    return list(inference["features"]), inference["target"]


def _array(version: Version, kind: str) -> np.ndarray:
    return np.load(io.BytesIO(version.read(kind)), allow_pickle=False).astype(np.float64)
