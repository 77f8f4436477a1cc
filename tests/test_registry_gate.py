"""registry.gate and the gate inside Registry.promote: floors, degradation, force, aliases."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from registry import events, gate
from registry.api import Registry
from registry.errors import GateError
from tests.registry_helpers import FAMILY, MODEL_TYPE, NAME, SCOPE, make_artifacts, snapshot


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODEL_STORE", raising=False)


def _candidate(version: int = 2, auc: Any = 0.95, **extra: Any) -> dict[str, Any]:
    return {"name": NAME, "version": version, "metrics": {"auc": auc}, **extra}


def _comparison(holder: int, holder_error: float, candidate_error: float) -> dict[str, Any]:
    return {
        "holder_version": holder,
        "holder_error": holder_error,
        "candidate_error": candidate_error,
    }


# ------------------------------------------------------------------ gate.check
def test_floors_pass_and_record_the_figures() -> None:
    result = gate.check(_candidate(auc=0.95), None, {"auc": 0.9}, 2.0)
    assert result.passed
    assert result.reasons == []
    assert result.figures == {"auc": 0.95}


def test_floor_at_exactly_the_value_passes() -> None:
    assert gate.check(_candidate(auc=0.9), None, {"auc": 0.9}, 2.0).passed


def test_floors_fail_with_the_figures_in_the_reason() -> None:
    result = gate.check(_candidate(auc=0.8), None, {"auc": 0.9, "pauc": 0.5}, 2.0)
    assert not result.passed
    assert "auc = 0.8 is below the floor 0.9" in result.reasons
    assert "pauc = None is below the floor 0.5" in result.reasons  # a missing metric fails
    assert result.figures == {"auc": 0.8, "pauc": None}


def test_non_numeric_metric_fails_the_floor() -> None:
    assert not gate.check(_candidate(auc="high"), None, {"auc": 0.9}, 2.0).passed


def test_no_metrics_at_all_fails_a_floor() -> None:
    result = gate.check({"name": NAME, "version": 1}, None, {"auc": 0.9}, 2.0)
    assert not result.passed


def test_degradation_within_the_factor_passes() -> None:
    candidate = _candidate(comparison=_comparison(1, 1.0, 1.9))
    result = gate.check(candidate, 1, {}, 2.0)
    assert result.passed
    assert result.figures == {
        "holder": 1,
        "holder_version": 1,
        "holder_error": 1.0,
        "candidate_error": 1.9,
        "rollback_factor": 2.0,
    }


def test_degradation_beyond_the_factor_fails_with_the_figures() -> None:
    candidate = _candidate(comparison=_comparison(1, 1.0, 2.5))
    result = gate.check(candidate, 1, {}, 2.0)
    assert not result.passed
    assert result.reasons == ["candidate error 2.5 > holder v1 error 1 x 2 on the candidate's data"]


def test_missing_comparison_with_the_holder_refuses() -> None:
    result = gate.check(_candidate(), 1, {}, 2.0)
    assert not result.passed
    assert "no comparison with the current holder v1" in result.reasons[0]


def test_comparison_against_another_version_refuses() -> None:
    result = gate.check(_candidate(version=3, comparison=_comparison(1, 1.0, 0.5)), 2, {}, 2.0)
    assert not result.passed
    assert "current holder v2" in result.reasons[0]


def test_no_holder_or_holder_is_candidate_skips_degradation() -> None:
    assert gate.check(_candidate(version=2), None, {}, 2.0).passed
    assert gate.check(_candidate(version=2), 2, {}, 2.0).passed


def test_both_checks_report_together() -> None:
    result = gate.check(
        _candidate(auc=0.1, comparison=_comparison(1, 1.0, 9.0)), 1, {"auc": 0.9}, 2
    )
    assert not result.passed
    assert len(result.reasons) == 2


def test_nan_metric_fails_the_floor() -> None:
    assert not gate.check(_candidate(auc=math.nan), None, {"auc": 0.9}, 2.0).passed


def test_nan_candidate_error_fails_the_degradation_check() -> None:
    candidate = _candidate(comparison=_comparison(1, 1.0, math.nan))
    assert not gate.check(candidate, 1, {}, 2.0).passed


def test_incomplete_comparison_refuses_with_a_reason() -> None:
    result = gate.check(_candidate(comparison={"holder_version": 1}), 1, {}, 2.0)
    assert not result.passed


# ------------------------------------------------------------------ Registry.promote
@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "store", actor="tester")


def _register(registry: Registry, tmp_path: Path, tag: str, **kwargs: Any) -> dict[str, Any]:
    folder = make_artifacts(tmp_path / "art" / tag, tag.encode())
    return registry.register(folder, FAMILY, SCOPE, MODEL_TYPE, **kwargs)


def _register_compared_with_v1(
    registry: Registry, tmp_path: Path, tag: str, auc: float, errors: tuple[float, float]
) -> dict[str, Any]:
    """A candidate whose registration recorded (v1's error, its own) on its data."""
    comparison = _comparison(1, *errors)
    return _register(
        registry, tmp_path, tag, metrics={"auc": auc}, extra={"comparison": comparison}
    )


def test_promote_passing_floors_records_the_gate(registry: Registry, tmp_path: Path) -> None:
    _register(registry, tmp_path, "v1", metrics={"auc": 0.95})
    record = registry.promote(NAME, 1, floors={"auc": 0.9}, rollback_factor=2.0)
    assert record["forced"] is False
    assert record["gate"] == {"passed": True, "reasons": [], "figures": {"auc": 0.95}}
    assert registry.get(f"{NAME}@production")["version"] == 1


def test_promote_failing_floor_is_refused_with_figures_and_changes_nothing(
    registry: Registry, tmp_path: Path
) -> None:
    _register(registry, tmp_path, "v1", metrics={"auc": 0.5})
    before = snapshot(registry.store.root)
    with pytest.raises(GateError) as caught:
        registry.promote(NAME, 1, floors={"auc": 0.9})
    message = str(caught.value)
    assert f"{NAME}:v1 -> production refused by the gate" in message
    assert "auc = 0.5 is below the floor 0.9" in message
    assert "--force" in message
    assert snapshot(registry.store.root) == before


def test_promote_degradation_check_uses_the_registered_comparison(
    registry: Registry, tmp_path: Path
) -> None:
    _register(registry, tmp_path, "v1", metrics={"auc": 0.95})
    registry.promote(NAME, 1, floors={"auc": 0.9}, rollback_factor=1.5)
    _register_compared_with_v1(registry, tmp_path, "v2", 0.96, (0.10, 0.20))
    _register_compared_with_v1(registry, tmp_path, "v3", 0.97, (0.10, 0.12))
    before = snapshot(registry.store.root)
    with pytest.raises(GateError) as caught:
        registry.promote(NAME, 2, floors={"auc": 0.9}, rollback_factor=1.5)
    assert "candidate error 0.2 > holder v1 error 0.1 x 1.5" in str(caught.value)
    assert snapshot(registry.store.root) == before

    record = registry.promote(NAME, 3, floors={"auc": 0.9}, rollback_factor=1.5)
    assert record["gate"]["passed"] is True
    assert record["gate"]["figures"]["candidate_error"] == 0.12
    assert record["gate"]["figures"]["holder"] == 1
    assert (record["from_version"], record["to_version"]) == (1, 3)


def test_promote_without_comparison_against_the_holder_refuses(
    registry: Registry, tmp_path: Path
) -> None:
    _register(registry, tmp_path, "v1", metrics={"auc": 0.95})
    registry.promote(NAME, 1, rollback_factor=2.0)
    _register(registry, tmp_path, "v2", metrics={"auc": 0.99})
    with pytest.raises(GateError, match="no comparison with the current holder v1"):
        registry.promote(NAME, 2, rollback_factor=2.0)
    assert registry.get(f"{NAME}@production")["version"] == 1


def test_force_overrides_and_is_recorded_with_the_figures(
    registry: Registry, tmp_path: Path
) -> None:
    _register(registry, tmp_path, "v1", metrics={"auc": 0.95})
    registry.promote(NAME, 1)
    _register_compared_with_v1(registry, tmp_path, "v2", 0.5, (0.1, 0.9))
    record = registry.promote(
        NAME, 2, reason="hotfix", force=True, floors={"auc": 0.9}, rollback_factor=2.0
    )
    assert record["forced"] is True
    assert record["gate"]["passed"] is False
    assert len(record["gate"]["reasons"]) == 2
    assert record["gate"]["figures"]["auc"] == 0.5
    assert record["gate"]["figures"]["candidate_error"] == 0.9
    assert record["gate"]["figures"]["rollback_factor"] == 2.0
    logged = events.read(registry.store.events_file)[-1]
    assert logged == record
    assert logged["reason"] == "hotfix"
    assert registry.get(f"{NAME}@production")["version"] == 2


def test_non_production_alias_skips_the_gate(registry: Registry, tmp_path: Path) -> None:
    _register(registry, tmp_path, "v1", metrics={"auc": 0.1})
    record = registry.promote(NAME, 1, alias="staging", floors={"auc": 0.9}, rollback_factor=1.0)
    assert "gate" not in record
    assert record["forced"] is False
    assert registry.get(f"{NAME}@staging")["version"] == 1


def test_no_floors_and_no_factor_means_no_gate(registry: Registry, tmp_path: Path) -> None:
    _register(registry, tmp_path, "v1", metrics={"auc": 0.1})
    record = registry.promote(NAME, 1)
    assert "gate" not in record


def _strict_json(line: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(line, parse_constant=refuse)


def test_events_log_stays_strict_json_when_only_floors_are_given(
    registry: Registry, tmp_path: Path
) -> None:
    _register(registry, tmp_path, "v1", metrics={"auc": 0.95})
    registry.promote(NAME, 1)
    _register_compared_with_v1(registry, tmp_path, "v2", 0.96, (1.0, 1.0))
    registry.promote(NAME, 2, floors={"auc": 0.9})
    for line in registry.store.events_file.read_text().splitlines():
        _strict_json(line)
