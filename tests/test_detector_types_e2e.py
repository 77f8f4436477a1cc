"""End to end, a detector type other than the default (`train.model: twfr-pca`) in a temp repo:
it is registered under its own name, promoted through the gate, exported, scores WAV files
through `fleet score` as evaluated, and takes part in the daily loop (refitted on its parent's
references and the day's audio, the parent recorded)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.acoustic import family, features
from registry.api import Registry
from registry.families import Version
from tests.pipeline_repo import TINY, make_repo, merge, run

pytestmark = pytest.mark.e2e
TWFR = {"train": {"model": "twfr-pca", "components": 4}, "features": {"ref": "fixed"}}
NAME = "acoustic_A-1_twfr-pca"


def test_twfr_pca_registers_promotes_exports_scores_and_fine_tunes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", merge(TINY, TWFR))
    run(repo, "dvc", "repro")
    store = Registry(repo / "model_store")
    meta = store.get(f"{NAME}@production")
    assert (meta["version"], meta["model_type"]) == (1, "twfr-pca")
    assert meta["inference"]["architecture"]["type"] == "twfr-pca"
    assert sorted(meta["artifacts"]) == ["eval_windows", "model", "scale", "threshold"]
    manifest = json.loads((repo / "deploy/models/A-1/bundle.json").read_text())
    assert manifest["architecture"]["type"] == "twfr-pca"

    # The exported bundle scores the test clips as the evaluate stage did.
    evaluated = json.loads((repo / "eval/devices/A-1/scores.json").read_text())
    clips = [str(repo / "data/demo" / row["file"]) for row in evaluated]
    shown = run(repo, "fleet", "score", "deploy/models/A-1", *clips, "--json").stdout
    for verdict, row in zip(json.loads(shown), evaluated, strict=True):
        assert verdict["score"] == pytest.approx(row["score"], rel=1e-4)  # as deploy checks
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "baseline")

    day = run(repo, "fleet", "daily", "--day", "20261102", check=False)
    assert "A-1: fine-tuned from v1 -> v2 registered" in day.stdout, day.stdout + day.stderr
    child = store.get(f"{NAME}:v2")
    assert child["lineage"]["parent_version"] == 1
    trained = json.loads((repo / "models/A-1/summary.json").read_text())
    assert trained["start"]["parent"] == f"{NAME}:v1" and trained["epochs_run"] == 0

    # The gate compared v2 with v1 each relative to its own mean score on the holder's
    # evaluation windows (normal for both): a type whose scores are multiples of its own normal.
    candidate, holder = store.version(f"{NAME}:v2"), store.version(f"{NAME}:v1")
    windows = [_windows(v) for v in (candidate, holder)]
    expected = [
        _mean_score(v, windows[0]) / _mean_score(v, windows[1]) for v in (candidate, holder)
    ]
    assert family.compare(candidate, holder) == pytest.approx(expected)
    decision = json.loads((repo / "reports/deploy.json").read_text())["devices"]["A-1"]["decision"]
    figures = decision["figures"]
    assert [figures["candidate_error"], figures["holder_error"]] == pytest.approx(expected)


def _windows(version: Version) -> np.ndarray:
    return np.load(io.BytesIO(version.read("eval_windows")), allow_pickle=False)


def _mean_score(version: Version, windows: np.ndarray) -> float:
    scaled = features.apply_scale(windows, family.scale(version))
    return float(family.detector(version).scores(scaled).mean())
