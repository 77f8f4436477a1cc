"""pipelines.status: one row per device, every disagreement between the registry, the deploy
folder, the data and the last run flagged; what it reads of the acoustic family's pipeline
folder is the family's own (pipelines/acoustic/views.py)."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.acoustic import views
from pipelines.status import fleet_status
from registry.api import Registry
from tests.pipeline_repo import write_params
from tests.registry_helpers import FAMILY, MODEL_TYPE, TOY, make_artifacts, new_registry


def _register(registry: Registry, tmp_path: Path, scope: str, tag: str, error: float) -> None:
    folder = make_artifacts(tmp_path / "art" / scope / tag, f"{scope} {tag}".encode())
    metrics = {"auc": 0.95, "error": error}
    registry.register(folder, FAMILY, scope, MODEL_TYPE, metrics=metrics)


def test_every_disagreement_is_flagged(tmp_path: Path) -> None:
    registry = new_registry(tmp_path / "store", families=TOY)
    for scope in ("LT-2", "FAN-7", "OLD-1"):
        _register(registry, tmp_path, scope, "v1", 0.1)
    _register(registry, tmp_path, "LT-2", "v2", 0.15)
    _register(registry, tmp_path, "LT-2", "v3", 0.9)
    for scope in ("LT-2", "OLD-1"):
        registry.promote(f"{FAMILY}_{scope}_{MODEL_TYPE}", 1)
    deploy = tmp_path / "deploy" / "models"
    registry.export_all(deploy)
    registry.promote(f"{FAMILY}_LT-2_{MODEL_TYPE}", 2)
    (deploy / "OLD-1" / "model.bin").resolve().write_bytes(b"tampered")
    for device in ("LT-2", "FAN-7", "NEW-4"):
        (tmp_path / "data" / device).mkdir(parents=True)
    (tmp_path / "data" / "bad_name").mkdir()
    (tmp_path / "reports").mkdir()
    failed = {"devices": {"FAN-7": {"status": "failed", "error": "no usable clip"}}}
    (tmp_path / "reports" / "extract.json").write_text(json.dumps(failed))
    (tmp_path / "eval" / "plots").mkdir(parents=True)
    devices = [{"device": "LT-2", "auc": 0.91}]
    (tmp_path / "eval" / "plots" / "devices.json").write_text(json.dumps(devices))
    write_params(tmp_path, {"data": {"root": "data"}, "deploy": {"family": FAMILY}})

    status = fleet_status(registry, views.status(tmp_path), "auc")
    found = {row.scope: row for row in status.rows}
    assert sorted(found) == ["FAN-7", "LT-2", "NEW-4", "OLD-1"]
    lt2 = found["LT-2"]
    assert (lt2.production, lt2.bundle, lt2.candidate, lt2.figure) == (
        "convae:v2",
        "convae:v1",
        "convae:v3",
        0.91,
    )
    assert lt2.since is not None and lt2.gate.startswith("refuses: candidate error 0.9")
    assert lt2.flags == ["bundle differs from production"]
    assert found["FAN-7"].flags == ["no production version", "failed in the last run"]
    assert found["FAN-7"].last_run == "extract failed: no usable clip"
    assert found["FAN-7"].bundle is None and found["FAN-7"].candidate == "convae:v1"
    assert found["NEW-4"].flags == ["no production version"]
    assert found["OLD-1"].bundle == "damaged"
    assert found["OLD-1"].flags == [
        "bundle differs from production",
        "not in data.root (`registry retire toy_OLD-1_convae` takes it out)",
    ]
    # --json's rows, in the family's words
    assert status.records()[1] == {
        "device": "LT-2",
        "production": "convae:v2",
        "since": lt2.since,
        "bundle": "convae:v1",
        "candidate": "convae:v3",
        "gate": lt2.gate,
        "auc": 0.91,
        "last_run": None,
        "flags": ["bundle differs from production"],
    }


def test_a_candidate_judged_by_its_run_shows_that_verdict_without_judging_again(
    tmp_path: Path,
) -> None:
    """The deploy stage records the gate's verdict on each candidate; status shows it (no
    model of the family is loaded for it) and names the command that judges it now."""
    registry = new_registry(tmp_path / "store", families=TOY)
    name = f"{FAMILY}_LT-2_{MODEL_TYPE}"
    _register(registry, tmp_path, "LT-2", "v1", 0.1)
    registry.promote(name, 1)
    _register(registry, tmp_path, "LT-2", "v2", 0.9)
    checked = registry.record_check(name, 2, "exp-1")
    registry.set_policy(floors={"auc": 0.99}, reason="stricter since")  # now it would refuse
    (tmp_path / "data" / "LT-2").mkdir(parents=True)
    write_params(tmp_path, {"data": {"root": "data"}, "deploy": {"family": FAMILY}})

    row = fleet_status(registry, views.status(tmp_path), "auc").rows[0]

    said = "would pass" if checked["gate"]["passed"] else "refuses: "
    assert row.gate.startswith(said)
    assert row.gate.endswith(
        f"(judged {checked['time'][:10]}; `registry check {name} 2` judges it now)"
    )
    assert not registry.check(name, 2).passed  # what `registry check` says now
