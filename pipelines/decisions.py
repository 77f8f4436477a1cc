"""What a deploy stage did, in words: one line per scope (a device, a task) of its report, for
the stage's console, `fleet daily` and the fleet report (which need no torch to say it)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from registry.events import previous_holder


def describe(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One console line per device of a deploy stage's `report`: what this run did, and what
    runs there now. A device with a production version and no folder in data.root is said
    to be so."""
    devices, production = report.get("devices", {}), report.get("production", {})
    not_in_data = report.get("not_in_data", [])
    return [
        (device, f"{device}: {_said(device, devices, production, not_in_data)}")
        for device in sorted(set(devices) | set(production))
    ]


def _said(
    device: str,
    devices: dict[str, dict[str, Any]],
    production: dict[str, dict[str, Any]],
    not_in_data: Collection[str],
) -> str:
    shipped = production.get(device)
    if shipped and device in not_in_data:
        return gone(shipped)
    if shipped and shipped["status"] == "removed" and device not in devices:
        return f"no production version: {shipped['model']}'s bundle left the deploy folder"
    return _line(devices.get(device), shipped)


def gone(shipped: dict[str, Any]) -> str:
    """A production device whose folder left data.root: it is not retired by that."""
    name = shipped["model"].rsplit(":v", 1)[0]
    return (
        f"not in data.root: no run of it, not in the fleet's figures; production "
        f"{shipped['model']} still exported (`registry retire {name}` takes it out of the fleet)"
    )


def _line(entry: dict[str, Any] | None, shipped: dict[str, Any] | None) -> str:
    running = f"production {shipped['model']}" if shipped else "no production version"
    if shipped and shipped["status"] == "failed":
        running += f" (its export failed: {shipped['error']})"
    if entry is None:
        return f"no candidate from this run (see the earlier stages); {running} kept"
    if entry["status"] in ("failed", "skipped"):
        return f"{entry['status']}: {entry['error']}; {running} kept"
    if entry["status"] == "unchanged":
        return f"v{entry['version']} unchanged since the last run; {running}"
    head = f"v{entry['version']} {'registered' if entry['new'] else 'already registered'}"
    decision = entry["decision"]
    action = decision["action"]
    if action == "promoted":
        return f"{head}; promoted{_was(decision)}{_figures(decision)}; {running}"
    if action == "unchanged":
        return f"{head}; already in production"
    if action == "kept":
        return (
            f"{head}; not promoted: production {previous_holder(decision)} is newer or this "
            f"version held it before (going back is `registry rollback`); {running} kept"
        )
    if action == "refused":
        return f"{head}; refused by the gate: {'; '.join(decision['reasons'])}; {running} kept"
    who = f"experiment {decision['experiment']}" if decision["experiment"] else "auto_promote off"
    verdict = (
        "would promote it"
        if decision["passed"]
        else ("would refuse it: " + "; ".join(decision["reasons"]))
    )
    return f"{head}; {who}, not promoted: the gate {verdict}{_figures(decision)}; {running}"


def _was(decision: dict[str, Any]) -> str:
    holder = previous_holder(decision)
    return f" from {holder}" if holder else ""


def _figures(decision: dict[str, Any]) -> str:
    figures = decision.get("figures") or {}
    shown = [f"{k} {v:.3f}" for k, v in figures.items() if _bounded(k) and isinstance(v, float)]
    if isinstance(figures.get("candidate_error"), float):
        shown.append(
            f"error {figures['candidate_error']:.4g} vs {figures['holder']}'s "
            f"{figures['holder_error']:.4g} (x{figures['rollback_factor']:g} allowed)"
        )
    if figures.get("readmitted"):
        shown.append(f"held production before {figures['holder']}")
    shown += decision.get("notes") or []
    return f" [{', '.join(shown)}]" if shown else ""


def _bounded(key: str) -> bool:
    """A figure of a metric the gate bounds, not of its comparison with the holder."""
    return key not in _COMPARISON and not key.startswith("holder")


_COMPARISON = ("candidate_error", "rollback_factor", "readmitted", "comparison_problem")
