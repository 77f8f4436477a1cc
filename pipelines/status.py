"""One view of what runs where, for one family: per scope, the registry, the deploy folder,
the data and the last run.

For each scope of the family (one in its data, or one it has versions of in the registry):
its production version and since when, the version its exported bundle holds, the latest
candidate and the gate's verdict on it now, the family's headline metric in the last
evaluation (the first of its card's METRICS), what failed in the last run, and a flag for
every disagreement between them. What is read where is the family's: its card's `STATUS`
function makes the `Sources` from its pipeline folder (pipelines/families.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from registry import events, export
from registry.api import Registry


@dataclass
class ScopeStatus:
    scope: str
    production: str | None = None  # TYPE:vN (the model type, e.g. convae, and the version)
    since: str | None = None
    bundle: str | None = None  # TYPE:vN, "damaged" or None
    candidate: str | None = None  # TYPE:vN of the latest registered, when not in production
    gate: str | None = None  # the gate's verdict on promoting the candidate now
    figure: float | None = None  # the headline metric in the last evaluation
    last_run: str | None = None  # what failed or skipped the scope in the last run
    flags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sources:
    family: str  # the name its versions are registered under
    noun: str  # what the family calls a scope (device, task): its rows' first key
    scopes: frozenset[str]  # the scopes its data holds now
    figures: Mapping[str, Mapping[str, Any]]  # scope -> its figures in the last evaluation
    deploy: Path  # where its production bundles are exported
    reports: Path  # its stages' reports, {stage}.json
    stages: tuple[str, ...]  # in the order they run: the first failure is the one shown


@dataclass(frozen=True)
class FamilyStatus:
    noun: str
    headline: str  # the metric each row shows
    rows: list[ScopeStatus]

    def records(self) -> list[dict[str, Any]]:
        """The rows as --json prints them, keyed in the family's words (device and auc for
        the acoustic family)."""
        return [_keyed(asdict(row), self.noun, self.headline) for row in self.rows]


def fleet_status(registry: Registry, src: Sources, headline: str) -> FamilyStatus:
    versions: dict[str, list[dict[str, Any]]] = {}
    for meta in registry.list():
        if meta["family"] == src.family:
            versions.setdefault(meta["scope"], []).append(meta)
    failures = _failures(src.reports, src.stages)
    since = _production_since(registry.history())
    found = []
    for scope in sorted(set(versions) | src.scopes):
        status = _scope(registry, src, scope, versions.get(scope, []), since)
        status.figure = (src.figures.get(scope) or {}).get(headline)
        outcome, status.last_run = failures.get(scope, (None, None))
        if outcome == "failed":
            status.flags.append("failed in the last run")
        found.append(status)
    return FamilyStatus(src.noun, headline, found)


def _scope(
    registry: Registry,
    src: Sources,
    scope: str,
    metas: list[dict[str, Any]],
    since: dict[tuple[str, int], str],
) -> ScopeStatus:
    status = ScopeStatus(scope)
    holder = next((m for m in metas if "production" in m["aliases"]), None)
    if holder is not None:
        status.production = _short(f"{holder['name']}:v{holder['version']}")
        status.since = since.get((holder["name"], holder["version"]))
    latest = max(metas, key=lambda m: m["created"]) if metas else None
    if latest is not None and latest is not holder:
        status.candidate = _short(f"{latest['name']}:v{latest['version']}")
        status.gate = _verdict(registry, latest["name"], latest["version"])
    status.bundle = _bundle(src.deploy, scope)
    if holder is None:
        status.flags.append("no production version")
    if status.bundle != status.production:
        status.flags.append("bundle differs from production")
    if metas and scope not in src.scopes:
        leave = f" (`registry retire {holder['name']}` takes it out)" if holder else ""
        status.flags.append(f"not in data.root{leave}")
    return status


def _verdict(registry: Registry, name: str, version: int) -> str:
    """The gate's verdict on promoting a candidate: the one recorded when it was last judged
    (the deploy stage judges each candidate it registers), which needs none of the family's
    models loaded; else, for a version registered by hand, judged now."""
    judged = [
        e
        for e in registry.history(name)
        if e["type"] in (events.CHECKED, events.REFUSED) and e["to_version"] == version
    ]
    if judged:
        gate, day = judged[-1]["gate"], judged[-1]["time"][:10]
        now = f"judged {day}; `registry check {name} {version}` judges it now"
        return f"{_said(gate['passed'], gate['reasons'])} ({now})"
    result = registry.check(name, version)
    return _said(result.passed, result.texts())


def _said(passed: bool, reasons: list[str]) -> str:
    return "would pass" if passed else "refuses: " + "; ".join(reasons)


def _keyed(row: dict[str, Any], noun: str, headline: str) -> dict[str, Any]:
    names = {"scope": noun, "figure": headline}
    return {names.get(key, key): value for key, value in row.items()}


def _bundle(deploy: Path, scope: str) -> str | None:
    folder = export.current(deploy, scope)
    if folder is None:
        return None
    try:
        model = json.loads((folder / export.MANIFEST).read_text())["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return "damaged"
    return _short(model) if export.is_intact(folder, model) else "damaged"


def _short(ref: str) -> str:
    """NAME:vN as TYPE:vN: the row names the scope, the family is the table's."""
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


def _failures(reports: Path, stages: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Scope -> (status, what) of the first stage of the last run that failed or skipped it."""
    found: dict[str, tuple[str, str]] = {}
    for stage in stages:
        for scope, entry in _read(reports / f"{stage}.json").get("devices", {}).items():
            status = entry.get("status")
            if status in ("failed", "skipped") and scope not in found:
                found[scope] = (status, f"{stage} {status}: {entry.get('error', '')}")
    return found


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
