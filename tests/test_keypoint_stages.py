"""The keypoint family's stages as DVC runs them (`--family keypoint`): demo captchas, a
network per site, its figures on held-out captchas, its registration, gate, promotion and
export in one store, captchas located (and drawn on) with its bundle, and its report page."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from pipelines.keypoint import family
from pipelines.keypoint.data import LABELS
from registry import gate
from registry.api import Registry
from registry.errors import GateError
from tests.pipeline_repo import TINY_KEYPOINT, family_stage, merge
from tests.pipeline_repo import fleet_in as fleet

DEPLOY_ARGS = ("models", "eval", "data", "deploy")
REPORT_ARGS = ("models", "eval", "reports/keypoint/deploy.json", "report/index.html")
FAST = merge(TINY_KEYPOINT, {"generate": {"count": 60}, "train": {"epochs": 4, "cosine_t0": 4}})
# a gate every tiny network meets on its figures: the degradation check still applies
LENIENT = {"floors": {"hit_le_5px": 0.0}, "ceilings": {"mae_px": 1000.0}}


def stage(cwd: Path, name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return family_stage(cwd, "keypoint", name, *args, **env)


def write_params(folder: Path, params: dict[str, Any]) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def pipeline(folder: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every stage of keypoint/dvc.yaml, as its commands name them, in order."""
    commands = {
        "generate": ("data",),
        "train": ("data", "models"),
        "evaluate": ("data", "models", "eval"),
        "deploy": DEPLOY_ARGS,
        "report": REPORT_ARGS,
    }
    done = {}
    for name, args in commands.items():
        done[name] = stage(folder, name, *args)
        assert done[name].returncode == 0, done[name].stderr
    return done


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The pipeline run once on a few tiny captchas, the family's gate lenient on figures:
    the project, and each stage's run, for tests to copy and go on from."""
    folder = tmp_path_factory.mktemp("keypoint") / "project"
    folder.mkdir()
    write_params(folder, FAST)
    registry = Registry(folder / "store")
    registry.init()
    registry.set_policy(**LENIENT, reason="tiny captchas", family="keypoint")
    return folder, pipeline(folder)


@pytest.fixture
def built(ran: tuple[Path, dict[str, Any]], tmp_path: Path) -> Path:
    """A copy of the project the pipeline ran in (its deploy links stay links)."""
    return Path(shutil.copytree(ran[0], tmp_path / "project", symlinks=True))


def test_a_site_is_trained_evaluated_promoted_exported_and_locates_captchas(
    ran: tuple[Path, dict[str, Any]], built: Path
) -> None:
    """The lifecycle end to end: the site's network promoted and exported, and its bundle,
    through `fleet score` on the held-out captchas, gives the evaluated points."""
    project, runs = built, ran[1]
    registry = Registry(project / "store")
    (held,) = registry.list(alias="production")
    assert held["name"] == "keypoint_shop_litehrnet" and held["version"] == 1
    assert "shop: v1 registered; promoted" in runs["deploy"].stderr
    assert set(held["metrics"]) == set(family.POLICY["floors"]) | {
        "mae_px",
        "rmse_px",
        "hit_le_1px",
        "hit_le_2px",
        "gap_mae",
        "slider_mae",
    }
    summary = json.loads((project / "models" / "shop" / "summary.json").read_text())
    assert summary["parameters"] > 0 and summary["height"] == 64 and summary["width"] == 128
    with (project / "eval" / "sites" / "shop" / "predictions.csv").open() as rows:
        evaluated = list(csv.DictReader(rows))
    images = [project / "data" / "shop" / r["image"] for r in evaluated]
    before = {p: p.read_bytes() for p in images}
    drawn = project / "drawn"
    scored = fleet(
        project, "score", "deploy/models/shop", *map(str, images), "--csv", "--draw", "drawn"
    )
    assert scored.returncode == 0, scored.stderr
    got = list(csv.DictReader(io.StringIO(scored.stdout)))
    points = ("gap_x", "gap_y", "slider_x", "slider_y")
    expected = [[float(r[f"predicted_{k}"]) for k in points] for r in evaluated]
    np.testing.assert_allclose([[float(r[k]) for k in points] for r in got], expected, atol=1e-3)
    assert sorted(p.name for p in drawn.iterdir()) == sorted(p.name for p in images)
    assert {p: p.read_bytes() for p in images} == before  # drawn on copies only


def test_fleet_table_and_the_report_page_show_the_site(built: Path) -> None:
    project = built
    page = (project / "report" / "index.html").read_text()
    assert 'id="site-shop"' in page and "keypoint_shop_litehrnet:v1" in page
    assert page.count('src="data:image/png;base64,') == 4  # held-out captchas drawn on
    assert "validation hit rates per epoch" in page and "learning rate per epoch" in page
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing fetched


def test_a_bad_image_and_a_bad_label_line_are_skipped_and_named(built: Path) -> None:
    project = built
    site = project / "data" / "shop"
    (site / "images" / "00003.png").write_bytes(b"not a png")
    with (site / LABELS).open("a") as labels:
        labels.write('{"image": "images/00001.png", "gap_coords": [1, 2]}\n')
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    run = stage(project, "train", "data", "models")
    assert run.returncode == 0, run.stderr
    assert "images/00003.png" in run.stderr and "not a readable PNG or JPEG" in run.stderr
    assert f"line {FAST['generate']['count'] + 1}" in run.stderr
    assert "Traceback" not in run.stderr
    summary = json.loads((project / "models" / "shop" / "summary.json").read_text())
    assert summary["samples"] == FAST["generate"]["count"] - 1
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == before


def test_the_gate_refuses_a_candidate_worse_on_mae_and_keeps_production(built: Path) -> None:
    """A candidate whose heatmap head says nothing (every cell alike: it points at the
    corner) is worse on its own validation captchas than the holder: the degradation check
    (here at a factor of 1, no worse than production) refuses it, whatever its recorded
    figures say."""
    project = built
    registry = Registry(project / "store")
    registry.set_policy(rollback_factor=1.0, reason="no worse than production", family="keypoint")
    holder = registry.get("keypoint_shop_litehrnet:v1")
    folder = project / "candidate"
    folder.mkdir()
    for kind, name in family.ARTIFACTS.items():
        (folder / name).write_bytes(registry.read(holder, kind))
    state = torch.load(folder / "model.pth", weights_only=True)
    for key in [k for k in state if k.startswith("heatmap.")]:
        state[key] = torch.zeros_like(state[key])
    torch.save(state, folder / "model.pth")
    meta = registry.register(
        folder,
        "keypoint",
        "shop",
        "litehrnet",
        metrics=holder["metrics"],
        extra={"inference": holder["inference"]},
    )
    worse, better = family.compare(
        registry.version("keypoint_shop_litehrnet:v2"),
        registry.version("keypoint_shop_litehrnet:v1"),
    )
    assert worse > better
    verdict = registry.check(meta["name"], meta["version"])
    assert not verdict.passed and [r.code for r in verdict.reasons] == [gate.DEGRADED]
    with pytest.raises(GateError):
        registry.promote(meta["name"], meta["version"], reason="try the worse one")
    assert [m["version"] for m in registry.list(alias="production")] == [1]


def test_init_from_production_fine_tunes_the_site_with_its_parent_recorded(built: Path) -> None:
    project = built
    first = torch.load(project / "models" / "shop" / "model.pth", weights_only=True)
    tuned = merge(FAST, {"generate": {"seed": 1}, "train": {"init_from": "production"}})
    write_params(project, tuned)
    for name, args in (("generate", ("data",)), ("train", ("data", "models"))):
        assert stage(project, name, *args).returncode == 0
    summary = json.loads((project / "models" / "shop" / "summary.json").read_text())
    assert summary["start"] == summary["start"] | {
        "how": "production",
        "parent": "keypoint_shop_litehrnet:v1",
    }
    again = torch.load(project / "models" / "shop" / "model.pth", weights_only=True)
    assert again.keys() == first.keys() and not all(torch.equal(again[k], first[k]) for k in first)
    for name, args in (("evaluate", ("data", "models", "eval")), ("deploy", DEPLOY_ARGS)):
        assert stage(project, name, *args).returncode == 0
    registry = Registry(project / "store")
    assert registry.get("keypoint_shop_litehrnet:v2")["lineage"]["parent_version"] == 1


def test_a_tampered_bundle_is_refused(built: Path) -> None:
    project = built
    weights = project / "deploy" / "models" / "shop" / "model.pth"
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    image = project / "data" / "shop" / "images" / "00000.png"
    refused = fleet(project, "score", "deploy/models/shop", str(image))
    assert refused.returncode == 2 and refused.stdout == ""
    assert "cannot load the bundle" in refused.stderr and "model.pth" in refused.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"height": 100}}, "data.height: expected a multiple of 32"),
        ({"train": {"model": "resnet"}}, "train.model: expected one of ['litehrnet', 'unet']"),
        ({"generate": {"sites": ["a/b"]}}, "generate.sites[0]: expected a site code"),
    ],
)
def test_bad_params_stop_the_stage_naming_the_key(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    write_params(tmp_path, merge(FAST, change))
    run = stage(tmp_path, "train", "data", "models")
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
