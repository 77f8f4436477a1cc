"""The `fleet` command: the per-device table and scoring with a deployed bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.acoustic import evaluation
from pipelines.cli import app
from tests import tiny_fleet

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tiny_fleet.TinyFleet:
    return tiny_fleet.build(tmp_path_factory.mktemp("cli"))


@pytest.fixture(scope="module")
def metrics(tiny: tiny_fleet.TinyFleet) -> Path:
    path = tiny.evaluation.parent / "metrics.json"
    evaluation.write_fleet_outputs(tiny.evaluation, path, tiny.evaluation.parent / "plots")
    return path


def test_table_lists_every_device(metrics: Path) -> None:
    result = runner.invoke(app, ["table", "--metrics", str(metrics)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "device",
        "windows",
        "epochs",
        "val",
        "loss",
        "threshold",
        "AUC",
        "pAUC",
        "F1",
    ]
    assert [line.split()[0] for line in lines[2:4]] == ["A-1", "B-2"]
    assert "2 devices, mean AUC" in result.output


def test_table_json(metrics: Path) -> None:
    result = runner.invoke(app, ["table", "--metrics", str(metrics), "--json"])
    data = json.loads(result.output)
    assert set(data["devices"]) == {"A-1", "B-2"} and data["fleet"]["devices"] == 2


def test_table_without_a_run_says_what_to_do(tmp_path: Path) -> None:
    result = runner.invoke(app, ["table", "--metrics", str(tmp_path / "none.json")])
    assert result.exit_code != 0 and "dvc repro" in result.output


def test_score_gives_a_verdict_per_clip(tiny: tiny_fleet.TinyFleet) -> None:
    clips = sorted((tiny.data / "A-1" / "test" / "anomaly").iterdir())
    result = runner.invoke(app, ["score", str(tiny.deploy / "A-1"), *map(str, clips), "--json"])
    assert result.exit_code == 0, result.output
    verdicts = json.loads(result.output)
    assert [v["file"] for v in verdicts] == list(map(str, clips))
    assert all(v["score"] > 0 and v["error"] == "" for v in verdicts)


def test_score_reports_a_bad_clip_and_exits_non_zero(
    tiny: tiny_fleet.TinyFleet, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    result = runner.invoke(app, ["score", str(tiny.deploy / "A-1"), str(bad)])
    assert result.exit_code == 1
    assert "skipped: cannot decode" in result.output


def test_score_refuses_a_tampered_bundle(tiny: tiny_fleet.TinyFleet, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny.deploy / "A-1", tmp_path / "A-1"))
    (folder / "global_scale.npy").write_bytes(b"\x93NUMPY tampered")
    clip = next((tiny.data / "A-1" / "test" / "normal").iterdir())
    result = runner.invoke(app, ["score", str(folder), str(clip)])
    assert result.exit_code == 2
    assert "cannot load the bundle" in result.output and "global_scale.npy" in result.output
