"""What `fleet table` and `fleet status` show of the acoustic family (its card's TABLE and
STATUS), read from its pipeline's outputs in `folder` (the project's root): only JSON and
its params, none of its models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.acoustic import card, data, figures
from pipelines.params import load_params
from pipelines.status import Sources
from pipelines.tables import Column, FamilyTable, MissingOutputs, build, read_record, required

COLUMNS = (
    Column("device", "device"),
    Column("windows", "windows"),
    Column("epochs", "epochs"),
    Column("val_loss", "val loss", "{:.5f}"),
    Column("threshold", "threshold", "{:.5f}"),
    Column("auc", "AUC", "{:.3f}"),
    Column("pauc", "pAUC", "{:.3f}"),
    Column("f1", "F1", "{:.3f}"),
    Column("tested", "test clips"),  # normal + anomalous
)
# Fewer labelled test clips of a kind than this, and a device's AUC and F1 say little: 4
# normal clips make each one a quarter of the AUC.
FEW_TEST_CLIPS = 10


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
    rows = [row | _tested(row) for row in devices.values()]
    lines = [summary] if summary else []
    lines += [line for device, row in devices.items() if (line := _thin(device, row))]
    record = {"fleet": fleet, "devices": devices}
    return build(COLUMNS, rows, "\n".join(lines) or None, record)


def _counts(row: dict[str, Any]) -> tuple[int, int] | None:
    """A device's normal and anomalous test clips, where its evaluation counted them."""
    if row.get("test_clips") is None or row.get("anomalies") is None:
        return None
    return row["test_clips"] - row["anomalies"], row["anomalies"]


def _tested(row: dict[str, Any]) -> dict[str, str]:
    """The test clips a device's figures stand on, `normal+anomalous`, '!' where few."""
    counts = _counts(row)
    if counts is None:
        return {}
    return {"tested": "{}+{}".format(*counts) + (" !" if min(counts) < FEW_TEST_CLIPS else "")}


def _thin(device: str, row: dict[str, Any]) -> str | None:
    """A line for a device whose figures stand on too little to mean much, else None."""
    counts = _counts(row)
    if counts is None or min(counts) >= FEW_TEST_CLIPS:
        return None
    line = (
        f"! {device}: {counts[0]} normal and {counts[1]} anomalous test clips "
        f"(under {FEW_TEST_CLIPS} of a kind): its AUC and F1 say little"
    )
    return line + ("; no validation windows" if row.get("val_loss") is None else "")


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
        data.device_folders(folder / p.data.root),
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
