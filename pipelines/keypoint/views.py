"""What `fleet table` and `fleet status` show of the keypoint family (its card's TABLE and
STATUS), read from its pipeline's outputs in `folder` (keypoint/): only JSON, its params and
its data folder's listing, none of its networks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.errors import DataError
from pipelines.keypoint import card
from pipelines.keypoint.data import find_sites
from pipelines.keypoint.params import load_params
from pipelines.status import Sources
from pipelines.tables import (
    Column,
    FamilyTable,
    MissingOutputs,
    read_record,
    required,
    scope_sources,
    scope_table,
)

COLUMNS = (
    Column("site", "site"),
    Column("model", "model"),
    Column("parameters", "parameters", "{:,}"),
    Column("samples", "captchas"),
    Column("epochs", "epochs"),
    Column("hit_le_5px", "hit@5 %", "{:.1f}"),
    Column("hit_le_2px", "hit@2 %", "{:.1f}"),
    Column("hit_le_1px", "hit@1 %", "{:.1f}"),
    Column("mae_px", "MAE px", "{:.2f}"),
    Column("rmse_px", "RMSE px", "{:.2f}"),
)


def table(folder: Path, evaluation: Path | None = None) -> FamilyTable:
    """Per site: its network, captchas and epochs, and seed 002's figures on its held-out
    captchas (`evaluation`, else eval/ in `folder`); the figures over the sites under it."""
    evaluation = evaluation or folder / "eval"
    return scope_table(COLUMNS, folder, evaluation, "sites", _row, _summary)


def status(folder: Path) -> Sources:
    """The sites of data.root, the last evaluation's figures, deploy/models and reports/."""
    p = load_params(required(folder / "params.yaml"))
    try:
        sites, _ = find_sites(folder / p.data.root)
    except DataError:
        sites = {}  # no data yet: the registry and the deploy folder still speak
    return scope_sources(card, folder, sites, "sites")


def _row(model: Path, evaluated_site: Path) -> dict[str, Any]:
    """The site's figures on its held-out captchas, with what the train stage says of its
    network (none when the models folder has gone, as the evaluation stays)."""
    figures = read_record(evaluated_site / "summary.json")
    try:
        trained = read_record(model / "summary.json")
    except MissingOutputs:
        trained = {}
    return (
        {"site": evaluated_site.name}
        | figures
        | {
            "model": (trained.get("architecture") or {}).get("type"),
            "parameters": trained.get("parameters"),
            "samples": trained.get("samples"),
            "epochs": trained.get("epochs_run"),
        }
    )


def _summary(over: dict[str, Any]) -> str | None:
    """The figures over the sites (the evaluate stage's eval/metrics.json) in a line."""
    if over.get("hit_le_5px_min") is None:
        return None
    return (
        f"{over['sites']} sites, min hit@5 {over['hit_le_5px_min']:.1f} %, "
        f"mean MAE {over['mae_px_mean']:.2f} px, max MAE {over['mae_px_max']:.2f} px"
    )
