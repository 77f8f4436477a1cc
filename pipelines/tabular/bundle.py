"""A task's exported bundle, and new rows predicted with it (`fleet score`).

A bundle is what `registry export` writes for a tabular version (family.bundle):
  {task}/model.pth     the trained state: the model's tensors and the scale's
  {task}/bundle.json   the model (NAME:vN), its architecture, the features it reads in
                       order, its target, and the sha256 of each file
Every file is checked against its sha256 before it is read, and the weights are loaded
with `weights_only=True` (pipelines/versions.py): the predictor is the one the gate compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines import versions
from pipelines.families import Scored
from pipelines.tabular import card, data, family
from pipelines.tabular.errors import TaskError

HEADER = ("file", "row", "prediction", "actual", "error")


def load(folder: Path) -> tuple[dict[str, Any], family.Predictor]:
    """The bundle's manifest and its model's predictor; IntegrityError naming what is wrong."""
    manifest, version = versions.shipped(
        folder, card.FAMILY, card.SCOPE, family.INFERENCE, family.LAYOUT
    )
    return manifest, family.predictor(version)


def score(bundle: Path, inputs: Sequence[Path], store: Path | None = None) -> Scored:
    """Each row of each input file (a CSV with the model's feature columns, or an .npz of X,
    optionally with the target) -> its prediction in the target's units, beside the actual
    value where the file has it. A file that cannot be read is that file's failure, in one
    line; the others are scored. `store` is not read: a row names no scope."""
    manifest, predict = load(bundle)
    records: list[dict[str, Any]] = []
    for path in inputs:
        try:
            rows = data.read_rows(path, manifest["target"], manifest["features"])
        except TaskError as exc:
            records.append(dict.fromkeys(HEADER) | {"file": str(path), "error": exc.reason})
            continue
        predicted = predict(rows.X).tolist()
        actual = [None] * len(predicted) if rows.y is None else rows.y.tolist()
        records += [
            {"file": str(path), "row": i, "prediction": p, "actual": a, "error": None}
            for i, (p, a) in enumerate(zip(predicted, actual, strict=True), start=1)
        ]
    table = [[_cell(r[key]) for key in HEADER] for r in records]
    title = f"task {manifest['task']}: {manifest['model']} ({manifest['target']})"
    failed = any(r["error"] for r in records)
    return Scored(title, HEADER, table, records, [], failed)


def _cell(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value
