"""registry.api.Registry: registration, lookups, aliases and the governed lifecycle (check,
experiments, retirement), integrity, export, reindex, gc, refusals that leave the store
byte-for-byte as it was, and many writers at once. The gate's own rules: test_registry_gate.py."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from filelock import FileLock

from registry import events, export
from registry import index as registry_index
from registry.api import Registry
from registry.errors import (
    ArtifactError,
    CorruptStoreError,
    ExportError,
    GateError,
    HistoryError,
    IntegrityError,
    InvalidNameError,
    LockTimeoutError,
    NotFoundError,
    RegistryError,
    UsageError,
)
from tests.patience import HANG_S
from tests.registry_helpers import (
    FAMILY,
    INFERENCE,
    MODEL_TYPE,
    NAME,
    SCOPE,
    TOY,
    flip_byte,
    make_acoustic_artifacts,
    make_artifacts,
    new_registry,
    snapshot,
)

REPO = Path(__file__).resolve().parents[1]
OTHER = f"{FAMILY}_FAN-7_{MODEL_TYPE}"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODEL_STORE", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return new_registry(tmp_path / "store", actor="tester", families=TOY)


class Artifacts:
    """Distinct artifact folders on demand."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.count = 0

    def __call__(self, model: bytes | None = None, **kwargs: Any) -> Path:
        self.count += 1
        return make_artifacts(
            self.base / f"a{self.count}", model or f"weights-{self.count}".encode(), **kwargs
        )


@pytest.fixture
def art(tmp_path: Path) -> Artifacts:
    return Artifacts(tmp_path / "artifacts")


GOOD = {"auc": 0.95, "error": 0.1}


def _reg(registry: Registry, folder: Path, scope: str = SCOPE, **kwargs: Any) -> dict[str, Any]:
    """Register in the toy family; by default with metrics that pass the default gate."""
    kwargs.setdefault("metrics", GOOD)
    return registry.register(folder, FAMILY, scope, MODEL_TYPE, **kwargs)


def _events(registry: Registry) -> list[dict[str, Any]]:
    return events.read(registry.store.events_file)


def _no_wal(root: Path) -> None:
    assert not (root / "index.sqlite-wal").exists()
    assert not (root / "index.sqlite-shm").exists()


# ================================================================== registration
def test_register_writes_the_flat_layout_and_records_everything(
    registry: Registry, art: Artifacts
) -> None:
    folder = art(b"the weights", optional=True)
    meta = _reg(registry, folder, metrics={"auc": 0.93}, params={"lr": 0.01})
    root = registry.store.root
    assert (meta["name"], meta["version"]) == (NAME, 1)
    assert (meta["family"], meta["scope"], meta["model_type"]) == (FAMILY, SCOPE, MODEL_TYPE)
    assert meta["actor"] == "tester"
    assert meta["metrics"] == {"auc": 0.93} and meta["params"] == {"lr": 0.01}
    expected_files = {
        "model": f"{NAME}_v1_model.pth",
        "scale": f"{NAME}_v1_scale.npy",
        "threshold": f"{NAME}_v1_threshold.npy",
        "loss_curve": f"{NAME}_v1_loss_curve.png",
        "checkpoint_best": f"checkpoints/{NAME}_v1_checkpoint_best.pth",
    }
    source = {
        "model": "model.pth",
        "scale": "scale.npy",
        "threshold": "threshold.npy",
        "loss_curve": "loss_curve.png",
        "checkpoint_best": "checkpoint_best.pth",
    }
    assert {k: v["file"] for k, v in meta["artifacts"].items()} == expected_files
    for kind, entry in meta["artifacts"].items():
        data = (folder / source[kind]).read_bytes()
        assert (root / entry["file"]).read_bytes() == data
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data)
    assert json.loads(registry.store.metadata(NAME, 1).read_text()) == meta
    assert json.loads(registry.store.versions_file.read_text()) == {NAME: 1}
    logged = _events(registry)
    assert len(logged) == 1
    assert logged[0]["type"] == "registered"
    assert (logged[0]["name"], logged[0]["version"], logged[0]["actor"]) == (NAME, 1, "tester")
    assert registry.get(NAME) == meta | {"aliases": []}
    _no_wal(root)


def test_register_only_the_required_model(registry: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "model.pth").write_bytes(b"only weights")
    meta = _reg(registry, folder)
    assert set(meta["artifacts"]) == {"model"}


def test_versions_count_up_per_name(registry: Registry, art: Artifacts) -> None:
    assert [_reg(registry, art())["version"] for _ in range(3)] == [1, 2, 3]
    assert _reg(registry, art(), scope="FAN-7")["version"] == 1
    assert _reg(registry, art())["version"] == 4
    assert json.loads(registry.store.versions_file.read_text()) == {NAME: 4, OTHER: 1}


def test_same_bytes_return_the_existing_version_and_change_nothing(
    registry: Registry, art: Artifacts, tmp_path: Path
) -> None:
    first = _reg(registry, art(b"same"), metrics={"auc": 0.9})
    before = snapshot(registry.store.root)
    again = _reg(registry, make_artifacts(tmp_path / "copy", b"same"), metrics={"auc": 0.1})
    assert again["existing"] is True
    assert again["version"] == 1
    assert {k: v for k, v in again.items() if k != "existing"} == first
    assert snapshot(registry.store.root) == before  # no new event, file or number
    assert len(_events(registry)) == 1


def test_same_weights_with_other_artifacts_is_a_new_version(
    registry: Registry, art: Artifacts
) -> None:
    _reg(registry, art(b"same"))
    assert _reg(registry, art(b"same", threshold=0.7))["version"] == 2


def test_same_bytes_under_another_name_is_registered_there(
    registry: Registry, art: Artifacts
) -> None:
    folder = art(b"same")
    _reg(registry, folder)
    other = _reg(registry, folder, scope="FAN-7")
    assert (other["name"], other["version"]) == (OTHER, 1)
    assert "existing" not in other


def test_extra_metadata_is_kept(registry: Registry, art: Artifacts) -> None:
    extra = {"comparison": {"holder_version": 1, "holder_error": 0.1, "candidate_error": 0.1}}
    meta = _reg(registry, art(), extra=extra | {"inference": {"hop": 512}})
    assert registry.get(f"{NAME}:v1")["comparison"] == extra["comparison"]
    assert meta["inference"] == {"hop": 512}


# ================================================================== lookups
def test_get_by_latest_version_and_alias(registry: Registry, art: Artifacts) -> None:
    for _ in range(3):
        _reg(registry, art())
    registry.promote(NAME, 2)
    registry.promote(NAME, 2, alias="staging")
    assert registry.get(NAME)["version"] == 3
    assert registry.get(f"{NAME}:v1")["version"] == 1
    prod = registry.get(f"{NAME}@production")
    assert prod["version"] == 2
    assert prod["aliases"] == ["production", "staging"]
    assert registry.get(NAME)["aliases"] == []


@pytest.mark.parametrize(
    "ref",
    [f"{NAME}:v9", f"{NAME}@production", "acoustic_X-1_convae", "acoustic_X-1_convae:v1"],
)
def test_get_unknown_is_not_found(registry: Registry, art: Artifacts, ref: str) -> None:
    _reg(registry, art())
    with pytest.raises(NotFoundError):
        registry.get(ref)


def test_list_filters(registry: Registry, art: Artifacts) -> None:
    _reg(registry, art())
    _reg(registry, art())
    _reg(registry, art(), scope="FAN-7")
    registry.promote(NAME, 2)
    pairs = [(m["name"], m["version"]) for m in registry.list()]
    assert sorted(pairs) == [(OTHER, 1), (NAME, 1), (NAME, 2)]
    assert [m["version"] for m in registry.list(name=NAME)] == [1, 2]
    assert [m["name"] for m in registry.list(scope="FAN-7")] == [OTHER]
    only = registry.list(alias="production")
    assert [(m["name"], m["version"], m["aliases"]) for m in only] == [(NAME, 2, ["production"])]
    assert registry.list(name="acoustic_X-1_convae") == []
    with pytest.raises(InvalidNameError):
        registry.list(name="not-a-model-name")
    with pytest.raises(InvalidNameError):
        registry.list(alias="bad alias")


def test_history_and_diff(registry: Registry, art: Artifacts) -> None:
    _reg(registry, art(), metrics={"auc": 0.9, "f1": 0.5}, params={"lr": 0.1})
    _reg(registry, art(), metrics={"auc": 0.95}, params={"lr": 0.1, "epochs": 3})
    registry.promote(NAME, 1, reason="first")
    _reg(registry, art(), scope="FAN-7")
    found = registry.history(NAME)
    assert [(e["type"], e["version"]) for e in found] == [
        ("registered", 1),
        ("registered", 2),
        ("promoted", 1),
    ]
    assert found[2]["reason"] == "first"
    assert registry.diff(NAME, 1, 2) == {  # one key per change, nothing unchanged
        "metrics.auc": [0.9, 0.95],
        "metrics.f1": [0.5, None],
        "params.epochs": [None, 3],
    }
    with pytest.raises(NotFoundError):
        registry.history("acoustic_X-1_convae")
    with pytest.raises(NotFoundError):
        registry.diff(NAME, 1, 7)
    with pytest.raises(InvalidNameError):
        registry.diff(NAME, 0, 1)


def test_store_that_does_not_exist_answers_empty_and_creates_nothing(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "nowhere")
    assert registry.list() == []
    for check in (registry.verify, registry.reindex):
        with pytest.raises(NotFoundError, match="no model store here"):
            check()
    for ref in (NAME, f"{NAME}:v1", f"{NAME}@production"):
        with pytest.raises(NotFoundError):
            registry.get(ref)
    with pytest.raises(NotFoundError):
        registry.history(NAME)
    assert not (tmp_path / "nowhere").exists()


def test_writes_on_a_missing_store_are_refused_and_create_nothing(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "nowhere")
    for call in (
        lambda: registry.promote(NAME, 1),
        lambda: registry.rollback(NAME),
        lambda: registry.retire(NAME),
        lambda: registry.check(NAME, 1),
        lambda: registry.record_check(NAME, 1, "exp-a"),
        lambda: registry.promote_experiment("exp-a"),
        lambda: registry.gc(keep=1),
    ):
        with pytest.raises(NotFoundError):
            call()
    assert registry.policy()["set"] is None
    assert not (tmp_path / "nowhere").exists()


# ================================================================== aliases
def test_promote_promote_rollback_rollback_walks_real_history(
    registry: Registry, art: Artifacts
) -> None:
    for _ in range(3):
        _reg(registry, art())
    first = registry.promote(NAME, 1, reason="initial")
    assert (first["from_version"], first["to_version"], first["alias"]) == (None, 1, "production")
    registry.promote(NAME, 3)
    registry.promote(NAME, 2)
    assert registry.get(f"{NAME}@production")["version"] == 2

    back = registry.rollback(NAME, reason="v2 is noisy")
    assert back["type"] == "rolled_back"
    assert (back["from_version"], back["to_version"]) == (2, 3)  # history, not version - 1
    assert registry.get(f"{NAME}@production")["version"] == 3

    back = registry.rollback(NAME)
    assert (back["from_version"], back["to_version"]) == (3, 1)
    assert registry.get(f"{NAME}@production")["version"] == 1

    before = snapshot(registry.store.root)
    with pytest.raises(HistoryError, match="no previous holder"):
        registry.rollback(NAME)
    assert snapshot(registry.store.root) == before
    assert registry.get(f"{NAME}@production")["version"] == 1
    kinds = [(e["type"], e.get("to_version")) for e in registry.history(NAME)[3:]]
    assert kinds == [
        ("promoted", 1),
        ("promoted", 3),
        ("promoted", 2),
        ("rolled_back", 3),
        ("rolled_back", 1),
    ]


def test_aliases_have_separate_histories(registry: Registry, art: Artifacts) -> None:
    for _ in range(3):
        _reg(registry, art())
    registry.promote(NAME, 1)
    registry.promote(NAME, 2, alias="staging")
    registry.promote(NAME, 3, alias="staging")
    registry.promote(NAME, 3)
    assert registry.rollback(NAME, alias="staging")["to_version"] == 2
    assert registry.get(f"{NAME}@production")["version"] == 3
    assert registry.rollback(NAME)["to_version"] == 1


def test_promote_to_the_current_holder_is_unchanged(registry: Registry, art: Artifacts) -> None:
    _reg(registry, art())
    registry.promote(NAME, 1)
    before = snapshot(registry.store.root)
    assert registry.promote(NAME, 1)["type"] == "unchanged"
    assert snapshot(registry.store.root) == before


def test_rollback_of_an_alias_with_no_history(registry: Registry, art: Artifacts) -> None:
    _reg(registry, art())
    before = snapshot(registry.store.root)
    with pytest.raises(HistoryError):
        registry.rollback(NAME)
    assert snapshot(registry.store.root) == before
    registry.promote(NAME, 1, alias="staging")
    before = snapshot(registry.store.root)
    with pytest.raises(HistoryError, match=f"{NAME}@staging"):
        registry.rollback(NAME, alias="staging")
    assert snapshot(registry.store.root) == before


def test_promote_a_version_that_does_not_exist(registry: Registry, art: Artifacts) -> None:
    _reg(registry, art())
    before = snapshot(registry.store.root)
    with pytest.raises(NotFoundError, match=f"{NAME}:v5"):
        registry.promote(NAME, 5)
    with pytest.raises(NotFoundError):
        registry.promote("acoustic_X-1_convae", 1)
    assert snapshot(registry.store.root) == before


def test_the_gate_guards_only_production(registry: Registry, art: Artifacts) -> None:
    _reg(registry, art())
    registry.promote(NAME, 1)
    _reg(registry, art(), metrics={"auc": 0.1, "error": 9.0})
    staged = registry.promote(NAME, 2, alias="staging")
    assert "gate" not in staged and registry.get(f"{NAME}@staging")["version"] == 2
    before = snapshot(registry.store.root)
    with pytest.raises(GateError) as caught:
        registry.promote(NAME, 2)
    assert len(caught.value.results[NAME].reasons) == 2
    assert snapshot(registry.store.root) == before


@pytest.mark.parametrize("reason", ["", "   \n"])
def test_force_needs_a_reason_that_says_something(
    registry: Registry, art: Artifacts, reason: str
) -> None:
    _reg(registry, art(), metrics={"auc": 0.1})
    registry.record_check(NAME, 1, "exp-a")
    before = snapshot(registry.store.root)
    for call in (
        lambda: registry.promote(NAME, 1, reason=reason, force=True),
        lambda: registry.promote(NAME, 1, alias="staging", reason=reason, force=True),
        lambda: registry.promote_experiment("exp-a", reason=reason, force=True),
    ):
        with pytest.raises(UsageError, match="--force needs a --reason"):
            call()
    assert snapshot(registry.store.root) == before


def test_a_comparison_given_at_registration_is_only_metadata(
    registry: Registry, art: Artifacts
) -> None:
    """The registry measures the candidate against the holder itself; a figure the caller
    wrote into the metadata decides nothing."""
    _reg(registry, art())
    registry.promote(NAME, 1)
    claim = {"comparison": {"holder_version": 1, "candidate_error": 0.1, "holder_error": 0.1}}
    _reg(registry, art(), metrics={"auc": 0.95, "error": 0.5}, extra=claim)
    assert registry.get(f"{NAME}:v2")["comparison"] == claim["comparison"]
    with pytest.raises(
        GateError, match=re.escape(f"candidate error 0.5 > holder {NAME}:v1 error 0.1 x 2")
    ):
        registry.promote(NAME, 2)


def test_a_policy_is_store_wide_and_survives_reindex(registry: Registry, art: Artifacts) -> None:
    _reg(registry, art(), metrics={"auc": 0.85, "error": 0.1})
    registry.set_policy({"auc": 0.8}, reason="pilot site")
    assert [e["type"] for e in registry.history(NAME)] == ["registered"]
    registry.reindex()
    assert registry.policy()["floors"] == {"auc": 0.8}
    assert registry.promote(NAME, 1)["gate"]["passed"] is True


# ================================================================== check and experiments
def test_check_changes_nothing_and_agrees_with_promote(registry: Registry, art: Artifacts) -> None:
    _reg(registry, art())
    registry.promote(NAME, 1)
    _reg(registry, art(), metrics={"auc": 0.95, "error": 0.5})
    _reg(registry, art(), metrics={"auc": 0.95, "error": 0.15})
    before = snapshot(registry.store.root)
    refused = registry.check(NAME, 2)
    assert not refused.passed and refused.figures["candidate_error"] == 0.5
    passed = registry.check(NAME, 3)
    assert passed.passed
    assert snapshot(registry.store.root) == before
    assert registry.promote(NAME, 3)["gate"] == passed.as_dict()


def test_check_of_a_version_that_does_not_exist(registry: Registry, art: Artifacts) -> None:
    _reg(registry, art())
    with pytest.raises(NotFoundError, match=f"{NAME}:v4"):
        registry.check(NAME, 4)


def test_check_answers_for_the_holder_and_for_an_unguarded_alias(
    registry: Registry, art: Artifacts
) -> None:
    _reg(registry, art())
    _reg(registry, art(), metrics={"auc": 0.1})
    registry.promote(NAME, 1)
    assert registry.check(NAME, 1).passed
    assert registry.check(NAME, 2, alias="staging").passed


def test_record_check_is_an_event_and_moves_nothing(registry: Registry, art: Artifacts) -> None:
    _reg(registry, art())
    registry.promote(NAME, 1)
    _reg(registry, art(), metrics={"auc": 0.95, "error": 0.5})
    aliases = registry.get(f"{NAME}:v1")["aliases"]
    record = registry.record_check(NAME, 2, "exp-a")
    assert (record["type"], record["experiment"], record["actor"]) == ("checked", "exp-a", "tester")
    assert (record["alias"], record["from_version"], record["to_version"]) == ("production", 1, 2)
    assert record["gate"]["passed"] is False
    assert record["gate"]["reasons"] == registry.check(NAME, 2).texts()
    assert _events(registry)[-1] == record
    assert registry.get(f"{NAME}:v1")["aliases"] == aliases
    assert registry.get(f"{NAME}@production")["version"] == 1
    staged = registry.record_check(NAME, 2, None, alias="staging")
    assert staged["gate"] == {"passed": True, "reasons": [], "findings": [], "figures": {}}
    assert registry.list(alias="staging") == []


@pytest.fixture
def experiment(registry: Registry, art: Artifacts) -> Registry:
    """NAME v1 in production; exp-a checked NAME v2 then v3, and OTHER v1; exp-b NAME v4."""
    _reg(registry, art())
    registry.promote(NAME, 1)
    for _ in range(3):
        _reg(registry, art())
    _reg(registry, art(), scope="FAN-7")
    registry.record_check(NAME, 2, "exp-a")
    registry.record_check(NAME, 3, "exp-a")
    registry.record_check(OTHER, 1, "exp-a")
    registry.record_check(NAME, 4, "exp-b")
    return registry


def _production(registry: Registry) -> dict[str, int]:
    return {m["name"]: m["version"] for m in registry.list(alias="production")}


def test_promote_experiment_promotes_its_latest_candidate_of_each_model(
    experiment: Registry,
) -> None:
    records = experiment.promote_experiment("exp-a", reason="sweep winner")
    moved = {(r["name"], r["from_version"], r["to_version"], r["reason"]) for r in records}
    assert moved == {(NAME, 1, 3, "sweep winner"), (OTHER, None, 1, "sweep winner")}
    assert all(r["type"] == "promoted" and r["gate"]["passed"] for r in records)
    assert _production(experiment) == {NAME: 3, OTHER: 1}
    again = experiment.promote_experiment("exp-a")
    assert [r["type"] for r in again] == ["unchanged", "unchanged"]


def test_promote_experiment_moves_nothing_when_one_is_refused(
    experiment: Registry, art: Artifacts
) -> None:
    _reg(experiment, art(), metrics={"auc": 0.95, "error": 0.5})
    experiment.record_check(NAME, 5, "exp-a")
    before = snapshot(experiment.store.root)
    with pytest.raises(GateError, match="experiment 'exp-a': nothing promoted") as caught:
        experiment.promote_experiment("exp-a")
    assert set(caught.value.results) == {NAME}
    assert not caught.value.results[NAME].passed
    assert snapshot(experiment.store.root) == before
    records = experiment.promote_experiment("exp-a", reason="accepted by hand", force=True)
    assert {(r["name"], r["to_version"], r["forced"]) for r in records} == {
        (NAME, 5, True),
        (OTHER, 1, False),  # it passed the gate: nothing was forced
    }
    assert _production(experiment) == {NAME: 5, OTHER: 1}


def test_promote_experiment_by_scope(experiment: Registry) -> None:
    records = experiment.promote_experiment("exp-a", scope="FAN-7")
    assert [(r["name"], r["to_version"]) for r in records] == [(OTHER, 1)]
    assert _production(experiment) == {NAME: 1, OTHER: 1}


def test_promote_experiment_to_another_alias_has_no_gate(experiment: Registry) -> None:
    records = experiment.promote_experiment("exp-b", alias="staging")
    assert [(r["alias"], r["to_version"]) for r in records] == [("staging", 4)]
    assert "gate" not in records[0]


@pytest.mark.parametrize(("name", "scope"), [("nope", None), ("exp-a", "FAN-9")])
def test_promote_experiment_without_candidates_changes_nothing(
    experiment: Registry, name: str, scope: str | None
) -> None:
    before = snapshot(experiment.store.root)
    with pytest.raises(NotFoundError, match=f"experiment '{name}': no candidate"):
        experiment.promote_experiment(name, scope=scope)
    assert snapshot(experiment.store.root) == before


def test_promote_experiment_after_gc_of_an_earlier_candidate(experiment: Registry) -> None:
    assert f"{NAME}:v2" in experiment.gc(keep=2)
    records = experiment.promote_experiment("exp-a")
    assert {(r["name"], r["to_version"]) for r in records} == {(NAME, 3), (OTHER, 1)}


def test_list_by_experiment(
    registry: Registry, art: Artifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    _reg(registry, art())
    monkeypatch.setenv("DVC_EXP_NAME", "exp-a")
    _reg(registry, art())
    _reg(registry, art(), scope="FAN-7")
    monkeypatch.setenv("DVC_EXP_NAME", "exp-b")
    _reg(registry, art())
    found = registry.list(experiment="exp-a")
    assert [(m["name"], m["version"]) for m in found] == [(OTHER, 1), (NAME, 2)]
    assert all(m["lineage"]["dvc_experiment"] == "exp-a" for m in found)
    assert [m["version"] for m in registry.list(name=NAME, experiment="exp-b")] == [3]
    assert registry.list(experiment="exp-c") == []


# ================================================================== retire
def test_retire_takes_the_alias_off_and_keeps_the_versions(
    registry: Registry, art: Artifacts
) -> None:
    _reg(registry, art())
    _reg(registry, art())
    registry.promote(NAME, 1)
    registry.promote(NAME, 2)
    record = registry.retire(NAME, reason="device removed")
    assert (record["type"], record["version"], record["alias"]) == ("retired", 2, "production")
    assert (record["from_version"], record["reason"], record["actor"]) == (
        2,
        "device removed",
        "tester",
    )
    assert registry.history(NAME)[-1] == record
    with pytest.raises(NotFoundError):
        registry.get(f"{NAME}@production")
    assert registry.list(alias="production") == []
    assert [m["version"] for m in registry.list()] == [1, 2] and registry.verify() == []
    before = snapshot(registry.store.root)
    with pytest.raises(HistoryError, match="no previous holder"):
        registry.rollback(NAME)
    assert snapshot(registry.store.root) == before
    registry.reindex()
    assert registry.list(alias="production") == []


def test_retire_of_an_alias_nobody_holds_changes_nothing(
    registry: Registry, art: Artifacts
) -> None:
    _reg(registry, art())
    registry.promote(NAME, 1, alias="staging")
    before = snapshot(registry.store.root)
    with pytest.raises(NotFoundError, match="has no alias 'production'; nothing retired"):
        registry.retire(NAME)
    assert snapshot(registry.store.root) == before
    registry.retire(NAME, alias="staging")
    with pytest.raises(NotFoundError):
        registry.retire(NAME, alias="staging")


def test_after_retirement_production_starts_afresh(registry: Registry, art: Artifacts) -> None:
    _reg(registry, art())
    registry.promote(NAME, 1)
    registry.retire(NAME)
    _reg(registry, art(), metrics={"auc": 0.95, "error": 9.0})
    record = registry.promote(NAME, 2)
    assert record["from_version"] is None and "holder" not in record["gate"]["figures"]
    with pytest.raises(HistoryError):
        registry.rollback(NAME)


# ================================================================== integrity
def test_flipped_byte_is_reported_by_verify_and_refused_by_promote_and_export(
    registry: Registry, art: Artifacts, tmp_path: Path
) -> None:
    _reg(registry, art())
    _reg(registry, art())
    registry.promote(NAME, 1)
    assert registry.verify() == []
    weights = registry.store.root / f"{NAME}_v2_model.pth"
    flip_byte(weights)
    assert registry.verify() == [
        {
            "name": NAME,
            "version": 2,
            "kind": "model",
            "file": str(weights),
            "problem": "sha256 mismatch",
            "repair": "restore it from a backup of the store",
        }
    ]
    assert registry.verify(NAME) == registry.verify()
    assert registry.verify(OTHER) == []

    before = snapshot(registry.store.root)
    with pytest.raises(IntegrityError) as caught:
        registry.promote(NAME, 2)
    assert str(weights) in str(caught.value) and "sha256" in str(caught.value)
    with pytest.raises(IntegrityError):
        registry.promote(NAME, 2, alias="staging", reason="try anyway", force=True)
    with pytest.raises(RegistryError, match=re.escape(f"{weights}: missing or does not match")):
        registry.export(f"{NAME}:v2", tmp_path / "deploy")
    assert snapshot(registry.store.root) == before
    assert _shipped(tmp_path / "deploy") == {}
    assert registry.get(f"{NAME}@production")["version"] == 1


def test_truncated_or_missing_file_is_refused(
    registry: Registry, art: Artifacts, tmp_path: Path
) -> None:
    _reg(registry, art())
    _reg(registry, art())
    threshold = registry.store.root / f"{NAME}_v1_threshold.npy"
    threshold.write_bytes(threshold.read_bytes()[:10])
    weights = registry.store.root / f"{NAME}_v2_model.pth"
    weights.unlink()
    problems = {(p["version"], p["kind"], p["problem"]) for p in registry.verify()}
    assert problems == {(1, "threshold", "sha256 mismatch"), (2, "model", "missing")}
    before = snapshot(registry.store.root)
    for version, path in ((1, threshold), (2, weights)):
        with pytest.raises(IntegrityError):
            registry.promote(NAME, version)
        with pytest.raises(RegistryError, match=re.escape(str(path))):
            registry.export(f"{NAME}:v{version}", tmp_path / "deploy")
    assert snapshot(registry.store.root) == before
    assert _shipped(tmp_path / "deploy") == {}


def test_read_returns_the_verified_bytes_of_one_artifact(
    registry: Registry, art: Artifacts
) -> None:
    meta = _reg(registry, art(b"exact bytes"))
    assert registry.read(meta, "model") == b"exact bytes"
    with pytest.raises(ArtifactError, match=f"{NAME}:v1 has no loss_curve artifact"):
        registry.read(meta, "loss_curve")
    flip_byte(registry.store.root / meta["artifacts"]["model"]["file"])
    with pytest.raises(IntegrityError, match="sha256"):
        registry.read(meta, "model")


def test_export_refuses_a_version_with_any_tampered_artifact(
    registry: Registry, art: Artifacts, tmp_path: Path
) -> None:
    _reg(registry, art(optional=True))
    flip_byte(registry.store.root / "checkpoints" / f"{NAME}_v1_checkpoint_best.pth")
    with pytest.raises(IntegrityError):
        registry.promote(NAME, 1)
    with pytest.raises(RegistryError, match="checkpoint_best"):
        registry.export(f"{NAME}:v1", tmp_path / "deploy")


def test_rollback_to_a_tampered_holder_is_refused(registry: Registry, art: Artifacts) -> None:
    _reg(registry, art())
    _reg(registry, art())
    registry.promote(NAME, 1)
    registry.promote(NAME, 2)
    flip_byte(registry.store.root / f"{NAME}_v1_model.pth", offset=3)
    before = snapshot(registry.store.root)
    with pytest.raises(IntegrityError):
        registry.rollback(NAME)
    assert snapshot(registry.store.root) == before


# ================================================================== export
def _shipped(deploy: Path) -> dict[str, str]:
    """Scope -> model of every bundle the exporter has in service in `deploy`."""
    return {
        scope: json.loads((folder / export.MANIFEST).read_text())["model"]
        for scope, folder in export.exported(deploy).items()
    }


def _bundles(deploy: Path, scope: str = SCOPE) -> list[str]:
    """Models of the bundles kept for `scope`, oldest first."""
    folders = sorted(p for p in (deploy / export.OWN / scope).iterdir() if p.is_dir())
    return [json.loads((f / export.MANIFEST).read_text())["model"] for f in folders]


def test_export_writes_the_family_layout_behind_a_link(
    registry: Registry, art: Artifacts, tmp_path: Path
) -> None:
    _reg(registry, art(b"prod weights", threshold=1.25))
    registry.promote(NAME, 1)
    deploy = tmp_path / "deploy"
    target = registry.export(f"{NAME}@production", deploy)
    assert target == deploy / SCOPE and target.is_symlink()
    bundle = target.resolve()
    assert os.readlink(target) == f"{export.OWN}/{SCOPE}/{bundle.name}"
    assert sorted(p.name for p in bundle.iterdir()) == ["bundle.json", "model.bin", "threshold.npy"]
    assert (target / "model.bin").read_bytes() == b"prod weights"
    np.testing.assert_array_equal(np.load(target / "threshold.npy"), 1.25)
    assert json.loads((target / "bundle.json").read_text()) == {
        "device": SCOPE,
        "model": f"{NAME}:v1",
        "sha256": {
            file: hashlib.sha256((target / file).read_bytes()).hexdigest()
            for file in ("model.bin", "threshold.npy")
        },
    }
    assert sorted(p.name for p in deploy.iterdir()) == [export.OWN, SCOPE]


def test_export_keeps_earlier_bundles_up_to_the_limit(
    registry: Registry, art: Artifacts, tmp_path: Path
) -> None:
    deploy = tmp_path / "deploy"
    for version in range(1, 5):
        _reg(registry, art())
        registry.promote(NAME, version)
        registry.export(f"{NAME}@production", deploy, keep_backups=2)
    assert _shipped(deploy) == {SCOPE: f"{NAME}:v4"}
    assert _bundles(deploy) == [f"{NAME}:v2", f"{NAME}:v3", f"{NAME}:v4"]
    registry.export(f"{NAME}:v1", deploy, keep_backups=1)
    assert _shipped(deploy) == {SCOPE: f"{NAME}:v1"}
    assert _bundles(deploy) == [f"{NAME}:v4", f"{NAME}:v1"]


def test_exporting_an_intact_bundle_again_is_unchanged(
    registry: Registry, art: Artifacts, tmp_path: Path
) -> None:
    _reg(registry, art(b"prod weights"))
    registry.promote(NAME, 1)
    deploy = tmp_path / "deploy"
    link = os.readlink(registry.export(NAME, deploy))
    assert os.readlink(registry.export(NAME, deploy)) == link
    assert registry.export_all(deploy) == {SCOPE: {"model": f"{NAME}:v1", "status": "unchanged"}}
    assert _bundles(deploy) == [f"{NAME}:v1"]
    flip_byte(deploy / SCOPE / "model.bin")
    assert registry.export_all(deploy)[SCOPE]["status"] == "exported"
    assert os.readlink(deploy / SCOPE) != link
    assert (deploy / SCOPE / "model.bin").read_bytes() == b"prod weights"


def test_export_without_the_family_installed_is_refused(art: Artifacts, tmp_path: Path) -> None:
    registry = new_registry(tmp_path / "store", families={})
    _reg(registry, art())
    with pytest.raises(ExportError, match="no exporter is installed for family 'toy'"):
        registry.export(f"{NAME}:v1", tmp_path / "deploy")
    assert _shipped(tmp_path / "deploy") == {}


def test_export_all_ships_every_holder_and_takes_a_retired_scope_out_of_service(
    registry: Registry, art: Artifacts, tmp_path: Path
) -> None:
    deploy = tmp_path / "deploy"
    _reg(registry, art())
    _reg(registry, art(), scope="FAN-7")
    _reg(registry, art(), scope="FAN-8")
    registry.promote(NAME, 1)
    registry.promote(OTHER, 1)
    assert registry.export_all(deploy) == {
        "FAN-7": {"model": f"{OTHER}:v1", "status": "exported"},
        SCOPE: {"model": f"{NAME}:v1", "status": "exported"},
    }
    registry.retire(OTHER, reason="machine scrapped")
    assert registry.export_all(deploy, family="acoustic") == {}
    assert _shipped(deploy) == {"FAN-7": f"{OTHER}:v1", SCOPE: f"{NAME}:v1"}
    assert registry.export_all(deploy) == {
        "FAN-7": {"model": f"{OTHER}:v1", "status": "removed"},
        SCOPE: {"model": f"{NAME}:v1", "status": "unchanged"},
    }
    assert _shipped(deploy) == {SCOPE: f"{NAME}:v1"}
    assert not (deploy / "FAN-7").exists() and not (deploy / "FAN-7").is_symlink()
    assert _bundles(deploy, "FAN-7") == [f"{OTHER}:v1"]


# ================================================================== reindex and gc
def _answers(registry: Registry, aliases: dict[str, list[str]]) -> dict[str, Any]:
    found: dict[str, Any] = {"list": registry.list()}
    for meta in found["list"]:
        name, version = meta["name"], meta["version"]
        found[f"{name}:v{version}"] = registry.get(f"{name}:v{version}")
        found[name] = registry.get(name)
    for name, names in aliases.items():
        for alias in names:
            found[f"{name}@{alias}"] = registry.get(f"{name}@{alias}")
    found["versions.json"] = registry.store.versions_file.read_bytes()
    return found


def test_reindex_restores_identical_answers_after_gc(registry: Registry, art: Artifacts) -> None:
    for _ in range(6):
        _reg(registry, art(optional=True))
    for _ in range(2):
        _reg(registry, art(), scope="FAN-7")
    registry.promote(NAME, 1)
    registry.promote(NAME, 3)
    registry.promote(NAME, 2, alias="staging")
    registry.promote(NAME, 5, alias="staging")
    registry.rollback(NAME, alias="staging")
    registry.promote(OTHER, 1)

    removed = registry.gc(keep=2)
    assert removed == [f"{NAME}:v4"]  # 1, 3: production history; 2: staging; 5, 6: newest
    archived = [e for e in _events(registry) if e["type"] == "archived"]
    assert [(e["name"], e["version"], e["reason"]) for e in archived] == [(NAME, 4, "gc")]
    assert not any(registry.store.root.rglob(f"{NAME}_v4_*"))
    with pytest.raises(NotFoundError):
        registry.get(f"{NAME}:v4")

    aliases = {NAME: ["production", "staging"], OTHER: ["production"]}
    before = _answers(registry, aliases)
    registry.store.index_file.unlink()
    registry.store.versions_file.unlink()
    with pytest.raises(CorruptStoreError, match="reindex"):
        registry.list()
    assert registry.reindex() == {NAME: 6, OTHER: 2}
    assert _answers(registry, aliases) == before
    _no_wal(registry.store.root)
    with pytest.raises(NotFoundError):
        registry.get(f"{NAME}:v4")  # archived stays gone
    assert _reg(registry, art())["version"] == 7  # numbers are not reused


def test_reindex_repairs_a_corrupt_index(registry: Registry, art: Artifacts) -> None:
    _reg(registry, art())
    _reg(registry, art())
    registry.promote(NAME, 2)
    before = _answers(registry, {NAME: ["production"]})
    registry.store.index_file.write_bytes(b"\x00garbage, not sqlite\xff" * 64)
    registry.reindex()
    assert _answers(registry, {NAME: ["production"]}) == before


def test_reindex_refuses_when_a_registered_version_lost_its_metadata(
    registry: Registry, art: Artifacts
) -> None:
    _reg(registry, art())
    registry.store.metadata(NAME, 1).unlink()
    with pytest.raises(CorruptStoreError, match=f"the metadata of {NAME}:v1 is missing"):
        registry.reindex()


def test_gc_never_removes_alias_holders_or_their_history(
    registry: Registry, art: Artifacts
) -> None:
    for _ in range(5):
        _reg(registry, art())
    registry.promote(NAME, 1)
    registry.promote(NAME, 2)
    registry.promote(NAME, 3, alias="staging")
    assert registry.gc(keep=1) == [f"{NAME}:v4"]
    assert [m["version"] for m in registry.list()] == [1, 2, 3, 5]
    assert registry.gc(keep=1) == []
    assert registry.verify() == []
    assert registry.rollback(NAME)["to_version"] == 1


def test_gc_keeps_every_version_an_alias_ever_held_and_the_parents_of_kept_ones(
    registry: Registry, art: Artifacts
) -> None:
    for _ in range(6):
        _reg(registry, art())
    _reg(registry, art(), parent_version=6)
    _reg(registry, art(), parent_version=7)
    registry.promote(NAME, 1)
    registry.promote(NAME, 2)
    registry.rollback(NAME)
    registry.promote(NAME, 3, alias="staging")
    registry.retire(NAME, alias="staging")
    before = snapshot(registry.store.root)
    assert registry.gc(keep=1, dry_run=True) == [f"{NAME}:v4", f"{NAME}:v5"]
    assert snapshot(registry.store.root) == before
    assert registry.gc(keep=1) == [f"{NAME}:v4", f"{NAME}:v5"]
    assert [m["version"] for m in registry.list()] == [1, 2, 3, 6, 7, 8]
    assert registry.verify() == []
    assert registry.gc(keep=1, dry_run=True) == []


def test_gc_records_the_archive_before_it_deletes_files(
    registry: Registry, art: Artifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gc that dies while deleting leaves an archived version with files left over, never
    a version the store still offers whose files are gone."""
    for _ in range(3):
        _reg(registry, art())
    unlink = Path.unlink

    def dies_on_v1(path: Path, missing_ok: bool = False) -> None:
        if path.name == f"{NAME}_v1_model.pth":
            raise OSError("killed")
        unlink(path, missing_ok=missing_ok)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "unlink", dies_on_v1)
        with pytest.raises(OSError, match="killed"):
            registry.gc(keep=1)
    archived = [(e["type"], e["version"]) for e in _events(registry)][-2:]
    assert archived == [("archived", 1), ("archived", 2)]
    left = sorted(registry.store.root.glob(f"{NAME}_v[12]_*"))
    assert registry.store.root / f"{NAME}_v1_model.pth" in left
    assert sorted((p["file"], p["repair"]) for p in registry.verify()) == [
        (str(path), "registry gc") for path in left
    ]
    registry.reindex()  # deletes nothing
    assert all(p.exists() for p in left) and [m["version"] for m in registry.list()] == [3]
    assert registry.gc() == [p.name for p in left]
    assert not any(p.exists() for p in left) and registry.verify() == []
    with pytest.raises(NotFoundError):
        registry.get(f"{NAME}:v1")


def test_gc_keep_must_be_positive(registry: Registry, art: Artifacts) -> None:
    _reg(registry, art())
    before = snapshot(registry.store.root)
    for keep in (0, -1):
        with pytest.raises(UsageError, match=f"keep {keep}"):
            registry.gc(keep=keep)
        with pytest.raises(UsageError):
            registry.gc(keep=keep, dry_run=True)
    assert snapshot(registry.store.root) == before


# ================================================================== refusals: nothing changes
@pytest.fixture
def populated(registry: Registry, art: Artifacts) -> Registry:
    _reg(registry, art(optional=True), metrics={"auc": 0.95})
    _reg(registry, art(), metrics={"auc": 0.96})
    registry.promote(NAME, 1)
    return registry


BAD_COMPONENTS = ["a/b", "..", "a_b", "a b", "", "../etc", ".hidden", "x" * 65]


@pytest.mark.parametrize("bad", BAD_COMPONENTS)
def test_register_refuses_bad_names(populated: Registry, art: Artifacts, bad: str) -> None:
    folder = art()
    before = snapshot(populated.store.root)
    for where in ("family", "scope", "model_type"):
        names = {"family": FAMILY, "scope": SCOPE, "model_type": MODEL_TYPE} | {where: bad}
        with pytest.raises(InvalidNameError) as caught:
            populated.register(folder, **names)
        message = str(caught.value)
        assert message.startswith(f"{where.replace('_', ' ')} {bad!r} is not a valid device code")
        assert "\n" not in message
    assert snapshot(populated.store.root) == before


BAD_REFS = [
    "",
    "acoustic/LT-2_convae",
    "../../etc_passwd_x",
    "acoustic_LT-2",
    "acoustic_LT_2_convae",
    "acoustic_LT 2_convae",
    f"{NAME}:v0",
    f"{NAME}:3",
    f"{NAME}:vx",
    f"{NAME}@",
    f"{NAME}@a_b",
    f"{NAME}@../x",
    f"{NAME}:v1@production",
    f" {NAME}",
]


@pytest.mark.parametrize("ref", BAD_REFS)
def test_get_refuses_bad_refs(populated: Registry, ref: str) -> None:
    before = snapshot(populated.store.root)
    with pytest.raises(InvalidNameError) as caught:
        populated.get(ref)
    assert "\n" not in str(caught.value)
    assert snapshot(populated.store.root) == before


@pytest.mark.parametrize("name", ["acoustic/x_LT-2_convae", "a_b", "..", "a b_c_d", ""])
def test_writes_refuse_bad_model_names(populated: Registry, name: str) -> None:
    before = snapshot(populated.store.root)
    for call in (
        lambda: populated.promote(name, 1),
        lambda: populated.rollback(name),
        lambda: populated.retire(name),
        lambda: populated.check(name, 1),
        lambda: populated.record_check(name, 1, "exp-a"),
        lambda: populated.history(name),
    ):
        with pytest.raises(InvalidNameError):
            call()
    for alias in ("../prod", "a_b", ""):
        with pytest.raises(InvalidNameError):
            populated.promote(NAME, 1, alias=alias)
        with pytest.raises(InvalidNameError):
            populated.promote_experiment("exp-a", alias=alias)
        with pytest.raises(InvalidNameError):
            populated.retire(NAME, alias=alias)
    with pytest.raises(InvalidNameError):
        populated.promote(NAME, 0)
    assert snapshot(populated.store.root) == before


def test_missing_model_is_refused(populated: Registry, tmp_path: Path) -> None:
    folder = make_artifacts(tmp_path / "nomodel")
    (folder / "model.pth").unlink()
    before = snapshot(populated.store.root)
    with pytest.raises(ArtifactError, match=r"missing model\.pth"):
        _reg(populated, folder)
    assert snapshot(populated.store.root) == before


@pytest.mark.parametrize("extra", ["notes.txt", ".DS_Store", "model.pt"])
def test_unexpected_file_is_refused(populated: Registry, art: Artifacts, extra: str) -> None:
    folder = art()
    (folder / extra).write_bytes(b"?")
    before = snapshot(populated.store.root)
    with pytest.raises(ArtifactError) as caught:
        _reg(populated, folder)
    assert f"unexpected file(s) {extra}" in str(caught.value)
    assert "model.pth" in str(caught.value)
    assert snapshot(populated.store.root) == before


def test_a_family_that_is_not_installed_has_its_files_stored_as_named(tmp_path: Path) -> None:
    registry = new_registry(tmp_path / "store", families={})
    folder = tmp_path / "tabular"
    folder.mkdir()
    (folder / "model.joblib").write_bytes(b"a fitted regressor")
    (folder / "scaler.json").write_text("{}")
    meta = registry.register(folder, "tabular", "task-1", "ridge")
    assert {kind: a["file"] for kind, a in meta["artifacts"].items()} == {
        "model": "tabular_task-1_ridge_v1_model.joblib",
        "scaler": "tabular_task-1_ridge_v1_scaler.json",
    }
    assert registry.read(meta, "scaler") == b"{}"
    before = snapshot(registry.store.root)
    for odd, message in (
        ("model.bin", "more than one file of kind model"),
        (".DS_Store", r"unexpected file\(s\) \.DS_Store; expected only files named \{kind\}"),
        ("Notes.TXT", r"unexpected file\(s\) Notes\.TXT"),
    ):
        (folder / odd).write_bytes(b"?")
        with pytest.raises(ArtifactError, match=message):
            registry.register(folder, "tabular", "task-1", "ridge")
        (folder / odd).unlink()
    (folder / "model.joblib").unlink()
    with pytest.raises(ArtifactError, match=r"missing model\.\*"):
        registry.register(folder, "tabular", "task-1", "ridge")
    assert snapshot(registry.store.root) == before


def test_an_installed_family_declares_its_files(tmp_path: Path) -> None:
    """The acoustic family's own kinds: a trained network's best checkpoint is kept apart."""
    registry = new_registry(tmp_path / "store")
    folder = make_acoustic_artifacts(tmp_path / "acoustic")
    (folder / "checkpoint_best.pth").write_bytes((folder / "model.pth").read_bytes())
    meta = registry.register(folder, "acoustic", SCOPE, MODEL_TYPE, extra=INFERENCE)
    files = {kind: a["file"] for kind, a in meta["artifacts"].items()}
    assert (
        files["checkpoint_best"]
        == f"checkpoints/acoustic_{SCOPE}_{MODEL_TYPE}_v1_checkpoint_best.pth"
    )
    assert sorted(files) == ["checkpoint_best", "eval_windows", "model", "scale", "threshold"]


def test_not_a_folder_is_refused(populated: Registry, tmp_path: Path) -> None:
    before = snapshot(populated.store.root)
    with pytest.raises(ArtifactError, match="not a folder"):
        _reg(populated, tmp_path / "does-not-exist")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ArtifactError):
        _reg(populated, tmp_path / "file")
    assert snapshot(populated.store.root) == before


def test_unreadable_artifact_is_an_artifact_error(populated: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "dir-model"
    (folder / "model.pth").mkdir(parents=True)
    before = snapshot(populated.store.root)
    with pytest.raises(ArtifactError):
        _reg(populated, folder)
    assert snapshot(populated.store.root) == before


@pytest.mark.parametrize(
    "content", [b"{not json", b"[1, 2]", b'{"x": "1"}', b'{"x": true}', b"\xff\xfe"]
)
def test_corrupt_versions_json_refuses_registration(
    populated: Registry, art: Artifacts, content: bytes
) -> None:
    populated.store.versions_file.write_bytes(content)
    folder = art()
    before = snapshot(populated.store.root)
    with pytest.raises(CorruptStoreError) as caught:
        _reg(populated, folder)
    assert "versions.json" in str(caught.value)
    assert "registry reindex" in str(caught.value)
    assert snapshot(populated.store.root) == before
    populated.reindex()
    assert _reg(populated, folder)["version"] == 3


def test_corrupt_index_refuses_reads_and_writes_until_reindex(
    populated: Registry, art: Artifacts, tmp_path: Path
) -> None:
    good = populated.list()
    populated.store.index_file.write_bytes(b"SQLite format 2\x00 but not really" * 200)
    folder = art()
    before = snapshot(populated.store.root)
    calls = [
        lambda: populated.list(),
        lambda: populated.get(NAME),
        lambda: populated.get(f"{NAME}@production"),
        lambda: _reg(populated, folder),
        lambda: populated.promote(NAME, 2),
        lambda: populated.rollback(NAME),
        lambda: populated.retire(NAME),
        lambda: populated.check(NAME, 2),
        lambda: populated.record_check(NAME, 2, "exp-a"),
        lambda: populated.list(experiment="exp-a"),
        lambda: populated.gc(keep=1),
        lambda: populated.export(NAME, tmp_path / "deploy"),
        lambda: populated.export_all(tmp_path / "deploy"),
    ]
    for call in calls:
        with pytest.raises(CorruptStoreError, match="registry reindex"):
            call()
    assert snapshot(populated.store.root) == before
    assert _shipped(tmp_path / "deploy") == {}
    assert {p["repair"] for p in populated.verify()} == {"registry reindex"}
    populated.reindex()
    assert populated.list() == good
    assert _reg(populated, folder)["version"] == 3


def test_held_lock_times_out_quickly_and_changes_nothing(
    populated: Registry, art: Artifacts, tmp_path: Path
) -> None:
    folder = art()
    impatient = Registry(populated.store.root, lock_timeout=0.2)
    before = snapshot(populated.store.root)
    with FileLock(populated.store.root / ".lock"):
        for call in (
            lambda: _reg(impatient, folder),
            lambda: impatient.promote(NAME, 2),
            lambda: impatient.rollback(NAME),
            lambda: impatient.retire(NAME),
            lambda: impatient.set_policy({"auc": 0.5}),
            lambda: impatient.promote_experiment("exp-a"),
            lambda: impatient.gc(keep=1),
            lambda: impatient.reindex(),
        ):
            start = time.monotonic()
            with pytest.raises(LockTimeoutError, match="nothing was changed"):
                call()
            assert time.monotonic() - start >= 0.2  # it waited its timeout, then gave up
        assert impatient.get(NAME)["version"] == 2  # reads do not wait for the lock
    assert snapshot(populated.store.root) == before
    assert _reg(impatient, folder)["version"] == 3


def test_lock_held_by_another_process(populated: Registry, art: Artifacts) -> None:
    code = (
        "import sys, time; from filelock import FileLock\n"
        "with FileLock(sys.argv[1]):\n"
        "    print('held', flush=True); time.sleep(3600)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(populated.store.root / ".lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        folder = art()
        before = snapshot(populated.store.root)
        with pytest.raises(LockTimeoutError):
            _reg(Registry(populated.store.root, lock_timeout=0.2), folder)
        assert snapshot(populated.store.root) == before
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_every_error_is_a_registry_error() -> None:
    for error in (
        ArtifactError,
        CorruptStoreError,
        ExportError,
        GateError,
        HistoryError,
        IntegrityError,
        InvalidNameError,
        LockTimeoutError,
        NotFoundError,
        UsageError,
    ):
        assert issubclass(error, RegistryError)


def test_connections_are_closed_after_each_operation(
    registry: Registry, art: Artifacts, tmp_path: Path
) -> None:
    _reg(registry, art())
    _no_wal(registry.store.root)
    _reg(registry, art())
    registry.promote(NAME, 1)
    _no_wal(registry.store.root)
    registry.promote(NAME, 2)
    registry.rollback(NAME)
    registry.get(NAME)
    registry.list()
    registry.verify()
    registry.check(NAME, 2)
    registry.record_check(NAME, 2, "exp-a")
    registry.promote_experiment("exp-a")
    registry.set_policy({"auc": 0.5})
    registry.export(NAME, tmp_path / "deploy")
    registry.export_all(tmp_path / "deploy")
    registry.retire(NAME)
    registry.gc(keep=1, dry_run=True)
    registry.gc(keep=1)
    registry.reindex()
    _no_wal(registry.store.root)


# ================================================================== a missing index
def test_register_with_a_missing_index_is_refused_until_reindex(
    populated: Registry, art: Artifacts
) -> None:
    v1_model = (populated.store.root / f"{NAME}_v1_model.pth").read_bytes()
    populated.store.index_file.unlink()
    populated.store.versions_file.unlink()
    before = snapshot(populated.store.root)
    with pytest.raises(CorruptStoreError, match=r"the index is missing.*registry reindex"):
        _reg(populated, art())
    assert snapshot(populated.store.root) == before
    populated.reindex()
    assert _reg(populated, art())["version"] == 3
    assert (populated.store.root / f"{NAME}_v1_model.pth").read_bytes() == v1_model


def test_the_same_bytes_after_a_reindex_are_the_existing_version(
    populated: Registry, tmp_path: Path
) -> None:
    populated.store.index_file.unlink()
    populated.reindex()
    meta = _reg(populated, make_artifacts(tmp_path / "v2-again", b"weights-2"))  # v2's bytes
    assert meta["version"] == 2 and meta.get("existing")
    assert [m["version"] for m in populated.list()] == [1, 2]


def test_empty_index_file_is_corrupt_not_empty(populated: Registry) -> None:
    populated.store.index_file.write_bytes(b"")
    before = snapshot(populated.store.root)
    with pytest.raises(CorruptStoreError):
        populated.get(NAME)
    assert snapshot(populated.store.root) == before


def test_extra_cannot_override_recorded_fields(populated: Registry, art: Artifacts) -> None:
    folder = art()
    before = snapshot(populated.store.root)
    with pytest.raises(ArtifactError, match="may not set recorded fields: artifacts, version"):
        _reg(populated, folder, extra={"version": 99, "artifacts": {}, "inference": {}})
    assert snapshot(populated.store.root) == before


# ================================================================== many writers at once
WORKER = """
import json, sys, time
from pathlib import Path
import sqlite_utils  # noqa: F401  (imported before the start line, so the race is tight)
from registry.api import Registry

store, base, wid, count, names = sys.argv[1], Path(sys.argv[2]), *map(int, sys.argv[3:6])
folders = []
for i in range(count):
    folder = base / f"w{wid}" / f"r{i}"
    folder.mkdir(parents=True)
    (folder / "model.pth").write_bytes(f"{wid}-{i}".encode())
    folders.append(folder)
(base / f"ready-{wid}").touch()
while not (base / "go").exists():
    time.sleep(0.002)
registry = Registry(store, lock_timeout=600, actor=f"w{wid}")
out = []
for i, folder in enumerate(folders):
    meta = registry.register(folder, "acoustic", f"D-{(wid + i) % names}", "convae")
    out.append([meta["name"], meta["version"], f"{wid}-{i}", bool(meta.get("existing"))])
print(json.dumps(out))
"""


def test_eight_processes_register_into_one_store(tmp_path: Path) -> None:
    workers, count, names = 8, 25, 4
    store, base = tmp_path / "store", tmp_path / "work"
    base.mkdir()
    Registry(store).init()
    env = {**os.environ, "PYTHONPATH": str(REPO), "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(store), str(base), str(w), str(count), str(names)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=env,
        )
        for w in range(workers)
    ]
    try:
        deadline = time.monotonic() + 600  # only so that a broken test ends
        while len(list(base.glob("ready-*"))) < workers:
            assert all(p.poll() is None for p in procs), "a worker died before the start"
            assert time.monotonic() < deadline, "workers did not get ready"
            time.sleep(0.01)
        (base / "go").touch()
        outputs = [p.communicate(timeout=HANG_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    results = [row for out, _ in outputs for row in json.loads(out)]
    assert len(results) == workers * count
    assert not any(existing for *_, existing in results)
    pairs = {(name, version) for name, version, _, _ in results}
    assert len(pairs) == workers * count  # 200 distinct versions

    per_name: dict[str, list[int]] = {}
    for name, version in pairs:
        per_name.setdefault(name, []).append(version)
    assert len(per_name) == names
    for versions in per_name.values():
        assert sorted(versions) == list(range(1, len(versions) + 1))  # none missing or repeated

    registry = Registry(store)
    root = registry.store.root
    for name, version, content, _ in results:  # each number holds the bytes it was given
        assert (root / f"{name}_v{version}_model.pth").read_bytes() == content.encode()
    latest = {name: len(versions) for name, versions in per_name.items()}
    assert json.loads(registry.store.versions_file.read_text()) == latest
    assert {(m["name"], m["version"]) for m in registry.list()} == pairs
    assert len(registry.list()) == workers * count
    registered = [(e["name"], e["version"]) for e in _events(registry) if e["type"] == "registered"]
    assert len(registered) == workers * count
    assert set(registered) == pairs
    assert registry.verify() == []
    _no_wal(root)
    assert not list(root.rglob("*.tmp"))


def test_a_reader_while_the_store_is_made_sees_an_empty_store(
    tmp_path: Path, art: Artifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deploy workers look up production while the deploy stage makes a new store: a lookup
    that lands while the index's tables are being made must not find a table-less file."""
    registry, seen = Registry(tmp_path / "new"), []
    make_tables = registry_index._create_tables

    def read_then_make(conn: Any) -> None:
        seen.append(Registry(registry.store.root).list())
        make_tables(conn)

    monkeypatch.setattr(registry_index, "_create_tables", read_then_make)
    assert registry.init() and not registry.init()
    _reg(registry, art())
    assert seen == [[]]
    assert [m["version"] for m in registry.list()] == [1]
    assert not list(registry.store.root.rglob("*.tmp"))
