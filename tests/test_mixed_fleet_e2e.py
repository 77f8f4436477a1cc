"""End to end, every detector type in one fleet (one device per type, through `devices:` in
params.yaml), in a temp git + DVC repo: each is registered under its own name, promoted,
exported, scores WAV files through `fleet score` as the evaluate stage did, and takes part
in the daily loop (fine-tuned or refitted from its production version, the parent recorded;
a network for `finetune_epochs` at `finetune_lr`; a fitted type with no training loop, its
gate's figures each model's error relative to its own normal).
"""

from __future__ import annotations

import io
import json
import typing
from pathlib import Path

import numpy as np
import pytest

from pipelines import engine
from pipelines.acoustic import family, features
from pipelines.acoustic.detectors import TRAINED
from pipelines.params import TrainParams
from registry.api import Registry
from registry.families import Version
from tests.pipeline_repo import TINY, make_repo, merge, run

pytestmark = pytest.mark.e2e
TYPES = typing.get_args(typing.get_type_hints(TrainParams)["model"])
DEVICES = {f"T-{i}": kind for i, kind in enumerate(TYPES, start=1)}
PCA = next(device for device, kind in DEVICES.items() if kind == "twfr-pca")  # the default
SMALL = {"dense_units": [16, 4], "components": 4}  # small networks, few principal components
# a network's full training, and a fine-tuning with its own epochs and learning rate
FULL = {"epochs": 3, "lr": 0.001}
FINETUNE = {"finetune_epochs": 2, "finetune_lr": 0.0007}


def trained(repo: Path, device: str) -> tuple[int, int, int, float]:
    """How a network's last training ran: the epochs in its summary, in its loss history and
    in its DVCLive loss log, and the learning rate its optimizer stepped at (from its last
    checkpoint)."""
    models = repo / "models" / device
    summary = json.loads((models / "summary.json").read_text())
    history = json.loads((models / "history.json").read_text())
    logged = repo / "logs" / "train" / "plots" / "metrics" / device / "train" / "loss.tsv"
    last = models / "checkpoints" / "last.pth"
    optimizer = engine.load_verified(last, engine.recorded_sha256(last))["optimizer"]
    rows = len(logged.read_text().splitlines()) - 1  # under a header
    return summary["epochs_run"], len(history), rows, optimizer["param_groups"][0]["lr"]


def test_every_type_registers_promotes_exports_scores_and_takes_part_in_the_daily_loop(
    tmp_path: Path,
) -> None:
    fleet = merge(TINY, {"generate": {"devices": list(DEVICES)}, "features": {"ref": "fixed"}})
    fleet = merge(fleet, {"train": FULL | FINETUNE})
    fleet["devices"] = {device: {"model": kind} | SMALL for device, kind in DEVICES.items()}
    repo = make_repo(tmp_path / "repo", fleet)
    run(repo, "dvc", "repro")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "baseline")
    store = Registry(repo / "model_store")
    for device, kind in DEVICES.items():
        name = f"acoustic_{device}_{kind}"
        assert store.get(f"{name}@production")["version"] == 1, name
        bundle = repo / "deploy" / "models" / device
        manifest = json.loads((bundle / "bundle.json").read_text())
        assert manifest["model"] == f"{name}:v1"
        assert manifest["architecture"].get("type", "convae") == kind
        assert store.get(f"{name}:v1")["inference"]["architecture"].get("type", "convae") == kind
        evaluated = json.loads((repo / "eval/devices" / device / "scores.json").read_text())
        clips = [str(repo / "data/demo" / row["file"]) for row in evaluated[:2]]
        shown = json.loads(run(repo, "fleet", "score", str(bundle), *clips, "--json").stdout)
        for verdict, row in zip(shown, evaluated, strict=False):
            assert verdict["score"] == pytest.approx(row["score"], rel=1e-4), name
        if kind in TRAINED:
            epochs, lr = FULL["epochs"], FULL["lr"]
            assert trained(repo, device) == (epochs, epochs, epochs, lr), name

    day = run(repo, "fleet", "daily", "--day", "20261102", check=False)
    assert day.returncode == 0, day.stdout + day.stderr
    for device, kind in DEVICES.items():
        name = f"acoustic_{device}_{kind}"
        assert f"{device}: fine-tuned from v1 -> v2 registered" in day.stdout, day.stdout
        child = store.get(f"{name}:v2")
        assert child["lineage"]["parent_version"] == 1, name
        assert child["params"]["train"]["model"] == kind
        if kind in TRAINED:
            epochs, lr = FINETUNE["finetune_epochs"], FINETUNE["finetune_lr"]
            assert trained(repo, device) == (epochs, epochs, epochs, lr), name
        else:  # refitted on its parent's references and the day's audio
            summary = json.loads((repo / "models" / device / "summary.json").read_text())
            assert (summary["start"]["parent"], summary["epochs_run"]) == (f"{name}:v1", 0)
    pca = f"acoustic_{PCA}_twfr-pca"
    assert sorted(store.get(f"{pca}:v1")["artifacts"]) == [
        "eval_windows",
        "model",
        "scale",
        "threshold",
    ]

    # The gate compared v2 with v1 each relative to its own mean score on the holder's
    # evaluation windows (normal for both): a type whose scores are multiples of its own normal.
    candidate, holder = store.version(f"{pca}:v2"), store.version(f"{pca}:v1")
    windows = [_windows(v) for v in (candidate, holder)]
    expected = [
        _mean_score(v, windows[0]) / _mean_score(v, windows[1]) for v in (candidate, holder)
    ]
    assert family.compare(candidate, holder) == pytest.approx(expected)
    decision = json.loads((repo / "reports/deploy.json").read_text())["devices"][PCA]["decision"]
    figures = decision["figures"]
    assert [figures["candidate_error"], figures["holder_error"]] == pytest.approx(expected)


def _windows(version: Version) -> np.ndarray:
    return np.load(io.BytesIO(version.read("eval_windows")), allow_pickle=False)


def _mean_score(version: Version, windows: np.ndarray) -> float:
    scaled = features.apply_scale(windows, family.scale(version))
    return float(family.detector(version).scores(scaled).mean())
