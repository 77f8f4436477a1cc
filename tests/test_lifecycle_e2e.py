"""End to end, the governed lifecycle in a temp git + DVC repo: a plain `dvc repro` promotes,
experiments (in the workspace, queued two at a time) only register and record the gate's
verdict, a person promotes an experiment and rolls it back, and a device whose audio turns bad
keeps its production bundle."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipelines.params import TrainParams
from registry.api import Registry
from tests.pipeline_repo import (
    TINY,
    copy_repo,
    merge,
    readme_commands,
    run,
    wait_for_queue,
    write_params,
)

pytestmark = pytest.mark.e2e
DEVICES = ("A-1", "B-2")
EXPERIMENTS = readme_commands("## Experiments")
DEFAULT = TrainParams().model  # the detector the README's experiments are about
RUN = ["dvc", "exp", "run"]


def production(repo: Path) -> dict[str, int]:
    """The acoustic devices' production versions (the store holds the tabular tasks' too)."""
    held = Registry(repo / "model_store").list(alias="production")
    return {m["scope"]: m["version"] for m in held if m["family"] == "acoustic"}


def bundles(repo: Path) -> dict[str, Any]:
    """deploy/models as links and files: what a reader of the deploy folder sees."""
    folder = repo / "deploy" / "models"
    found: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_symlink():
            found[key] = os.readlink(path)
        elif path.is_file() and not key.endswith(".lock"):
            found[key] = path.read_bytes()
    return found


def shipped(repo: Path, device: str) -> str:
    manifest = repo / "deploy" / "models" / device / "bundle.json"
    return json.loads(manifest.read_text())["model"]


def status(repo: Path) -> dict[str, dict[str, Any]]:
    out = run(repo, "fleet", "status", "--family", "acoustic", "--json").stdout
    return {row["device"]: row for row in json.loads(out)}


@pytest.fixture(scope="module")
def repo(tiny_built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built repo on the README's default detector (the tiny fleet's is convae), so
    that the README's experiments change what they say they change; committed."""
    repo = copy_repo(tiny_built, tmp_path_factory.mktemp("lifecycle") / "repo")
    write_params(repo, TINY | {"train": {"model": DEFAULT}})  # none of convae's settings
    run(repo, "dvc", "repro")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "baseline: the default detector")
    return repo


@pytest.fixture(scope="module")
def experiments(repo: Path) -> list[str]:
    """The README's experiments as written: one in the workspace, then two queued ones run
    two at a time."""
    before = bundles(repo)
    one, queued, start = EXPERIMENTS[:3]
    assert (one[:3], queued[:4], start[:3]) == (RUN, [*RUN, "--queue"], ["dvc", "queue", "start"])
    ran = run(repo, *one)
    assert "not promoted: the gate would" in ran.stderr + ran.stdout
    assert "changes nothing" not in ran.stderr + ran.stdout  # the detector reads it
    assert "Running stage 'extract'" not in ran.stdout  # a train param reruns train and after
    assert "Running stage 'train'" in ran.stdout
    assert json.loads((repo / "reports" / "train.json").read_text())["built"] == list(DEVICES)
    run(repo, *queued)
    run(repo, *start)
    assert wait_for_queue(repo).count("Success") == 2
    # the queued ones ran in temp copies under .dvc/tmp and registered into the one store
    assert not list((repo / ".dvc" / "tmp").rglob("model_store"))
    run(repo, "git", "checkout", "--", "params.yaml")  # the baseline's params again
    assert bundles(repo) == before  # no experiment touched the deploy folder
    return sorted(
        {m["lineage"]["dvc_experiment"] for m in Registry(repo / "model_store").list()} - {None}
    )


def test_the_readme_compares_the_experiments(repo: Path, experiments: list[str]) -> None:
    """The rest of the README's experiments block: the table, the per-device comparison and
    the plots, with EXP one of the experiments."""
    rest = [[experiments[0] if w == "EXP" else w for w in words] for words in EXPERIMENTS[3:]]
    assert [words[:3] for words in rest] == [
        ["dvc", "exp", "show"],
        ["fleet", "compare", "workspace"],
        ["dvc", "plots", "show"],
    ]
    header = run(repo, *rest[0]).stdout.splitlines()[0]
    assert "train.components" in header and "A-1" not in header  # what changed, never a device
    assert len(header.strip("|").split("|")) <= 15  # fits a terminal
    compared = run(repo, *rest[1]).stdout.splitlines()
    assert sorted(line.split()[0] for line in compared[2:]) == ["A-1", "B-2"]  # under a rule
    plotted = run(repo, *rest[2])
    assert (repo / "dvc_plots" / "index.html").is_file()
    assert "failed to load" not in plotted.stdout + plotted.stderr  # no curves: drawn empty
    diff = json.loads(run(repo, "dvc", "plots", "diff", "HEAD", experiments[0], "--json").stdout)
    bars = diff["data"]["eval/plots/devices.json"][0]  # the README's `dvc plots diff A B`
    assert sorted(bars["revisions"]) == sorted(["HEAD", experiments[0]])


def test_exp_show_carries_the_fleets_figures_and_fleet_compare_the_devices(
    repo: Path, experiments: list[str]
) -> None:
    """`dvc exp show`'s metrics are the fleet's (its columns do not grow with the fleet);
    `fleet compare` puts two runs' per-device figures side by side."""
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in run(repo, "dvc", "exp", "show", "--md").stdout.splitlines()
        if line.startswith("|") and not line.startswith("|--")
    ]
    header, low = rows[0], next(row for row in rows if f"[{experiments[0]}]" in row[0])
    assert "A-1" not in header and "B-2" not in header  # no column per device
    assert not [c for c in header if "Q1" in c]  # nor per task
    # a metric both families' files have is named with its file: deploy/metrics.json:...
    ours = {c.removeprefix("deploy/metrics.json:"): i for i, c in enumerate(header)}
    for column in ("auc_mean", "auc_min", "pauc_min", "gate_passed"):
        assert low[ours[column]] not in ("!", "-", ""), f"{column} missing"
        float(low[ours[column]])
    shown = json.loads(run(repo, "dvc", "exp", "show", "--json").stdout)
    metrics = {
        path: sorted(found["data"])
        for exp in shown
        for path, found in (exp["data"] or {}).get("metrics", {}).items()
    }
    assert metrics["eval/metrics.json"] == sorted(
        ["devices", "devices_with_auc", "auc_mean", "auc_min", "pauc_mean", "pauc_min", "f1_mean"]
    )
    assert metrics["deploy/metrics.json"] == sorted(
        ["gate_passed", "gate_refused", "promoted", "below_floor", "failed"]
    )
    rows = json.loads(run(repo, "fleet", "compare", "HEAD", experiments[0], "--json").stdout)
    assert sorted(r["device"] for r in rows) == list(DEVICES)
    assert all(r["auc_change"] == pytest.approx(r["auc_b"] - r["auc_a"]) for r in rows)
    missing = run(repo, "fleet", "compare", "HEAD", "no-such-exp", check=False)
    assert missing.returncode == 1 and "no-such-exp: no such experiment" in missing.stderr


def test_a_plain_repro_promotes_and_exports_v1(repo: Path) -> None:
    assert production(repo) == {"A-1": 1, "B-2": 1}
    for device in DEVICES:
        assert shipped(repo, device) == f"acoustic_{device}_{DEFAULT}:v1"
        assert status(repo)[device]["flags"] == []


def test_experiments_register_with_their_names_and_never_move_production(
    repo: Path, experiments: list[str]
) -> None:
    assert len(experiments) == 3
    registry = Registry(repo / "model_store")
    runs = [m for m in registry.list() if m["lineage"]["dvc_experiment"]]
    tried = {m["params"]["train"]["components"] for m in runs}
    assert tried == {4, 2, 12}  # the one run, and the queued sweep's grid
    assert production(repo) == {"A-1": 1, "B-2": 1}
    for device in DEVICES:
        name = f"acoustic_{device}_{DEFAULT}"
        checked = [e for e in registry.history(name) if e["type"] == "checked"]
        assert sorted(e["experiment"] for e in checked) == experiments
        assert all(e["from_version"] == 1 and "gate" in e for e in checked)
        assert not [e for e in registry.history(name) if e["type"] == "promoted"][1:]
        assert shipped(repo, device) == f"{name}:v1"


def test_an_experiment_is_promoted_with_one_command_and_rolled_back(
    repo: Path, experiments: list[str]
) -> None:
    chosen = experiments[0]
    registry = Registry(repo / "model_store")
    theirs = {m["scope"]: m["version"] for m in registry.list(experiment=chosen)}
    assert set(theirs) == set(DEVICES)
    run(repo, "registry", "promote-experiment", chosen, "--reason", "the best pAUC")
    assert production(repo) == theirs
    for row in status(repo).values():
        assert "bundle differs from production" in row["flags"]
    ran = run(repo, "dvc", "repro")  # re-derives v1 from the committed params
    assert "not promoted: production v" in ran.stdout + ran.stderr
    assert production(repo) == theirs  # the pipeline never undoes a person's decision
    for device in DEVICES:
        assert shipped(repo, device) == f"acoustic_{device}_{DEFAULT}:v{theirs[device]}"
        run(repo, "registry", "rollback", f"acoustic_{device}_{DEFAULT}", "--reason", "no, v1")
    assert production(repo) == {"A-1": 1, "B-2": 1}
    run(repo, "registry", "export", "--to", "deploy/models")
    assert all(not row["flags"] for row in status(repo).values())


def test_exp_apply_does_not_touch_what_runs(repo: Path, experiments: list[str]) -> None:
    before = bundles(repo)
    run(repo, "dvc", "exp", "apply", experiments[-1])
    assert bundles(repo) == before
    assert all(not s["flags"] for s in status(repo).values())
    run(repo, "git", "checkout", "--", ".")
    run(repo, "dvc", "checkout")


# ------------------------------------------------------------------ a device that turns bad
@pytest.fixture(scope="module")
def site(tiny_built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built repo with data.root moved to the user's own folder (not the generate
    stage's output), the same audio: every device comes out as it was."""
    repo = copy_repo(tiny_built, tmp_path_factory.mktemp("site") / "repo")
    shutil.copytree(repo / "data" / "demo", repo / "site")
    write_params(repo, merge(TINY, {"data": {"root": "site"}}))
    run(repo, "dvc", "repro")
    return repo


def test_a_device_whose_audio_turns_bad_keeps_its_production_bundle(site: Path) -> None:
    before = bundles(site)
    for clip in (site / "site" / "B-2").rglob("*.wav"):
        if "test" not in clip.parts:
            clip.write_bytes(b"not audio any more")
    ran = run(site, "dvc", "repro")
    console = ran.stdout + ran.stderr
    assert "device B-2 failed" in console
    assert "B-2: no candidate from this run" in console
    assert "production acoustic_B-2_convae:v1 kept" in console
    assert production(site) == {"A-1": 1, "B-2": 1}
    assert {k: v for k, v in bundles(site).items() if "B-2" in k} == {
        k: v for k, v in before.items() if "B-2" in k
    }
    row = status(site)["B-2"]
    assert row["production"] == row["bundle"] == "convae:v1"
    assert "failed in the last run" in row["flags"]
    assert row["last_run"].startswith("extract failed:")


def test_a_device_gone_from_data_root_is_named_so_until_it_is_retired(
    tiny_built: Path, tmp_path: Path
) -> None:
    """data.root pointed at a folder without B-2: the run says B-2 is not in data.root and
    how it leaves the fleet, leaves it out of the fleet's figures, and keeps shipping it
    (a folder gone is no retirement); `registry retire` takes it out."""
    repo = copy_repo(tiny_built, tmp_path / "repo")
    shutil.copytree(repo / "data" / "demo" / "A-1", repo / "mine" / "A-1")
    write_params(repo, merge(TINY, {"data": {"root": "mine"}}))
    console = "".join(run(repo, "dvc", "repro").stderr)
    name = "acoustic_B-2_convae"
    assert (
        f"deploy: B-2: not in data.root: no run of it, not in the fleet's figures; production "
        f"{name}:v1 still exported (`registry retire {name}` takes it out of the fleet)"
    ) in console
    assert "no candidate from this run" not in console
    deployed = json.loads((repo / "reports" / "deploy.json").read_text())
    assert deployed["not_in_data"] == ["B-2"] and not deployed["all_refused"]
    assert json.loads((repo / "eval" / "metrics.json").read_text())["devices"] == 1
    assert shipped(repo, "B-2") == f"{name}:v1"
    assert (
        f"not in data.root (`registry retire {name}` takes it out)" in status(repo)["B-2"]["flags"]
    )
    run(repo, "registry", "retire", name, "--reason", "B-2 left the plant")
    console = run(repo, "dvc", "repro", "--force", "--single-item", "deploy").stderr
    assert json.loads((repo / "reports" / "deploy.json").read_text())["not_in_data"] == []
    assert f"B-2: no production version: {name}:v1's bundle left the deploy folder" in console
    assert not (repo / "deploy" / "models" / "B-2").exists()


def test_switching_the_model_type_moves_production_and_a_rollback_brings_it_back(
    tiny_built: Path, tmp_path: Path
) -> None:
    """`train.model` changed in a plain run: A-1's production goes to the new type (compared
    with the old one on their metrics), the old type loses it by the same event, and
    deploy/models ships the new bundle; a rollback ships the old one again."""
    repo = copy_repo(tiny_built, tmp_path / "repo")
    convae = "acoustic_A-1_convae"
    assert shipped(repo, "A-1") == f"{convae}:v1"
    write_params(repo, merge(TINY, {"train": {"model": "twfr-pca", "components": 4}}))
    run(repo, "dvc", "repro")
    pca = "acoustic_A-1_twfr-pca"
    decision = json.loads((repo / "reports/deploy.json").read_text())["devices"]["A-1"]["decision"]
    assert (decision["action"], decision["replaced"]) == ("promoted", f"{convae}:v1")
    assert decision["figures"]["holder"] == f"{convae}:v1" and "holder_auc" in decision["figures"]
    assert shipped(repo, "A-1") == f"{pca}:v1"
    store = Registry(repo / "model_store")
    assert {m["name"] for m in store.list(alias="production", scope="A-1")} == {pca}
    assert store.history(convae)[-1]["replaced"] == f"{convae}:v1"
    assert store.verify() == []
    row = status(repo)["A-1"]
    assert row["production"] == row["bundle"] == "twfr-pca:v1" and row["flags"] == []

    run(repo, "registry", "rollback", pca, "--reason", "back to the autoencoder")
    run(repo, "registry", "export", "--to", "deploy/models")
    assert shipped(repo, "A-1") == f"{convae}:v1"
