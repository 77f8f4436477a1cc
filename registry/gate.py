"""The promotion gate: may this version take the alias from its current holder?

Two checks, both on figures recorded at registration (the registry never runs a model):
- floors: each named metric of the candidate must be at least its floor (e.g. auc >= 0.9);
- degradation (the original system's check): on the candidate's own evaluation data, the
  candidate's error must not exceed the holder's error times `rollback_factor`. The
  pipeline records both errors when it registers a candidate; without a comparison against
  the current holder the gate cannot judge and refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


def check(
    candidate: dict[str, Any],
    holder: int | None,
    floors: dict[str, float],
    rollback_factor: float | None,
) -> GateResult:
    """`rollback_factor` None: floors only, no degradation check."""
    metrics = candidate.get("metrics") or {}
    reasons, figures = [], {}
    for metric, floor in sorted(floors.items()):
        value = metrics.get(metric)
        figures[metric] = value
        if not isinstance(value, (int, float)) or not value >= floor:  # NaN fails too
            reasons.append(f"{metric} = {value} is below the floor {floor}")
    if rollback_factor is not None and holder is not None and holder != candidate["version"]:
        comparison = candidate.get("comparison") or {}
        figures |= {"holder": holder, **comparison, "rollback_factor": rollback_factor}
        if comparison.get("holder_version") != holder:
            reasons.append(
                f"no comparison with the current holder v{holder} on the candidate's data "
                "was recorded at registration"
            )
        elif not all(
            isinstance(comparison.get(k), (int, float)) for k in ("candidate_error", "holder_error")
        ):
            reasons.append(f"the recorded comparison with v{holder} lacks its error figures")
        elif not comparison["candidate_error"] <= comparison["holder_error"] * rollback_factor:
            reasons.append(
                f"candidate error {comparison['candidate_error']:.6g} > holder v{holder} error "
                f"{comparison['holder_error']:.6g} x {rollback_factor:g} on the candidate's data"
            )
    return GateResult(not reasons, reasons, figures)
