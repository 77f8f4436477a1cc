"""The promotion gate: may this version take `production` from its current holder?

The policy belongs to the store (set by `registry set-policy`, recorded as an event) so that
every promotion, from any directory or process, meets the same gate. Two checks:
- floors: each named metric of the candidate must be at least its floor (e.g. auc >= 0.9),
  where the candidate has it: a device without labelled test clips has no AUC, and its
  result says that the floor was not applied (`notes`);
- degradation (the original system's check): on the candidate's own evaluation data, the
  candidate's error must not exceed the holder's error times `rollback_factor`. The registry
  asks the model's family to compute both errors (see registry.families); a version that
  held the alias before is let back in on its floors alone. When the family says the two
  errors are on different scales (the holder is another type of model for the same device),
  each floored metric of the candidate must instead be at least the holder's.
A comparison that cannot be made refuses; nothing is skipped in silence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from registry.errors import InvalidNameError

GUARDED_ALIAS = "production"


@dataclass(frozen=True)
class Policy:
    floors: dict[str, float] = field(default_factory=lambda: {"auc": 0.9})
    rollback_factor: float = 2.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "floors": dict(sorted(self.floors.items())),
            "rollback_factor": self.rollback_factor,
        }


# What a store that never had a policy set applies: never "no gate".
DEFAULT_POLICY = Policy()


def make_policy(floors: dict[str, Any], rollback_factor: Any) -> Policy:
    """A checked Policy; InvalidNameError naming the value that is wrong."""
    for metric, floor in floors.items():
        if not isinstance(metric, str) or not metric.isidentifier():
            raise InvalidNameError(f"floor metric {metric!r}: expected a metric name like auc")
        if not _finite(floor):
            raise InvalidNameError(f"floor {metric}={floor!r}: expected a finite number")
    if not _finite(rollback_factor) or rollback_factor <= 0:
        raise InvalidNameError(f"rollback factor {rollback_factor!r}: expected a number > 0")
    return Policy({m: float(v) for m, v in floors.items()}, float(rollback_factor))


@dataclass(frozen=True)
class Comparison:
    """How the candidate fared against the holder, as the family measured it (or why not)."""

    holder: str  # NAME:vN
    candidate_error: float | None = None
    holder_error: float | None = None
    readmitted: bool = False  # the candidate held the alias before: floors only
    problem: str = ""  # why no figures could be had
    by_metrics: str = ""  # why the errors are not comparable: metrics are compared instead
    holder_metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # checks not applied, and why

    def as_dict(self) -> dict[str, Any]:
        found = {"passed": self.passed, "reasons": self.reasons, "figures": self.figures}
        return found | ({"notes": self.notes} if self.notes else {})


def check(metrics: dict[str, Any], policy: Policy, comparison: Comparison | None) -> GateResult:
    """`comparison` None: there is no holder to compare with."""
    reasons, figures, notes = [], {}, []
    for metric, floor in sorted(policy.floors.items()):
        value = metrics.get(metric)
        figures[metric] = value
        if value is None:
            notes.append(
                f"{metric} not measured (no labelled test clips): floor {floor:g} not applied"
            )
        elif not _finite(value) or not value >= floor:
            reasons.append(f"{metric} = {value} is below the floor {floor:g}")
    if comparison is not None and comparison.by_metrics:
        figures["holder"] = comparison.holder
        found = _against_metrics(metrics, policy, comparison)
        reasons, figures, notes = reasons + found[0], figures | found[1], notes + found[2]
    elif comparison is not None:
        figures |= _comparison_figures(comparison, policy.rollback_factor)
        reasons += _degradation(comparison, policy.rollback_factor)
    return GateResult(not reasons, reasons, figures, notes)


def _against_metrics(
    metrics: dict[str, Any], policy: Policy, comparison: Comparison
) -> tuple[list[str], dict[str, Any], list[str]]:
    """A holder whose errors are on another scale: the candidate's floored metrics must be
    at least the holder's recorded ones."""
    holder = comparison.holder
    reasons, figures = [], {}
    notes = [f"errors not compared with {holder} ({comparison.by_metrics}): metrics compared"]
    for metric in sorted(policy.floors):
        new, old = metrics.get(metric), comparison.holder_metrics.get(metric)
        figures[f"holder_{metric}"] = old
        if not (_finite(new) and _finite(old)):
            notes.append(f"{metric} not measured for both: not compared with {holder}")
        elif new < old:
            reasons.append(f"{metric} = {new:.6g} is below the holder {holder}'s {old:.6g}")
    return reasons, figures, notes


def _comparison_figures(comparison: Comparison, factor: float) -> dict[str, Any]:
    figures: dict[str, Any] = {"holder": comparison.holder}
    if comparison.readmitted:
        return figures | {"readmitted": True}
    if comparison.problem:
        return figures | {"comparison_problem": comparison.problem}
    return figures | {
        "candidate_error": comparison.candidate_error,
        "holder_error": comparison.holder_error,
        "rollback_factor": factor,
    }


def _degradation(comparison: Comparison, factor: float) -> list[str]:
    holder = comparison.holder
    if comparison.readmitted:
        return []
    if comparison.problem:
        return [f"cannot compare with the holder {holder}: {comparison.problem}"]
    new, old = comparison.candidate_error, comparison.holder_error
    if not (_finite(new) and _finite(old)):
        return [f"the comparison with the holder {holder} has no finite error figures"]
    if not new <= old * factor:
        return [
            f"candidate error {new:.6g} > holder {holder} error {old:.6g} x {factor:g} "
            "on the candidate's data"
        ]
    return []


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
