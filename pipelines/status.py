"""One view of what runs where: per device, the registry, the deploy folder, the last run.

For each device of the fleet (a folder under `data.root`, or a model of the family in the
registry): its production version and since when, the version its exported bundle holds,
the latest candidate and the gate's verdict on it now, the last evaluation's AUC, what failed
in the last run, and a flag for every disagreement between them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from registry import events, export
from registry.api import Registry
from registry.naming import is_device_code

STAGES = ("extract", "train", "evaluate", "deploy")


@dataclass
class DeviceStatus:
    device: str
    production: str | None = None  # TYPE:vN (the model type, e.g. convae, and the version)
    since: str | None = None
    bundle: str | None = None  # TYPE:vN, "damaged" or None
    candidate: str | None = None  # TYPE:vN of the latest registered, when not in production
    gate: str | None = None  # the gate's verdict on promoting the candidate now
    auc: float | None = None
    last_run: str | None = None  # what failed or skipped the device in the last run
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Sources:
    registry: Registry
    family: str
    data_root: Path
    deploy: Path
    devices: Path  # the evaluate stage's per-device figures (eval/plots/devices.json)
    reports: Path


def fleet_status(src: Sources) -> list[DeviceStatus]:
    versions: dict[str, list[dict[str, Any]]] = {}
    for meta in src.registry.list():
        if meta["family"] == src.family:
            versions.setdefault(meta["scope"], []).append(meta)
    in_data = _data_devices(src.data_root)
    metrics = _per_device(src.devices)
    failures = _failures(src.reports)
    since = _production_since(src.registry.history())
    found = []
    for device in sorted(set(versions) | in_data):
        status = _device(src, device, versions.get(device, []), device in in_data, since)
        status.auc = (metrics.get(device) or {}).get("auc")
        outcome, status.last_run = failures.get(device, (None, None))
        if outcome == "failed":
            status.flags.append("failed in the last run")
        found.append(status)
    return found


def _device(
    src: Sources,
    device: str,
    metas: list[dict[str, Any]],
    in_data: bool,
    since: dict[tuple[str, int], str],
) -> DeviceStatus:
    status = DeviceStatus(device)
    holder = next((m for m in metas if "production" in m["aliases"]), None)
    if holder is not None:
        status.production = _short(f"{holder['name']}:v{holder['version']}")
        status.since = since.get((holder["name"], holder["version"]))
    latest = max(metas, key=lambda m: m["created"]) if metas else None
    if latest is not None and latest is not holder:
        status.candidate = _short(f"{latest['name']}:v{latest['version']}")
        result = src.registry.check(latest["name"], latest["version"])
        status.gate = "would pass" if result.passed else "refuses: " + "; ".join(result.texts())
    status.bundle = _bundle(src.deploy, device)
    if holder is None:
        status.flags.append("no production version")
    if status.bundle != status.production:
        status.flags.append("bundle differs from production")
    if metas and not in_data:
        status.flags.append("not in data.root")
    return status


def _bundle(deploy: Path, device: str) -> str | None:
    folder = export.current(deploy, device)
    if folder is None:
        return None
    try:
        model = json.loads((folder / export.MANIFEST).read_text())["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return "damaged"
    return _short(model) if export.is_intact(folder, model) else "damaged"


def _short(ref: str) -> str:
    """NAME:vN as TYPE:vN: the row names the device, the family is the fleet's."""
    return ref.rsplit("_", 1)[-1]


def _production_since(records: list[dict[str, Any]]) -> dict[tuple[str, int], str]:
    """(name, version) -> when it last took production."""
    found = {}
    for record in records:
        if record["type"] in (events.PROMOTED, events.ROLLED_BACK) and (
            record.get("alias") == "production"
        ):
            found[(record["name"], record["to_version"])] = record["time"]
    return found


def _data_devices(root: Path) -> set[str]:
    if not root.is_dir():
        return set()
    return {p.name for p in root.iterdir() if p.is_dir() and is_device_code(p.name)}


def _failures(reports: Path) -> dict[str, tuple[str, str]]:
    """Device -> (status, what) of the first stage of the last run that failed or skipped it."""
    found: dict[str, tuple[str, str]] = {}
    for stage in STAGES:
        for device, entry in _read(reports / f"{stage}.json").get("devices", {}).items():
            status = entry.get("status")
            if status in ("failed", "skipped") and device not in found:
                found[device] = (status, f"{stage} {status}: {entry.get('error', '')}")
    return found


def _per_device(path: Path) -> dict[str, dict[str, Any]]:
    try:
        rows = json.loads(path.read_text())
        return {row["device"]: row for row in rows}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
