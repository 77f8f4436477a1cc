"""The promotion gate: may this version take `production` from its current holder?

The policy belongs to the store (set by `registry set-policy`, recorded as an event) so that
every promotion, from any directory or process, meets the same gate: a family's own, else
the store's, else (neither ever set) the one the family declares. Two checks:
- bounds: each floored metric of the candidate must be at least its floor (auc >= 0.9), each
  ceilinged one at most its ceiling (rmse <= 4.5), where the candidate has it: a version
  that did not measure a bounded metric (an acoustic device without labelled test clips has no
  AUC) is not judged on it, and its result says so (`notes`);
- degradation (the original system's check): on the candidate's own evaluation data, the
  candidate's error must not exceed the holder's error times `rollback_factor`. The registry
  asks the model's family to compute both errors (see registry.families); a version that
  held the alias before is let back in on its floors alone. When the family says the two
  errors are on different scales (the holder is another type of model for the same device),
  each bounded metric of the candidate must instead be at least (floors) or at most
  (ceilings) the holder's.
A comparison that cannot be made refuses; nothing is skipped in silence. Each refusal is a
`Reason`: data (a code, the metric, the value, the bound), from which its sentence is made;
what reads a verdict reads the codes, never the sentences.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from registry.errors import InvalidNameError

GUARDED_ALIAS = "production"


@dataclass(frozen=True)
class Policy:
    floors: dict[str, float] = field(default_factory=dict)
    rollback_factor: float = 2.0
    ceilings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "floors": dict(sorted(self.floors.items())),
            "rollback_factor": self.rollback_factor,
        }
        return found | ({"ceilings": dict(sorted(self.ceilings.items()))} if self.ceilings else {})

    def bounds(self) -> list[tuple[str, str, float]]:
        """(metric, FLOOR or CEILING, bound), by metric."""
        found = [(m, FLOOR, v) for m, v in self.floors.items()]
        return sorted(found + [(m, CEILING, v) for m, v in self.ceilings.items()])


FLOOR, CEILING = "floor", "ceiling"
# What a version meets in a store where no policy applying to it was ever set, when its
# family declares none (registry.families, POLICY): no bounds, and still the degradation
# check against the holder, never "no gate".
DEFAULT_POLICY = Policy()


def make_policy(
    floors: dict[str, Any], rollback_factor: Any, ceilings: dict[str, Any] | None = None
) -> Policy:
    """A checked Policy; InvalidNameError naming the value that is wrong."""
    for kind, bounds in ((FLOOR, floors), (CEILING, ceilings or {})):
        for metric, bound in bounds.items():
            if not isinstance(metric, str) or not metric.isidentifier():
                raise InvalidNameError(f"{kind} metric {metric!r}: expected a metric name like auc")
            if not _finite(bound):
                raise InvalidNameError(f"{kind} {metric}={bound!r}: expected a finite number")
    if not _finite(rollback_factor) or rollback_factor <= 0:
        raise InvalidNameError(f"rollback factor {rollback_factor!r}: expected a number > 0")
    return Policy(
        {m: float(v) for m, v in floors.items()},
        float(rollback_factor),
        {m: float(v) for m, v in (ceilings or {}).items()},
    )


# The codes of a Reason: why the gate refuses.
BELOW_FLOOR, ABOVE_CEILING = "below_floor", "above_ceiling"
BELOW_HOLDER, ABOVE_HOLDER = "below_holder", "above_holder"
NO_COMPARISON, NO_ERRORS, DEGRADED = "no_comparison", "no_errors", "degraded"


@dataclass(frozen=True)
class Reason:
    """One refusal, as data: `value` of `metric` against `bound`, a floor, a ceiling or the
    holder's value; for DEGRADED, the candidate's error against the holder's, which `factor`
    multiplies."""

    code: str
    metric: str = ""
    value: Any = None
    bound: float | None = None
    holder: str = ""  # NAME:vN
    factor: float | None = None
    problem: str = ""  # why no comparison could be made

    def text(self) -> str:
        m, v, b, holder = self.metric, self.value, self.bound, self.holder
        if self.code in (BELOW_FLOOR, ABOVE_CEILING):
            side = "below the floor" if self.code == BELOW_FLOOR else "above the ceiling"
            value, bound = _apart(v, b)
            return f"{m} = {value} is {side} {bound}"
        if self.code in (BELOW_HOLDER, ABOVE_HOLDER):
            side = "below" if self.code == BELOW_HOLDER else "above"
            value, bound = _apart(v, b)
            return f"{m} = {value} is {side} the holder {holder}'s {bound}"
        if self.code == NO_COMPARISON:
            return f"cannot compare with the holder {holder}: {self.problem}"
        if self.code == NO_ERRORS:
            return f"the comparison with the holder {holder} has no finite error figures"
        value, bound = _apart(v, b * self.factor)
        return (
            f"candidate error {value} > holder {holder} error {b:.4g} x {self.factor:g} "
            f"= {bound} on the candidate's data"
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


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
    reasons: list[Reason] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # checks not applied, and why

    def texts(self) -> list[str]:
        return [reason.text() for reason in self.reasons]

    def as_dict(self) -> dict[str, Any]:
        """`reasons` as sentences for people, `findings` as data for programs."""
        found = {"passed": self.passed, "reasons": self.texts(), "figures": self.figures}
        found["findings"] = [reason.as_dict() for reason in self.reasons]
        return found | ({"notes": self.notes} if self.notes else {})


def check(metrics: dict[str, Any], policy: Policy, comparison: Comparison | None) -> GateResult:
    """`comparison` None: there is no holder to compare with."""
    reasons, figures, notes = [], {}, []
    for metric, kind, bound in policy.bounds():
        value = metrics.get(metric)
        figures[metric] = value
        if value is None:
            notes.append(f"{metric} not measured for this version: {kind} {bound:g} not applied")
        elif not _within(value, kind, bound):
            code = BELOW_FLOOR if kind == FLOOR else ABOVE_CEILING
            reasons.append(Reason(code, metric, value, bound))
    if comparison is not None and comparison.by_metrics:
        figures["holder"] = comparison.holder
        found = _against_metrics(metrics, policy, comparison)
        reasons, figures, notes = reasons + found[0], figures | found[1], notes + found[2]
    elif comparison is not None:
        figures |= _comparison_figures(comparison, policy.rollback_factor)
        reasons += _degradation(comparison, policy.rollback_factor)
    return GateResult(not reasons, reasons, figures, notes)


def _within(value: Any, kind: str, bound: float) -> bool:
    return _finite(value) and (value >= bound if kind == FLOOR else value <= bound)


def _against_metrics(
    metrics: dict[str, Any], policy: Policy, comparison: Comparison
) -> tuple[list[Reason], dict[str, Any], list[str]]:
    """A holder whose errors are on another scale: the candidate's bounded metrics must be
    at least (floors) or at most (ceilings) the holder's recorded ones."""
    holder = comparison.holder
    reasons, figures = [], {}
    notes = [f"errors not compared with {holder} ({comparison.by_metrics}): metrics compared"]
    for metric, kind, _ in policy.bounds():
        new, old = metrics.get(metric), comparison.holder_metrics.get(metric)
        figures[f"holder_{metric}"] = old
        if not (_finite(new) and _finite(old)):
            notes.append(f"{metric} not measured for both: not compared with {holder}")
        elif not _within(new, kind, old):
            code = BELOW_HOLDER if kind == FLOOR else ABOVE_HOLDER
            reasons.append(Reason(code, metric, new, old, holder))
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


def _degradation(comparison: Comparison, factor: float) -> list[Reason]:
    holder = comparison.holder
    if comparison.readmitted:
        return []
    if comparison.problem:
        return [Reason(NO_COMPARISON, holder=holder, problem=comparison.problem)]
    new, old = comparison.candidate_error, comparison.holder_error
    if not (_finite(new) and _finite(old)):
        return [Reason(NO_ERRORS, holder=holder)]
    if not new <= old * factor:
        return [Reason(DEGRADED, "error", new, old, holder, factor)]
    return []


def _apart(value: Any, bound: float) -> tuple[str, str]:
    """value and bound to 4 significant digits, as the tables show figures, or to as many
    more as it takes for them not to read the same; a value that is not a number as it is."""
    if not isinstance(value, float | int) or isinstance(value, bool):
        return str(value), f"{bound:.4g}"
    for digits in (4, 6, 9, 17):
        shown = f"{value:.{digits}g}", f"{bound:.{digits}g}"
        if shown[0] != shown[1]:
            return shown
    return shown


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
