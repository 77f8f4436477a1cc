"""Deployed bundles: the inference layout, verified loading, scoring audio files."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines import fleet
from pipelines.acoustic import bundle
from pipelines.errors import IntegrityError
from registry.store import sha256_file
from tests import tiny_fleet


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tiny_fleet.TinyFleet:
    return tiny_fleet.build(tmp_path_factory.mktemp("bundle"))


def copy_bundle(tiny: tiny_fleet.TinyFleet, tmp_path: Path, device: str = "A-1") -> Path:
    return Path(shutil.copytree(tiny.deploy / device, tmp_path / device))


def test_layout_is_the_inference_layout(tiny: tiny_fleet.TinyFleet) -> None:
    folder = tiny.deploy / "A-1"
    assert (folder / "ae_model.pth").is_file()
    scale = np.load(folder / "global_scale.npy")
    assert scale.shape == (2,) and scale[0] < scale[1]
    threshold = np.load(folder / "thresholds" / "threshold_A-1.npy")
    evaluated = fleet.read_json(tiny.evaluation / "A-1" / "summary.json")
    assert float(threshold) == pytest.approx(evaluated["threshold"])
    manifest = json.loads((folder / "bundle.json").read_text())
    assert set(manifest["sha256"]) == {
        "ae_model.pth",
        "global_scale.npy",
        "thresholds/threshold_A-1.npy",
    }


def test_scores_reproduce_the_evaluation(tiny: tiny_fleet.TinyFleet) -> None:
    loaded = bundle.load_bundle(tiny.deploy / "B-2")
    expected = fleet.read_json(tiny.evaluation / "B-2" / "scores.json")
    for row in expected:
        verdict = bundle.score_file(loaded, tiny.data / row["file"])
        assert verdict.score == pytest.approx(row["score"], rel=1e-4)
        assert verdict.anomalous == row["anomalous"]


@pytest.mark.parametrize(
    "name", ["ae_model.pth", "global_scale.npy", "thresholds/threshold_A-1.npy"]
)
def test_a_flipped_byte_is_refused(tiny: tiny_fleet.TinyFleet, tmp_path: Path, name: str) -> None:
    folder = copy_bundle(tiny, tmp_path)
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not match"):
        bundle.load_bundle(folder)


def test_a_missing_file_or_manifest_is_refused(tiny: tiny_fleet.TinyFleet, tmp_path: Path) -> None:
    folder = copy_bundle(tiny, tmp_path)
    (folder / "global_scale.npy").unlink()
    with pytest.raises(IntegrityError, match="missing"):
        bundle.load_bundle(folder)
    (folder / "bundle.json").unlink()
    with pytest.raises(IntegrityError, match="manifest"):
        bundle.load_bundle(folder)


def test_a_pickle_payload_is_never_executed(tiny: tiny_fleet.TinyFleet, tmp_path: Path) -> None:
    """Even with a matching sha256, weights that are not plain tensors are refused."""
    folder = copy_bundle(tiny, tmp_path)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (folder / "ae_model.pth").write_bytes(pickle.dumps({"w": Exploit()}, protocol=2))
    manifest = json.loads((folder / "bundle.json").read_text())
    manifest["sha256"]["ae_model.pth"] = sha256_file(folder / "ae_model.pth")
    (folder / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(pickle.UnpicklingError):
        bundle.load_bundle(folder)
    assert not marker.exists()


def test_a_bad_clip_gets_a_verdict_with_its_reason(
    tiny: tiny_fleet.TinyFleet, tmp_path: Path
) -> None:
    loaded = bundle.load_bundle(tiny.deploy / "A-1")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    verdict = bundle.score_file(loaded, empty)
    assert verdict.score is None and verdict.anomalous is None
    assert verdict.error == "empty file"


def test_deploy_refuses_weights_changed_after_training(
    tiny: tiny_fleet.TinyFleet, tmp_path: Path
) -> None:
    models = Path(shutil.copytree(tiny.models, tmp_path / "models"))
    weights = models / "A-1" / "model.pth"
    weights.write_bytes(weights.read_bytes()[:-8])
    jobs = bundle.plan(models, tiny.evaluation, tiny.data, tiny.params)
    outcomes = fleet.run_stage(tmp_path / "deploy", jobs, bundle.build, 1, "deploy")
    assert outcomes["A-1"].status == "failed" and "sha256" in outcomes["A-1"].error
    assert outcomes["B-2"].status == "built"
    assert not (tmp_path / "deploy" / "A-1").exists()
