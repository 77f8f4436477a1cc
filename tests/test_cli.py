"""The `fleet` command: the per-device table and scoring with a deployed bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import Result
from typer.testing import CliRunner

from pipelines.acoustic import figures
from pipelines.cli import app
from registry.api import Registry
from tests import tiny_fleet
from tests.pipeline_repo import fresh_python
from tests.registry_helpers import make_artifacts, new_registry, snapshot

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tiny_fleet.TinyFleet:
    return tiny_fleet.build(tmp_path_factory.mktemp("cli"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store with a version of each tiny device, A-1 and B-2: the devices it knows."""
    root = tmp_path_factory.mktemp("store")
    registry = new_registry(root / "model_store")
    for device in ("A-1", "B-2"):
        registry.register(make_artifacts(root / "artifacts" / device), "acoustic", device, "convae")
    return root / "model_store"


def score(bundle: Path, store: Path, *args: str | Path) -> Result:
    """`fleet score BUNDLE ARGS...` against `store`'s devices."""
    return runner.invoke(app, ["score", str(bundle), *map(str, args), "--store", str(store)])


@pytest.fixture(scope="module")
def metrics(tiny: tiny_fleet.TinyFleet) -> Path:
    path = tiny.evaluation.parent / "metrics.json"
    figures.write_fleet_outputs(tiny.evaluation, path, tiny.evaluation.parent / "plots")
    return path


def test_table_lists_every_device(metrics: Path) -> None:
    result = runner.invoke(app, ["table", "--evaluation", str(metrics.parent)])
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
        "test",
        "clips",
    ]
    assert [line.split()[0] for line in lines[2:4]] == ["A-1", "B-2"]
    assert [line.split()[-2:] for line in lines[2:4]] == [["3+3", "!"]] * 2  # normal+anomalous
    assert "2 devices, mean AUC" in result.output
    assert lines[-2:] == [  # the tiny fleet's 3 clips of a kind: too few to mean much
        f"! {d}: 3 normal and 3 anomalous test clips (under 10 of a kind): its AUC and F1 say "
        "little"
        for d in ("A-1", "B-2")
    ]


def test_table_json(metrics: Path) -> None:
    result = runner.invoke(app, ["table", "--evaluation", str(metrics.parent), "--json"])
    data = json.loads(result.output)
    assert set(data["devices"]) == {"A-1", "B-2"} and data["fleet"]["devices"] == 2


def test_table_without_a_run_says_what_to_do(tmp_path: Path) -> None:
    result = runner.invoke(app, ["table", "--evaluation", str(tmp_path / "none")])
    assert result.exit_code != 0 and "dvc repro" in result.output


def test_score_gives_a_verdict_per_clip(tiny: tiny_fleet.TinyFleet, store: Path) -> None:
    clips = sorted((tiny.data / "A-1" / "test" / "anomaly").iterdir())
    result = score(tiny.deploy / "A-1", store, *clips, "--json")
    assert result.exit_code == 0, result.output
    verdicts = json.loads(result.output)
    assert [v["file"] for v in verdicts] == list(map(str, clips))
    assert all(v["score"] > 0 and v["error"] == "" for v in verdicts)


def test_score_reports_a_bad_clip_and_exits_non_zero(
    tiny: tiny_fleet.TinyFleet, store: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    result = score(tiny.deploy / "A-1", store, bad)
    assert result.exit_code == 1
    assert "skipped: cannot decode" in result.output


def test_score_names_the_bundle_a_mistyped_path_meant(
    tiny: tiny_fleet.TinyFleet, store: Path
) -> None:
    clip = next((tiny.data / "A-1" / "test" / "normal").iterdir())
    result = score(tiny.deploy / "A1", store, clip)
    assert result.exit_code == 2
    assert f"{tiny.deploy / 'A1'}: no such bundle; did you mean {tiny.deploy / 'A-1'}?" in (
        result.output
    )
    nowhere = score(tiny.deploy / "zzz" / "A-1", store, clip)
    assert nowhere.exit_code == 2 and nowhere.output.strip().endswith("no such bundle")


def test_score_refuses_a_tampered_bundle(
    tiny: tiny_fleet.TinyFleet, store: Path, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(tiny.deploy / "A-1", tmp_path / "A-1"))
    (folder / "global_scale.npy").write_bytes(b"\x93NUMPY tampered")
    clip = next((tiny.data / "A-1" / "test" / "normal").iterdir())
    result = score(folder, store, clip)
    assert result.exit_code == 2
    assert "cannot load the bundle" in result.output and "global_scale.npy" in result.output


def test_score_names_the_bundles_device_and_warns_about_unlike_clips(
    tiny: tiny_fleet.TinyFleet, store: Path, tmp_path: Path
) -> None:
    """A clip recorded otherwise than the training clips (rate, channels, length), or kept
    under another device's folder, is scored but flagged: its score says little."""
    clip = next((tiny.data / "A-1" / "test" / "normal").iterdir())
    y, rate = sf.read(clip, dtype="float32")
    odd = {
        "stereo.wav": (np.stack([y, y], axis=1), rate),
        "fast.wav": (np.interp(np.arange(0, len(y), 0.5), np.arange(len(y)), y), rate * 2),
        "long.wav": (np.tile(y, 12), rate),
    }
    for name, (samples, sr) in odd.items():
        sf.write(tmp_path / name, samples, sr)
    (tmp_path / "B-2").mkdir()
    shutil.copyfile(clip, tmp_path / "B-2" / "clip.wav")
    files = [tmp_path / name for name in odd] + [tmp_path / "B-2" / "clip.wav", clip]
    result = score(tiny.deploy / "A-1", store, *files)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0].startswith("device A-1: ")
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 4, result.stderr
    assert "stereo.wav: 2 channel(s); trained on 1" in warned[0]
    assert f"fast.wav: recorded at {rate * 2} Hz; trained on {rate} Hz" in warned[1]
    assert "long.wav: " in warned[2] and "s long; trained on clips of" in warned[2]
    assert "under the folder of B-2, another device; this bundle is A-1's" in warned[3]
    shown = json.loads(score(tiny.deploy / "A-1", store, files[0], "--json").stdout)
    assert shown[0]["device"] == "A-1" and shown[0]["warnings"] == [warned[0].split(": ", 2)[2]]
    strict = score(tiny.deploy / "A-1", store, *files, "--strict")  # a script's guard
    assert strict.exit_code == 1 and strict.stdout == result.stdout
    assert score(tiny.deploy / "A-1", store, clip, "--strict").exit_code == 0


def test_score_warns_by_the_clips_nearest_folder_of_a_device_the_store_knows(
    tiny: tiny_fleet.TinyFleet, store: Path, tmp_path: Path
) -> None:
    """A folder named like a device but unknown to the store (`dv`, even beside the bundle)
    says nothing, nor does another family's scope (a tabular task Q1); a known device (B-2)
    does, wherever the bundle lies; the nearest one counts."""
    bundle = Path(shutil.copytree(tiny.deploy / "A-1", tmp_path / "bundles" / "A-1"))
    (tmp_path / "bundles" / "dv").mkdir()
    task = tmp_path / "task"
    task.mkdir()
    (task / "model.pth").write_bytes(b"a regressor of another family")
    Registry(store).register(task, "tabular", "Q1", "ridge")
    clip = next((tiny.data / "A-1" / "test" / "normal").iterdir())
    folders = ("dv", "Q1", "B-2/test/anomaly", "B-2/A-1", "A-1/B-2")
    files = [tmp_path / "clips" / folder / "x.wav" for folder in folders]
    for file in files:
        file.parent.mkdir(parents=True)
        shutil.copyfile(clip, file)
    before = snapshot(store)

    result = score(bundle, store, *files, "--json")

    assert result.exit_code == 0, result.output
    warned = {
        Path(v["file"]).parent.relative_to(tmp_path / "clips").as_posix(): v["warnings"]
        for v in json.loads(result.stdout)
    }
    other = ["under the folder of B-2, another device; this bundle is A-1's"]
    assert warned == {
        "dv": [],
        "Q1": [],
        "B-2/test/anomaly": other,
        "B-2/A-1": [],
        "A-1/B-2": other,
    }
    assert snapshot(store) == before  # read, not written


def test_score_with_a_store_it_cannot_read_says_so_once_and_scores(
    tiny: tiny_fleet.TinyFleet, tmp_path: Path
) -> None:
    not_a_store = tmp_path / "model_store"
    not_a_store.write_text("a file, not a store")
    clips = sorted((tiny.data / "B-2" / "test" / "normal").iterdir())[:2]
    result = score(tiny.deploy / "A-1", not_a_store, *clips, "--json")
    assert result.exit_code == 0, result.output
    assert all(v["score"] is not None for v in json.loads(result.stdout))
    assert result.stderr.splitlines() == [
        f"warning: {not_a_store}: not a folder; expected a model store; clips not checked "
        "against device folders"
    ]
    assert not_a_store.read_text() == "a file, not a store"


def test_the_table_reads_its_record_without_the_models_libraries(metrics: Path) -> None:
    """`fleet table` only reads a JSON record: it must not pay for torch or scikit-learn."""
    code = (
        "import sys; from typer.testing import CliRunner; from pipelines.cli import app; "
        f"done = CliRunner().invoke(app, ['table', '--evaluation', {str(metrics.parent)!r}]); "
        "print(done.exit_code, sorted({'torch', 'sklearn'} & set(sys.modules)))"
    )
    assert fresh_python(code) == "0 []"
