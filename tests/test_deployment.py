"""The deploy stage as a process: what it registers, what the store's gate decides, what it
prints per device, and what an experiment may not do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.acoustic import deployment
from pipelines.acoustic.extraction import load_device
from registry.api import Registry
from tests import tiny_fleet
from tests.patience import HANG_S
from tests.pipeline_repo import PROJECT, TINY, write_params
from tests.registry_helpers import new_registry


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tiny_fleet.TinyFleet:
    return tiny_fleet.build(tmp_path_factory.mktemp("deployment"))


def deploy(tiny: tiny_fleet.TinyFleet, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m stages.deploy` over the tiny fleet, with its store in `cwd/model_store`."""
    write_params(cwd, TINY)
    if not (cwd / "eval").exists():
        (cwd / "eval").mkdir()
        (cwd / "eval" / "devices").symlink_to(tiny.evaluation)
    args = [tiny.models, cwd / "eval", tiny.features, tiny.data, cwd / "deploy"]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MODEL_STORE"))}
    return subprocess.run(
        [sys.executable, "-m", "stages.deploy", *map(str, args)],
        cwd=cwd,
        env=base | {"PYTHONPATH": str(PROJECT), "MODEL_STORE": str(cwd / "model_store")} | env,
        capture_output=True,
        text=True,
        timeout=HANG_S,
        check=False,
    )


def types(registry: Registry, device: str) -> list[str]:
    return [e["type"] for e in registry.history(f"acoustic_{device}_convae")]


def test_a_plain_run_promotes_exports_and_says_so(
    tiny: tiny_fleet.TinyFleet, tmp_path: Path
) -> None:
    new_registry(tmp_path / "model_store").set_policy(
        drop_floors=["auc"], family="acoustic", reason="tiny models"
    )
    ran = deploy(tiny, tmp_path)
    assert ran.returncode == 0, ran.stderr
    registry = Registry(tmp_path / "model_store")
    for device in ("A-1", "B-2"):
        assert f"deploy: {device}: v1 registered; promoted" in ran.stderr
        assert types(registry, device) == ["registered", "promoted"]
        assert (tmp_path / "deploy" / "models" / device / "bundle.json").is_file()
        meta = registry.get(f"acoustic_{device}_convae@production")
        architecture = {"type": "convae", "channels": [4, 8], "latent_channels": 2}
        assert meta["inference"]["architecture"] == architecture


def test_the_registered_windows_are_the_devices_validation_windows_in_decibels(
    tiny: tiny_fleet.TinyFleet,
) -> None:
    windows, _, index = load_device(tiny.features / "A-1")
    validation = np.asarray(index["validation"], dtype=bool)
    registered = deployment.evaluation_windows(tiny.features / "A-1", limit=3)
    assert registered.min() < -1  # decibels, not scaled
    np.testing.assert_array_equal(registered, windows[validation][:3])


def test_a_refusal_is_printed_with_its_figures_and_recorded(
    tiny: tiny_fleet.TinyFleet, tmp_path: Path
) -> None:
    new_registry(tmp_path / "model_store").set_policy({"auc": 1.01}, reason="nothing passes")
    ran = deploy(tiny, tmp_path)
    assert ran.returncode == 0, ran.stderr
    registry = Registry(tmp_path / "model_store")
    for device in ("A-1", "B-2"):
        line = next(x for x in ran.stderr.splitlines() if f"deploy: {device}:" in x)
        assert "v1 registered; refused by the gate: auc = " in line
        assert "is below the floor 1.01" in line and "no production version kept" in line
        assert types(registry, device) == ["registered", "refused"]
    assert registry.list(alias="production") == []
    assert sorted(p.name for p in (tmp_path / "deploy" / "models").iterdir()) == [".bundles"]
    counts = json.loads((tmp_path / "deploy" / "metrics.json").read_text())
    assert counts == {  # below_floor: counted from the gate's codes, never its sentences
        "gate_passed": 0,
        "gate_refused": 2,
        "promoted": 0,
        "below_floor": 2,
        "failed": 0,
    }


def test_an_experiment_moves_nothing_and_records_the_verdict(
    tiny: tiny_fleet.TinyFleet, tmp_path: Path
) -> None:
    new_registry(tmp_path / "model_store").set_policy(
        drop_floors=["auc"], family="acoustic", reason="tiny models"
    )
    ran = deploy(tiny, tmp_path, DVC_EXP_NAME="exp-one", DVC_ROOT=str(tmp_path))
    assert ran.returncode == 0, ran.stderr
    assert "experiment exp-one, not promoted: the gate would promote it" in ran.stderr
    registry = Registry(tmp_path / "model_store")
    assert registry.list(alias="production") == []
    assert not (tmp_path / "deploy" / "models").exists()
    checked = registry.history("acoustic_A-1_convae")[-1]
    assert (checked["type"], checked["experiment"], checked["gate"]["passed"]) == (
        "checked",
        "exp-one",
        True,
    )
    again = deploy(tiny, tmp_path)  # the same candidates, now in a plain run: judged afresh
    assert "v1 already registered; promoted" in again.stderr
    assert len(registry.list(alias="production")) == 2


def test_a_store_named_on_purpose_that_is_not_there_is_refused_not_made(
    tiny: tiny_fleet.TinyFleet, tmp_path: Path
) -> None:
    """A mistyped $MODEL_STORE stops the stage in one line; only the project's own store is
    made by a first run."""
    typo = tmp_path / "model_stor"
    ran = deploy(tiny, tmp_path, MODEL_STORE=str(typo))
    assert ran.returncode == 1
    assert f"deploy: {typo}: no model store here (`registry init {typo}` makes one)" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert not typo.exists() and not (tmp_path / "deploy" / "models").exists()
    made = deploy(tiny, tmp_path, MODEL_STORE="")  # none named: the project's own, made here
    assert made.returncode == 0, made.stderr
    assert len(Registry(tmp_path / "model_store").list()) == 2
