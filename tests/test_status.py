"""pipelines.status: one row per device, every disagreement between the registry, the deploy
folder, the data and the last run flagged."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.status import Sources, fleet_status
from registry.api import Registry
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
    deploy = tmp_path / "deploy"
    registry.export_all(deploy)
    registry.promote(f"{FAMILY}_LT-2_{MODEL_TYPE}", 2)
    (deploy / "OLD-1" / "model.bin").resolve().write_bytes(b"tampered")
    for device in ("LT-2", "FAN-7", "NEW-4"):
        (tmp_path / "data" / device).mkdir(parents=True)
    (tmp_path / "data" / "bad_name").mkdir()
    (tmp_path / "reports").mkdir()
    failed = {"devices": {"FAN-7": {"status": "failed", "error": "no usable clip"}}}
    (tmp_path / "reports" / "extract.json").write_text(json.dumps(failed))
    (tmp_path / "devices.json").write_text(json.dumps([{"device": "LT-2", "auc": 0.91}]))

    rows = fleet_status(
        Sources(
            registry,
            FAMILY,
            tmp_path / "data",
            deploy,
            tmp_path / "devices.json",
            tmp_path / "reports",
        )
    )
    found = {row.device: row for row in rows}
    assert sorted(found) == ["FAN-7", "LT-2", "NEW-4", "OLD-1"]
    lt2 = found["LT-2"]
    assert (lt2.production, lt2.bundle, lt2.candidate, lt2.auc) == (
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
    assert found["OLD-1"].flags == ["bundle differs from production", "not in data.root"]
