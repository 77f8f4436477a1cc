"""What every family's deploy stage does with the registry, once a candidate is registered.

- In a plain run (`dvc repro`, the scheduled job) with `auto_promote`, the candidate is
  promoted through the store's gate; a refusal is recorded as an event.
- In an experiment (`dvc exp run`, `--temp`, `--queue`: DVC sets $DVC_EXP_NAME) no alias
  moves: what the gate would decide is recorded as a `checked` event.
- Last, in a plain run, the family's deploy folder is made to hold exactly the registry's
  production versions of that family: a scope whose run failed keeps its bundle while it
  has a production version.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipelines import decisions, fleet, parents
from registry.api import Registry
from registry.errors import GateError
from registry.gate import BELOW_FLOOR

REASON = "auto_promote by the deploy stage"


def experiment() -> str | None:
    """The DVC experiment this run is, or None for a plain run."""
    return os.environ.get("DVC_EXP_NAME") or None


def decide(
    registry: Registry, name: str, version: int, experiment: str | None, auto_promote: bool
) -> dict[str, Any]:
    """Promote in a plain run with auto_promote; otherwise record what the gate would say."""
    if experiment is not None or not auto_promote:
        record = registry.record_check(name, version, experiment)
        return {"action": "checked", "experiment": experiment} | _gate(record)
    try:
        record = registry.promote(name, version, reason=REASON, automatic=True)
    except GateError as exc:
        return {"action": "refused"} | exc.results[name].as_dict()
    return {"action": record["type"]} | _gate(record)


def _gate(record: dict[str, Any]) -> dict[str, Any]:
    held = {key: record[key] for key in ("from_version", "replaced") if key in record}
    return held | record.get("gate", {})


def production(family: str, target: Any, keep_backups: int) -> dict[str, dict[str, Any]]:
    """Scope -> {model, status} of the family's production versions. In a plain run `target`
    is first made to hold exactly those (one bundle per scope); an experiment exports nothing."""
    registry = Registry()
    if experiment() is not None:
        held = registry.list(alias="production")
        return {
            m["scope"]: {"model": f"{m['name']}:v{m['version']}", "status": "not exported"}
            for m in held
            if m["family"] == family
        }
    return registry.export_all(target, family=family, keep_backups=keep_backups)


def all_refused(scopes: dict[str, dict[str, Any]]) -> str | None:
    """The line for a run whose every judged candidate the gate refused, else None. Whether
    that is the fleet's degradation is the daily job's rule (`daily:` in params.yaml): one
    candidate refused is not a fleet."""
    actions = [e["decision"]["action"] for e in scopes.values() if e.get("decision")]
    if not actions or any(action != "refused" for action in actions):
        return None
    return f"all {len(actions)} candidates of this run refused by the gate; production untouched"


def decision_counts(outcomes: dict[str, fleet.Outcome]) -> dict[str, int]:
    """The run's gate verdicts counted over the scopes (the deploy stage's DVC metrics, a
    column each in `dvc exp show` whatever the fleet's size); an experiment's are what the
    gate would decide."""
    decisions = [o.summary["decision"] for o in outcomes.values() if o.summary.get("decision")]
    passed = [d for d in decisions if d["action"] == "promoted" or d.get("passed") is True]
    refused = [d for d in decisions if d["action"] == "refused" or d.get("passed") is False]
    floors = [d for d in refused if any(f["code"] == BELOW_FLOOR for f in d.get("findings", []))]
    return {
        "gate_passed": len(passed),
        "gate_refused": len(refused),
        "promoted": sum(1 for d in decisions if d["action"] == "promoted"),
        "below_floor": len(floors),
        "failed": sum(1 for o in outcomes.values() if o.status == "failed"),
    }


class Reporting:
    """What every deploy stage says and reports beside its scopes: a line per scope, what
    runs in production, and whether the whole fleet was refused. `work` fills `production`."""

    production: dict[str, dict[str, Any]]
    keep_backups: int = 3  # earlier bundles of a scope kept in out/models; `work` sets it
    # the scopes the family's data holds now, where `work` can tell (None: it cannot)
    in_data: frozenset[str] | None = None

    def deploy(
        self, out: Path, built: dict[str, fleet.Outcome], family: str
    ) -> dict[str, fleet.Outcome]:
        """After each candidate is built into out/candidates (its registration, the gate's
        verdict): in a plain run, out/models made to hold the family's production bundles,
        and out/metrics.json the verdicts counted."""
        self.production.update(production(family, out / "models", self.keep_backups))
        fleet.write_json(out / "metrics.json", decision_counts(built))
        return built

    def describe(self, report: dict[str, Any]) -> list[tuple[str, str]]:
        return decisions.describe(report)

    def extra(self, report: dict[str, Any]) -> dict[str, Any]:
        refused = all_refused(report["devices"])
        said = {"error": refused} if refused else {}
        held = {s for s, shipped in self.production.items() if shipped["status"] != "removed"}
        gone = sorted(held - set(report["devices"]) - (self.in_data or set()))
        absent = {"not_in_data": gone} if self.in_data is not None else {}
        return {"production": self.production, "all_refused": bool(refused), **absent, **said}


def parent_version(model_dir: Path) -> int | None:
    """The version a scope's training started from, as the train stage recorded it."""
    start = fleet.read_json(model_dir / "summary.json").get("start")
    return parents.Start(**start).parent_version if start else None
