"""What `fleet table` and `fleet status` show of the acoustic family (its card's TABLE and
STATUS), read from its pipeline's outputs in `folder` (the project's root): only JSON and
its params, none of its models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.acoustic import card, figures
from pipelines.params import load_params
from pipelines.status import Sources
from pipelines.tables import Column, FamilyTable, MissingOutputs, build, read_record, required
from registry.naming import is_device_code

COLUMNS = (
    Column("device", "device"),
    Column("windows", "windows"),
    Column("epochs", "epochs"),
    Column("val_loss", "val loss", "{:.5f}"),
    Column("threshold", "threshold", "{:.5f}"),
    Column("auc", "AUC", "{:.3f}"),
    Column("pauc", "pAUC", "{:.3f}"),
    Column("f1", "F1", "{:.3f}"),
)


def table(folder: Path, evaluation: Path | None = None) -> FamilyTable:
    """Per device: windows, epochs run, validation loss, threshold, AUC, pAUC, F1 of the
    evaluate stage's record (`evaluation`, else eval/ in `folder`); the fleet's AUC under it."""
    evaluation = evaluation or folder / "eval"
    fleet = read_record(evaluation / "metrics.json")
    devices = _devices(evaluation / "plots")
    summary = None
    if fleet.get("auc_mean") is not None:
        summary = (
            f"{fleet['devices']} devices, mean AUC {fleet['auc_mean']:.3f}, "
            f"min AUC {fleet['auc_min']:.3f}"
        )
    return build(COLUMNS, devices.values(), summary, {"fleet": fleet, "devices": devices})


def status(folder: Path) -> Sources:
    """The devices of data.root, the last evaluation's figures, deploy/models and reports/."""
    p = load_params(required(folder / "params.yaml"))
    try:
        evaluated = _devices(folder / "eval" / "plots")
    except MissingOutputs:
        evaluated = {}  # not evaluated yet: the registry and the deploy folder still speak
    return Sources(
        p.deploy.family,
        "device",
        _data_devices(folder / p.data.root),
        evaluated,
        folder / "deploy" / "models",
        folder / "reports",
        tuple(card.STAGES),
    )


def _devices(plots: Path) -> dict[str, dict[str, Any]]:
    """Device -> its figures, as the evaluate stage left them in plots/devices.json."""
    try:
        return figures.read_devices(plots)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MissingOutputs(f"{plots / figures.DEVICES}: cannot read it ({exc})") from exc


def _data_devices(root: Path) -> frozenset[str]:
    if not root.is_dir():
        return frozenset()
    return frozenset(p.name for p in root.iterdir() if p.is_dir() and is_device_code(p.name))
