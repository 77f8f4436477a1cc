"""registry.gate and the gate inside Registry.promote: the store's policy, floors, the
degradation check computed by the family, readmission, force, and refusals that change nothing."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from registry import events, gate
from registry.api import Registry
from registry.errors import GateError, HistoryError, InvalidNameError, UsageError
from tests.registry_helpers import (
    FAMILY,
    INFERENCE,
    MODEL_TYPE,
    NAME,
    SCOPE,
    TOY,
    make_acoustic_artifacts,
    make_artifacts,
    new_registry,
    snapshot,
)

POLICY = gate.Policy({"auc": 0.9}, 2.0)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODEL_STORE", raising=False)


# ------------------------------------------------------------------ gate.check
def test_floors_pass_and_record_the_figures() -> None:
    result = gate.check({"auc": 0.95}, POLICY, None)
    assert result.passed and result.reasons == []
    assert result.figures == {"auc": 0.95}


def test_floor_at_exactly_the_value_passes() -> None:
    assert gate.check({"auc": 0.9}, POLICY, None).passed


def test_floors_fail_with_the_figures_in_the_reason() -> None:
    result = gate.check({"auc": 0.8}, gate.Policy({"auc": 0.9, "pauc": 0.5}, 2.0), None)
    assert not result.passed
    assert "auc = 0.8 is below the floor 0.9" in result.texts()
    assert result.texts() == ["auc = 0.8 is below the floor 0.9"]
    assert result.figures == {"auc": 0.8, "pauc": None}


def test_a_floor_on_a_metric_not_measured_is_not_applied_and_says_so() -> None:
    """A device without labelled test clips has no AUC: the floors apply where it has them."""
    result = gate.check({}, gate.Policy({"auc": 0.9}, 2.0), gate.Comparison(f"{NAME}:v1", 3.0, 1.0))
    assert result.notes == ["auc not measured for this version: floor 0.9 not applied"]
    assert not result.passed and result.texts()[0].startswith(
        f"candidate error 3 > holder {NAME}:v1"
    )
    assert gate.check({}, gate.Policy({"auc": 0.9}, 2.0), None).passed


@pytest.mark.parametrize("value", ["high", math.nan, math.inf, True])
def test_a_value_that_is_not_a_finite_number_fails_the_floor(value: Any) -> None:
    assert not gate.check({"auc": value}, POLICY, None).passed


def test_degradation_within_the_factor_passes_with_the_figures() -> None:
    result = gate.check({"auc": 0.95}, POLICY, gate.Comparison(f"{NAME}:v1", 1.9, 1.0))
    assert result.passed
    assert result.figures == {
        "auc": 0.95,
        "holder": f"{NAME}:v1",
        "candidate_error": 1.9,
        "holder_error": 1.0,
        "rollback_factor": 2.0,
    }


def test_degradation_beyond_the_factor_fails_with_the_figures() -> None:
    result = gate.check({"auc": 0.95}, POLICY, gate.Comparison(f"{NAME}:v1", 2.5, 1.0))
    assert result.texts() == [
        f"candidate error 2.5 > holder {NAME}:v1 error 1 x 2 = 2 on the candidate's data"
    ]


def test_gate_figures_read_as_the_tables_show_them_yet_never_as_their_bound() -> None:
    result = gate.check({"auc": 0.8333333333333334}, POLICY, None)
    assert result.texts() == ["auc = 0.8333 is below the floor 0.9"]
    close = gate.check({"auc": 0.8999999}, POLICY, None)
    assert close.texts() == ["auc = 0.8999999 is below the floor 0.9"]
    worse = gate.Comparison(f"{NAME}:v1", 3.2153061948233184, 1.6076)
    assert gate.check({"auc": 0.95}, POLICY, worse).texts() == [
        f"candidate error 3.21531 > holder {NAME}:v1 error 1.608 x 2 = 3.2152 "
        "on the candidate's data"
    ]


def test_a_comparison_that_could_not_be_made_refuses() -> None:
    result = gate.check(
        {"auc": 0.95}, POLICY, gate.Comparison(f"{NAME}:v3", problem="no eval_windows")
    )
    assert result.texts() == [f"cannot compare with the holder {NAME}:v3: no eval_windows"]
    assert result.figures["comparison_problem"] == "no eval_windows"


@pytest.mark.parametrize("errors", [(math.nan, 1.0), (1.0, None), (math.inf, 1.0)])
def test_error_figures_that_are_not_finite_refuse(errors: tuple[Any, Any]) -> None:
    assert not gate.check({"auc": 0.95}, POLICY, gate.Comparison(f"{NAME}:v1", *errors)).passed


def test_a_readmitted_version_is_judged_on_its_floors_only() -> None:
    result = gate.check({"auc": 0.95}, POLICY, gate.Comparison(f"{NAME}:v2", readmitted=True))
    assert result.passed and result.figures == {
        "auc": 0.95,
        "holder": f"{NAME}:v2",
        "readmitted": True,
    }
    assert not gate.check(
        {"auc": 0.5}, POLICY, gate.Comparison(f"{NAME}:v2", readmitted=True)
    ).passed


def test_both_checks_report_together() -> None:
    result = gate.check({"auc": 0.1}, POLICY, gate.Comparison(f"{NAME}:v1", 9.0, 1.0))
    assert len(result.reasons) == 2


@pytest.mark.parametrize(
    ("floors", "factor", "says"),
    [
        ({"auc": math.nan}, 2.0, "floor auc=nan"),
        ({"a uc": 0.9}, 2.0, "floor metric 'a uc'"),
        ({"auc": "high"}, 2.0, "floor auc='high'"),
        ({}, 0, "rollback factor 0"),
        ({}, math.inf, "rollback factor inf"),
    ],
)
def test_make_policy_refuses_bad_values(floors: dict, factor: Any, says: str) -> None:
    with pytest.raises(InvalidNameError, match=says):
        gate.make_policy(floors, factor)


# ------------------------------------------------------------------ the store's policy
@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return new_registry(tmp_path / "store", actor="tester", families=TOY)


def _register(registry: Registry, tmp_path: Path, tag: str, **metrics: float) -> dict[str, Any]:
    folder = make_artifacts(tmp_path / "art" / tag, tag.encode())
    return registry.register(folder, FAMILY, SCOPE, MODEL_TYPE, metrics=metrics)


def _v1_in_production_then(
    registry: Registry, tmp_path: Path, **candidate: float
) -> dict[str, Any]:
    """v1 (auc 0.95, error 0.1) in production, then a candidate v2 with these metrics."""
    holder = _register(registry, tmp_path, "v1", auc=0.95, error=0.1)
    registry.promote(NAME, 1)
    _register(registry, tmp_path, "v2", **candidate)
    return holder


def test_a_store_without_a_policy_applies_the_familys_declared_default(
    registry: Registry, tmp_path: Path
) -> None:
    """The store's own default bounds nothing (the registry knows no family's metrics); a
    family's versions meet the POLICY their family declares (the toy one: auc >= 0.9)."""
    assert registry.policy() == {"floors": {}, "rollback_factor": 2.0, "set": None}
    declared = {"floors": {"auc": 0.9}, "rollback_factor": 2.0, "declared_by": FAMILY}
    assert registry.policy(FAMILY) == declared | {"set": None}
    assert registry.policy("other") == registry.policy()  # not installed: declares nothing
    _register(registry, tmp_path, "v1", auc=0.1)
    with pytest.raises(GateError, match=re.escape("auc = 0.1 is below the floor 0.9")):
        registry.promote(NAME, 1)


def test_set_policy_is_an_event_and_changes_only_what_it_names(registry: Registry) -> None:
    registry.set_policy({"auc": 0.9, "pauc": 0.5}, reason="pAUC matters too")
    record = registry.set_policy(drop_floors=["auc"], rollback_factor=1.5, reason="looser")
    assert record["policy"] == {"floors": {"pauc": 0.5}, "rollback_factor": 1.5}
    assert record["previous"] == {"floors": {"auc": 0.9, "pauc": 0.5}, "rollback_factor": 2.0}
    found = registry.policy()
    assert found["floors"] == {"pauc": 0.5} and found["rollback_factor"] == 1.5
    assert (found["set"]["actor"], found["set"]["reason"]) == ("tester", "looser")
    kinds = [e["type"] for e in events.read(registry.store.events_file)]
    assert kinds == ["policy_set", "policy_set"]
    assert registry.set_policy(rollback_factor=1.5)["type"] == "unchanged"
    assert len(events.read(registry.store.events_file)) == 2


def test_a_bad_policy_change_changes_nothing(registry: Registry) -> None:
    registry.set_policy({"auc": 0.8})
    before = snapshot(registry.store.root)
    with pytest.raises(UsageError, match="no floor on pauc"):
        registry.set_policy(drop_floors=["pauc"])
    with pytest.raises(InvalidNameError):
        registry.set_policy(rollback_factor=-1)
    assert snapshot(registry.store.root) == before


def test_the_policy_applies_from_any_directory_and_process(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A promotion elsewhere, with another Registry object, meets the store's own gate."""
    registry.set_policy({"auc": 0.95})
    _register(registry, tmp_path, "v1", auc=0.93)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "params.yaml").write_text("deploy:\n  gate:\n    floors: {auc: 0.0}\n")
    monkeypatch.chdir(elsewhere)
    with pytest.raises(GateError, match=re.escape("auc = 0.93 is below the floor 0.95")):
        Registry(registry.store.root, families=TOY).promote(NAME, 1)


# ------------------------------------------------------------------ Registry.promote
def test_promote_passing_floors_records_the_gate(registry: Registry, tmp_path: Path) -> None:
    _register(registry, tmp_path, "v1", auc=0.95)
    record = registry.promote(NAME, 1)
    assert record["forced"] is False
    assert record["gate"] == {
        "passed": True,
        "reasons": [],
        "findings": [],
        "figures": {"auc": 0.95},
    }
    assert registry.get(f"{NAME}@production")["version"] == 1


def test_a_refused_promote_changes_nothing_and_says_why(registry: Registry, tmp_path: Path) -> None:
    _register(registry, tmp_path, "v1", auc=0.5)
    before = snapshot(registry.store.root)
    with pytest.raises(GateError) as caught:
        registry.promote(NAME, 1)
    message = str(caught.value)
    assert f"{NAME}:v1 -> production refused by the gate" in message
    assert "auc = 0.5 is below the floor 0.9" in message and "--force" in message
    assert caught.value.results[NAME].figures == {"auc": 0.5}
    assert snapshot(registry.store.root) == before


def test_the_degradation_check_is_computed_against_the_current_holder(
    registry: Registry, tmp_path: Path
) -> None:
    _register(registry, tmp_path, "v1", auc=0.95, error=0.10)
    registry.promote(NAME, 1)
    _register(registry, tmp_path, "v2", auc=0.96, error=0.25)
    _register(registry, tmp_path, "v3", auc=0.97, error=0.12)
    before = snapshot(registry.store.root)
    with pytest.raises(
        GateError, match=re.escape(f"candidate error 0.25 > holder {NAME}:v1 error 0.1 x 2")
    ):
        registry.promote(NAME, 2)
    assert snapshot(registry.store.root) == before
    record = registry.promote(NAME, 3)
    assert record["gate"]["figures"] == {
        "auc": 0.97,
        "holder": f"{NAME}:v1",
        "candidate_error": 0.12,
        "holder_error": 0.10,
        "rollback_factor": 2.0,
    }
    assert (record["from_version"], record["to_version"]) == (1, 3)


def test_an_earlier_holder_comes_back_on_its_floors(registry: Registry, tmp_path: Path) -> None:
    """v1 (error 0.5) was production; v2 (error 0.1) replaced it; v1 may return by hand even
    though it is worse than v2 on v1's data, because it ran in production before."""
    _register(registry, tmp_path, "v1", auc=0.95, error=0.5)
    registry.promote(NAME, 1)
    _register(registry, tmp_path, "v2", auc=0.95, error=0.1)
    registry.promote(NAME, 2)
    record = registry.promote(NAME, 1, reason="v2 misbehaves on site")
    assert record["gate"]["figures"] == {"auc": 0.95, "holder": f"{NAME}:v2", "readmitted": True}
    assert registry.get(f"{NAME}@production")["version"] == 1


def test_without_an_installed_family_the_comparison_refuses(tmp_path: Path) -> None:
    registry = new_registry(tmp_path / "store", families={})
    _v1_in_production_then(registry, tmp_path, auc=0.99, error=0.1)
    with pytest.raises(
        GateError, match=f"cannot compare with the holder {NAME}:v1: no family 'toy'"
    ):
        registry.promote(NAME, 2)


def test_a_tampered_holder_cannot_be_compared_and_refuses(
    registry: Registry, tmp_path: Path
) -> None:
    holder = _v1_in_production_then(registry, tmp_path, auc=0.99, error=0.1)
    (registry.store.root / holder["artifacts"]["model"]["file"]).write_bytes(b"tampered")
    with pytest.raises(GateError, match=rf"cannot compare with the holder {NAME}:v1: .*sha256"):
        registry.promote(NAME, 2)


def test_force_needs_a_reason_and_is_recorded_with_the_figures(
    registry: Registry, tmp_path: Path
) -> None:
    _v1_in_production_then(registry, tmp_path, auc=0.5, error=0.9)
    before = snapshot(registry.store.root)
    with pytest.raises(UsageError, match="--force needs a --reason"):
        registry.promote(NAME, 2, force=True)
    assert snapshot(registry.store.root) == before
    record = registry.promote(NAME, 2, reason="hotfix", force=True)
    assert record["forced"] is True and record["gate"]["passed"] is False
    assert len(record["gate"]["reasons"]) == 2
    assert record["gate"]["figures"]["candidate_error"] == 0.9
    logged = events.read(registry.store.events_file)[-1]
    assert logged == record and logged["reason"] == "hotfix"
    assert registry.get(f"{NAME}@production")["version"] == 2


def test_a_recorded_refusal_is_an_event_and_moves_nothing(
    registry: Registry, tmp_path: Path
) -> None:
    _v1_in_production_then(registry, tmp_path, auc=0.95, error=0.5)
    with pytest.raises(GateError):
        registry.promote(NAME, 2, reason="auto", automatic=True)
    refused = events.read(registry.store.events_file)[-1]
    assert (refused["type"], refused["from_version"], refused["to_version"]) == ("refused", 1, 2)
    assert refused["gate"]["figures"]["candidate_error"] == 0.5
    assert registry.get(f"{NAME}@production")["version"] == 1


def test_check_says_what_promote_would_do_and_changes_nothing(
    registry: Registry, tmp_path: Path
) -> None:
    _v1_in_production_then(registry, tmp_path, auc=0.95, error=0.5)
    before = snapshot(registry.store.root)
    result = registry.check(NAME, 2)
    assert not result.passed and "candidate error 0.5" in result.texts()[0]
    assert snapshot(registry.store.root) == before


def test_a_non_production_alias_has_no_gate(registry: Registry, tmp_path: Path) -> None:
    _register(registry, tmp_path, "v1", auc=0.1)
    record = registry.promote(NAME, 1, alias="staging")
    assert "gate" not in record and record["forced"] is False
    assert registry.get(f"{NAME}@staging")["version"] == 1


def _strict_json(line: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(line, parse_constant=refuse)


def test_events_log_stays_strict_json(registry: Registry, tmp_path: Path) -> None:
    _v1_in_production_then(registry, tmp_path, auc=0.96, error=0.1)
    registry.promote(NAME, 2)
    for line in registry.store.events_file.read_text().splitlines():
        _strict_json(line)


# ------------------------------------------------------------------ with real acoustic models
def _acoustic(registry: Registry, tmp_path: Path, seed: int, bias: float = 0.0) -> dict:
    folder = make_acoustic_artifacts(tmp_path / "acoustic" / str(seed), seed, bias)
    return registry.register(
        folder, "acoustic", SCOPE, MODEL_TYPE, metrics={"auc": 0.95}, extra=INFERENCE
    )


def test_the_acoustic_family_compares_real_models_on_the_candidates_windows(
    tmp_path: Path,
) -> None:
    registry = new_registry(tmp_path / "store")  # the installed families: acoustic is one
    name = f"acoustic_{SCOPE}_{MODEL_TYPE}"
    _acoustic(registry, tmp_path, 0)
    registry.promote(name, 1)
    _acoustic(registry, tmp_path, 1, bias=10.0)  # reconstructs nothing: ~4x the error
    _acoustic(registry, tmp_path, 2)
    refused = registry.check(name, 2)
    assert not refused.passed
    figures = refused.figures
    assert figures["candidate_error"] > 2 * figures["holder_error"] > 0
    passed = registry.promote(name, 3)["gate"]["figures"]
    assert passed["holder"] == f"{name}:v1"
    assert passed["candidate_error"] <= 2 * passed["holder_error"]
    again = registry.check(name, 2)  # now against v3, on v2's own windows
    assert again.figures["holder"] == f"{name}:v3" and not again.passed


def test_an_automatic_promotion_never_goes_back(registry: Registry, tmp_path: Path) -> None:
    """The pipeline re-deriving an older model must not undo a person's promotion."""
    _v1_in_production_then(registry, tmp_path, auc=0.95, error=0.1)
    _register(registry, tmp_path, "v3", auc=0.95, error=0.1)
    registry.promote(NAME, 3, reason="the experiment we liked")
    before = snapshot(registry.store.root)
    for older in (1, 2):
        kept = registry.promote(NAME, older, automatic=True)
        assert (kept["type"], kept["from_version"]) == ("kept", 3)
    assert snapshot(registry.store.root) == before
    registry.rollback(NAME)
    assert registry.promote(NAME, 3, automatic=True)["type"] == "kept"  # it held it before
    assert registry.get(f"{NAME}@production")["version"] == 1


# ------------------------------------------------ production across model types
OTHER = f"{FAMILY}_{SCOPE}_pca"  # another type of model for the same device


def _register_type(
    registry: Registry, tmp_path: Path, model_type: str, tag: str, **metrics: float
) -> dict[str, Any]:
    folder = make_artifacts(tmp_path / "art" / f"{model_type}-{tag}", tag.encode())
    return registry.register(folder, FAMILY, SCOPE, model_type, metrics=metrics)


def _convae_in_production_then_pca(
    registry: Registry, tmp_path: Path, holder_auc: float, **pca: float
) -> None:
    """NAME:v1 (auc `holder_auc`) in production, then OTHER:v1 with the `pca` metrics."""
    _register(registry, tmp_path, "v1", auc=holder_auc, error=0.1)
    registry.promote(NAME, 1)
    _register_type(registry, tmp_path, "pca", "v1", **pca)


def test_another_model_type_takes_production_from_the_device_on_its_metrics(
    registry: Registry, tmp_path: Path
) -> None:
    """A device runs one model: production is one per device, whatever the model type.
    Errors of two types are on different scales, so the gate compares their metrics."""
    _register(registry, tmp_path, "v1", auc=0.95, error=0.1)
    registry.promote(NAME, 1)
    elsewhere = registry.register(
        make_artifacts(tmp_path / "art" / "fan", b"fan"),
        FAMILY,
        "FAN-7",
        MODEL_TYPE,
        metrics={"auc": 0.91},
    )
    registry.promote(elsewhere["name"], 1)
    _register_type(registry, tmp_path, "pca", "v1", auc=0.97, error=9.0)
    record = registry.promote(OTHER, 1)
    assert record["replaced"] == f"{NAME}:v1" and record["from_version"] is None
    figures = record["gate"]["figures"]
    assert figures == {"auc": 0.97, "holder": f"{NAME}:v1", "holder_auc": 0.95}
    assert record["gate"]["notes"][0].startswith(f"errors not compared with {NAME}:v1")
    held = {m["name"]: m["version"] for m in registry.list(alias="production")}
    assert held == {OTHER: 1, elsewhere["name"]: 1}
    ended = registry.history(NAME)[-1]  # one event: no kill leaves the device with neither
    assert (ended["type"], ended["name"], ended["replaced"]) == ("promoted", OTHER, f"{NAME}:v1")
    assert registry.verify() == [] and registry.reindex()
    assert {m["name"] for m in registry.list(alias="production")} == set(held)


def test_another_model_type_with_a_lower_metric_is_refused_and_changes_nothing(
    registry: Registry, tmp_path: Path
) -> None:
    _convae_in_production_then_pca(registry, tmp_path, 0.97, auc=0.95, error=0.01)
    before = snapshot(registry.store.root)
    with pytest.raises(GateError, match=re.escape(f"auc = 0.95 is below the holder {NAME}:v1's")):
        registry.promote(OTHER, 1)
    assert snapshot(registry.store.root) == before
    assert registry.get(f"{NAME}@production")["version"] == 1


def test_a_rollback_returns_production_to_the_other_type_it_replaced(
    registry: Registry, tmp_path: Path
) -> None:
    _convae_in_production_then_pca(registry, tmp_path, 0.95, auc=0.97, error=1.0)
    _register_type(registry, tmp_path, "pca", "v2", auc=0.97, error=1.0)
    registry.promote(OTHER, 1)
    registry.promote(OTHER, 2)
    assert registry.rollback(OTHER)["to_version"] == 1
    record = registry.rollback(OTHER, reason="the pca misses bearing faults")
    assert (record["name"], record["to_version"], record["rollback"]) == (NAME, 1, True)
    assert record["replaced"] == f"{OTHER}:v1"
    assert [m["name"] for m in registry.list(alias="production")] == [NAME]
    with pytest.raises(HistoryError):  # no going round in circles
        registry.rollback(NAME)
    assert registry.verify() == []


def test_the_pipeline_never_brings_back_a_type_that_held_production_before(
    registry: Registry, tmp_path: Path
) -> None:
    """Going back is a person's decision, across types as within one."""
    _convae_in_production_then_pca(registry, tmp_path, 0.95, auc=0.97, error=1.0)
    registry.promote(OTHER, 1)
    before = snapshot(registry.store.root)
    kept = registry.promote(NAME, 1, automatic=True)
    assert kept == {"type": "kept", "name": NAME, "alias": "production", "version": 1} | {
        "from_version": None,
        "replaced": f"{OTHER}:v1",
    }
    assert snapshot(registry.store.root) == before


def test_other_aliases_stay_one_per_model(registry: Registry, tmp_path: Path) -> None:
    _register(registry, tmp_path, "v1", auc=0.95)
    _register_type(registry, tmp_path, "pca", "v1", auc=0.95)
    registry.promote(NAME, 1, alias="staging")
    registry.promote(OTHER, 1, alias="staging")
    assert {m["name"] for m in registry.list(alias="staging")} == {NAME, OTHER}


# ------------------------------------------------------------------ ceilings, reasons as data
CEILED = gate.make_policy({}, 2.0, {"rmse": 4.5})


def test_a_ceiling_refuses_above_it_and_passes_at_it() -> None:
    assert gate.check({"rmse": 4.5}, CEILED, None).passed
    result = gate.check({"rmse": 4.6}, CEILED, None)
    assert not result.passed
    assert result.texts() == ["rmse = 4.6 is above the ceiling 4.5"]
    assert [r.as_dict() for r in result.reasons] == [
        {"code": gate.ABOVE_CEILING, "metric": "rmse", "value": 4.6, "bound": 4.5}
    ]


@pytest.mark.parametrize("value", [math.nan, math.inf, "4.0", True])
def test_a_ceilinged_metric_that_is_not_a_finite_number_refuses(value: Any) -> None:
    assert gate.check({"rmse": value}, CEILED, None).reasons[0].code == gate.ABOVE_CEILING


def test_a_ceiling_on_a_metric_not_measured_is_not_applied_and_says_so() -> None:
    result = gate.check({}, CEILED, None)
    assert result.passed and result.notes == [
        "rmse not measured for this version: ceiling 4.5 not applied"
    ]


def test_against_a_holder_on_another_scale_a_ceilinged_metric_may_not_grow() -> None:
    policy = gate.make_policy({"r2": 0.5}, 2.0, {"rmse": 9.0})
    holder = gate.Comparison(
        f"{NAME}:v1", by_metrics="another type", holder_metrics={"rmse": 3.0, "r2": 0.8}
    )
    result = gate.check({"rmse": 3.5, "r2": 0.9}, policy, holder)
    assert [r.code for r in result.reasons] == [gate.ABOVE_HOLDER]
    assert result.texts() == [f"rmse = 3.5 is above the holder {NAME}:v1's 3"]
    assert gate.check({"rmse": 3.0, "r2": 0.7}, policy, holder).texts() == [
        f"r2 = 0.7 is below the holder {NAME}:v1's 0.8"
    ]


def test_every_reason_is_data_its_sentence_made_from_it() -> None:
    """A program reads the codes and figures; the sentence is only for people."""
    policy = gate.make_policy({"auc": 0.9}, 2.0, {"rmse": 4.5})
    result = gate.check({"auc": 0.5, "rmse": 5.0}, policy, gate.Comparison(f"{NAME}:v1", 3.0, 1.0))
    found = result.as_dict()
    assert [f["code"] for f in found["findings"]] == [
        gate.BELOW_FLOOR,
        gate.ABOVE_CEILING,
        gate.DEGRADED,
    ]
    assert found["findings"][2] == {
        "code": gate.DEGRADED,
        "metric": "error",
        "value": 3.0,
        "bound": 1.0,
        "holder": f"{NAME}:v1",
        "factor": 2.0,
    }
    rebuilt = [gate.Reason(**f).text() for f in found["findings"]]
    assert rebuilt == found["reasons"] == result.texts()


@pytest.mark.parametrize(
    ("ceilings", "says"),
    [({"rmse": math.nan}, "ceiling rmse=nan"), ({"1x": 2.0}, "ceiling metric '1x'")],
)
def test_a_bad_ceiling_is_named(ceilings: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidNameError, match=re.escape(says)):
        gate.make_policy({}, 2.0, ceilings)


def test_set_policy_adds_and_drops_ceilings_and_an_old_policy_reads_as_before(
    tmp_path: Path,
) -> None:
    registry = new_registry(tmp_path / "store")
    before = registry.policy()
    assert "ceilings" not in before  # a policy without ceilings reads as it always did
    registry.set_policy(ceilings={"rmse": 4.5}, reason="tabular")
    assert registry.policy()["ceilings"] == {"rmse": 4.5}
    assert registry.policy()["floors"] == before["floors"]
    with pytest.raises(UsageError, match="no ceiling on mae to drop"):
        registry.set_policy(drop_ceilings=["mae"])
    registry.set_policy(drop_ceilings=["rmse"], reason="back")
    assert "ceilings" not in registry.policy()


def test_a_family_has_its_own_policy_and_the_others_keep_the_stores(
    registry: Registry, tmp_path: Path
) -> None:
    """A family's own policy starts from the one that applied to it and judges its versions
    only; the store's goes on judging every family without one of its own."""
    registry.set_policy({"auc": 0.8}, reason="the store's")
    record = registry.set_policy(
        drop_floors=["auc"], ceilings={"error": 0.5}, family=FAMILY, reason="errors, not AUC"
    )
    assert record["family"] == FAMILY
    assert record["previous"] == {"floors": {"auc": 0.8}, "rollback_factor": 2.0}
    assert registry.policy(FAMILY)["family"] == FAMILY
    assert registry.policy(FAMILY)["ceilings"] == {"error": 0.5}
    assert registry.policy() == registry.policy("other") != registry.policy(FAMILY)
    assert "family" not in registry.policy("other")

    _register(registry, tmp_path, "v1", auc=0.1, error=0.2)  # below the store's floor
    registry.promote(NAME, 1)  # the family's own policy has no floor on auc
    _register(registry, tmp_path, "v2", auc=0.99, error=0.6)
    with pytest.raises(GateError, match=re.escape("error = 0.6 is above the ceiling 0.5")):
        registry.promote(NAME, 2)
    registry.set_policy({"auc": 0.95}, reason="the store's, stricter")  # not the family's
    assert registry.policy(FAMILY)["floors"] == {}
    with pytest.raises(InvalidNameError, match="family 'a/b'"):
        registry.set_policy(rollback_factor=3.0, family="a/b")
