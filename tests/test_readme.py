"""The README's lifecycle and registry examples, run as written, top to bottom, in a temp repo
with the demo fleet's device names. After each command the test checks what the README says
it does, against its own record of what the commands so far should have left (who holds
production, which versions exist, the gate's policy), never against the command's own view."""

from __future__ import annotations

import glob
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pipelines.daily import NOTHING, RECORD
from pipelines.params import edit_params, load_params
from registry.api import Registry
from tests.patience import HANG_S
from tests.pipeline_repo import (
    PROJECT,
    TINY,
    TINY_POLICY,
    env,
    make_repo,
    merge,
    readme_commands,
    run,
)
from tests.registry_helpers import snapshot
from tests.trees import tree

pytestmark = pytest.mark.e2e
SECTIONS = ("## The lifecycle", "## The model registry", "## Detectors", "## Scoring with")
# The README's names are the default detector's (acoustic_LT-2_twfr-pca): its fleets use it.
DEFAULT = {"train": {"model": load_params(PROJECT / "params.yaml").train.model}}
DEVICES = ("LT-2", "FAN-7", "PMP-3")
CLEAN = "the store agrees with itself: every file, digest, index row and alias"
# versions never promoted: what `registry list --alias production` leaves out and, being
# more than 5, what `registry gc --keep 5` collects
COPIES = ("acoustic_FAN-7_twfr-pca", 7)


@dataclass
class Flow:
    """What the README says its commands have left so far, kept by the test: each model's
    production holders (the latest last), the versions in the store, the gate's policy, the
    versions each experiment registered or found registered, what gc said it would remove."""

    repo: Path
    holders: dict[str, list[int]]
    versions: set[str]  # NAME:vN
    policy: dict[str, Any]
    experiments: dict[str, dict[str, int]] = field(default_factory=dict)
    settings: dict[str, list[str]] = field(default_factory=dict)  # experiment -> its -S
    copies: list[str] = field(default_factory=list)
    collectable: list[str] = field(default_factory=list)

    @property
    def store(self) -> Registry:
        return Registry(self.repo / "model_store")

    def production(self) -> dict[str, int]:
        return {name: stack[-1] for name, stack in self.holders.items() if stack}


@dataclass(frozen=True)
class Ran:
    """One README command as typed, what it printed, and what was there before it ran."""

    words: list[str]
    done: subprocess.CompletedProcess[str]
    store: dict[str, bytes]
    bundles: dict[str, str]  # device -> the model its deployed bundle holds
    events: int  # lines in the event log

    def option(self, name: str) -> str:
        return self.words[self.words.index(name) + 1]


Check = Callable[[Flow, Ran], None]


def test_the_readme_examples_work_as_written(tmp_path: Path) -> None:
    fleet = {"generate": {"devices": list(DEVICES)}} | DEFAULT
    repo = make_repo(tmp_path / "repo", merge(TINY, fleet))
    run(repo, "dvc", "repro")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "baseline")
    flow = started(repo)
    register_copies(flow, *COPIES)
    ran = []
    for section in SECTIONS:
        for words in readme_commands(section):
            words = as_typed(repo, words)
            command = run_as_written(flow, words)
            check = CHECKS.get(tuple(words[:2]))
            assert check, f"{shlex.join(words)}: the README runs it, this test checks nothing"
            check(flow, command)
            agrees(flow)
            ran.append(words[:2])
    assert ["registry", "promote-experiment"] in ran and ["fleet", "status"] in ran
    assert ["fleet", "score"] in ran and ["fleet", "table"] in ran
    assert len(ran) >= 20
    the_report_changes_nothing_in_the_registry(flow)


def started(repo: Path) -> Flow:
    """A plain `dvc repro` promoted v1 of every device; the policy is the tiny fleet's."""
    names = [f"acoustic_{device}_twfr-pca" for device in DEVICES]
    option = dict(zip(TINY_POLICY[::2], TINY_POLICY[1::2], strict=True))
    metric, floor = option["--floor"].split("=")
    policy = {"floors": {metric: float(floor)}, "rollback_factor": 2.0}  # 2.0: the default
    return Flow(
        repo,
        holders={name: [1] for name in names},
        versions={f"{name}:v1" for name in names},
        policy=policy | {"reason": option["--reason"]},
    )


def run_as_written(flow: Flow, words: list[str]) -> Ran:
    before = (snapshot(flow.repo / "model_store"), bundles(flow.repo), len(events(flow)))
    return Ran(words, run(flow.repo, *words, check=False), *before)


def agrees(flow: Flow) -> None:
    """After every command: production and the versions are as the README says, and the
    store agrees with itself."""
    production = {m["name"]: m["version"] for m in flow.store.list(alias="production")}
    assert production == flow.production()
    assert {f"{m['name']}:v{m['version']}" for m in flow.store.list()} == flow.versions
    assert flow.store.verify() == []


def as_typed(repo: Path, words: list[str]) -> list[str]:
    """A README command as a shell in the project runs it: its globs expanded, `.venv/bin/`
    on the PATH (the tests run in that environment), EXP the last experiment that registered
    a version."""
    if "EXP" in words:
        found = sorted(Registry(repo / "model_store").list(), key=lambda m: m["created"])
        last = [m["lineage"]["dvc_experiment"] for m in found if m["lineage"]["dvc_experiment"]][-1]
        words = [last if w == "EXP" else w for w in words]
    typed = [words[0].removeprefix(".venv/bin/")]
    for word in words[1:]:
        matches = sorted(glob.glob(word, root_dir=repo)) if "*" in word else [word]
        assert matches, f"{word}: matches no file"
        typed += matches
    return typed


def register_copies(flow: Flow, name: str, count: int) -> None:
    """`count` versions of NAME that are never promoted (its v1's weights, each with another
    threshold)."""
    folder = flow.repo.parent / "copy"
    folder.mkdir()
    (folder / "model.pth").write_bytes(flow.store.version(f"{name}:v1").read("model"))
    *_, scope, model_type = name.split("_")
    for i in range(count):
        np.save(folder / "threshold.npy", np.array(100.0 + i))
        meta = flow.store.register(folder, "acoustic", scope, model_type)
        flow.copies.append(f"{name}:v{meta['version']}")
    flow.versions |= set(flow.copies)


# ------------------------------------------------------------------ what each command does
def table(text: str) -> list[dict[str, str]]:
    """A table the CLI printed, as one dict per row; its columns are where the rule's dashes
    are (a cell may hold spaces)."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if line and set(line) <= {"-", " "})
    spans = [m.span() for m in re.finditer(r"-+", lines[rule])]
    ends = [start for start, _ in spans[1:]] + [None]
    cut = [(start, end) for (start, _), end in zip(spans, ends, strict=True)]
    rows = []
    for line in lines[rule - 1 : rule] + lines[rule + 1 :]:
        if not line.strip():
            break
        rows.append([line[a:b].strip() for a, b in cut])
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def events(flow: Flow) -> list[dict[str, Any]]:
    """The store's event log as written, read here without the registry's code."""
    log = flow.repo / "model_store" / "events.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


def bundles(repo: Path) -> dict[str, str]:
    """Device -> the model its bundle in deploy/models holds, from each bundle's manifest."""
    return {
        manifest.parent.name: json.loads(manifest.read_text())["model"]
        for manifest in sorted((repo / "deploy" / "models").glob("*/bundle.json"))
    }


def metadata(flow: Flow, ref: str) -> dict[str, Any]:
    """A version's metadata file, read here without the registry's code."""
    name, version = ref.split(":v")
    return json.loads((flow.repo / "model_store" / f"{name}_v{version}_metadata.json").read_text())


def succeeded(ran: Ran) -> str:
    assert ran.done.returncode == 0, ran.done.stdout + ran.done.stderr
    return ran.done.stdout


def unchanged(flow: Flow, ran: Ran) -> None:
    assert snapshot(flow.repo / "model_store") == ran.store


def listed(flow: Flow, ran: Ran) -> None:
    """`registry list`: exactly the production holders, or what the experiment registered."""
    rows = table(succeeded(ran))
    if "--alias" in ran.words:
        assert ran.option("--alias") == "production"
        expected = flow.production()
    else:
        expected = flow.experiments[ran.option("--experiment")]
    assert sorted((r["name"], int(r["version"])) for r in rows) == sorted(expected.items())
    assert expected
    unchanged(flow, ran)


def experiment(flow: Flow, ran: Ran) -> None:
    """`dvc exp run`: every device's candidate is registered (or found registered) with the
    settings, the gate's verdict recorded, nothing moved."""
    console = succeeded(ran) + ran.done.stderr
    settings = [ran.words[i + 1] for i, word in enumerate(ran.words) if word == "-S"]
    (name,) = recorded(flow, ran)
    assert f"experiment {name}, not promoted: the gate would" in console
    flow.settings[name] = settings
    assert_settings(flow, name, settings)
    assert bundles(flow.repo) == ran.bundles


def recorded(flow: Flow, ran: Ran) -> list[str]:
    """The experiments that ran: each recorded the gate's verdict on one version of every
    device, new ones are added to the flow's versions."""
    verdicts = [e for e in events(flow)[ran.events :] if e["type"] == "checked"]
    names = list(dict.fromkeys(e["experiment"] for e in verdicts))
    for name in names:
        mine = {e["name"]: e["version"] for e in verdicts if e["experiment"] == name}
        assert sorted(ref.split("_")[1] for ref in mine) == sorted(DEVICES)
        flow.experiments[name] = mine
    new = {f"{m['name']}:v{m['version']}" for m in flow.store.list()} - flow.versions
    for ref in new:
        assert metadata(flow, ref)["lineage"]["dvc_experiment"] in names
    flow.versions |= new
    for model, version in (pair for name in names for pair in flow.experiments[name].items()):
        meta = metadata(flow, f"{model}:v{version}")  # registered as the type it trained
        assert meta["model_type"] == meta["params"]["train"]["model"] == model.split("_")[2]
    return names


def assert_settings(flow: Flow, name: str, settings: list[str]) -> None:
    """Each `-S key=value` is in the params of what the experiment registered; a
    `++devices.DEVICE.key=value` in that device's only, as its `train.key`."""
    for setting in settings:
        key, value = setting.lstrip("+").split("=")
        parts = key.split(".")
        for model, version in flow.experiments[name].items():
            params = metadata(flow, f"{model}:v{version}")["params"]
            if parts[0] != "devices":
                assert _param(params, key) == yaml.safe_load(value), (model, key)
            elif model.split("_")[1] == parts[1]:
                assert params["train"][parts[2]] == yaml.safe_load(value), (model, key)


def _param(params: dict[str, Any], key: str) -> Any:
    section, name = key.split(".")
    return params[section][name]


def history(flow: Flow, ran: Ran) -> None:
    """`registry history`: one row per event of the model in the log, oldest first."""
    name = ran.words[2]
    rows = [(r["event"], int(r["version"])) for r in table(succeeded(ran))]
    logged = [(e["type"], e["version"]) for e in events(flow) if e["name"] == name]
    assert rows == logged
    assert {"registered", "promoted", "checked"} <= {kind for kind, _ in rows}


def verdict(flow: Flow, ran: Ran) -> None:
    """`registry check`: the gate's verdict, the one the experiment recorded; exit 1 when it
    would refuse; nothing changes."""
    name, version = ran.words[2], int(ran.words[3])
    rows = table(ran.done.stdout)
    recorded_verdict = [
        e["gate"]["passed"]
        for e in events(flow)
        if (e["type"], e["name"], e["version"]) == ("checked", name, version)
    ][-1]
    assert rows[0]["verdict"] == ("passed" if recorded_verdict else "refused")
    assert ran.done.returncode == (0 if recorded_verdict else 1)
    figures = dict(r["detail"].split(" = ") for r in rows if r["verdict"] == "figure")
    assert figures["holder"] == f"{name}:v{flow.production()[name]}"
    unchanged(flow, ran)


def promoted_experiment(flow: Flow, ran: Ran) -> None:
    """`registry promote-experiment`: every version the experiment registered holds
    production, each through the gate."""
    rows = table(succeeded(ran))
    chosen = flow.experiments[ran.words[2]]
    assert sorted((r["name"], int(r["to"])) for r in rows) == sorted(chosen.items())
    assert {r["gate"] for r in rows} == {"passed"}
    for model, version in chosen.items():
        flow.holders[model].append(version)
    reasons = [e["reason"] for e in events(flow)[ran.events :]]
    assert reasons == [ran.option("--reason")] * len(chosen)


def status(flow: Flow, ran: Ran) -> None:
    """`fleet status`: per device its production, its bundle, and a flag when they differ."""
    rows = {r["device"]: r for r in table(succeeded(ran))}
    assert sorted(rows) == sorted(DEVICES)
    held = {model.split("_")[1]: (model, v) for model, v in flow.production().items()}
    for device, row in rows.items():
        model, version = held[device]
        assert row["production"] == f"{model.split('_')[2]}:v{version}"
        shipped = ran.bundles[device]
        assert row["bundle"] == shipped.split("_")[2]
        differs = shipped != f"{model}:v{version}"
        assert ("bundle differs from production" in row["flags"]) == differs
    unchanged(flow, ran)


def exported(flow: Flow, ran: Ran) -> None:
    """`registry export`: deploy/models holds a bundle of each production version (of the
    one model named), whose manifest names it."""
    out = succeeded(ran)
    production = flow.production()
    if ran.words[2] != "--to":
        production = {ran.words[2]: production[ran.words[2]]}
        device = ran.words[2].split("_")[1]
        assert out.strip() == str(Path(ran.option("--to")) / device)
    shipped = bundles(flow.repo)
    for model, version in production.items():
        assert shipped.get(model.split("_")[1]) == f"{model}:v{version}"


def rolled_back(flow: Flow, ran: Ran) -> None:
    """`registry rollback`: production goes back to the version that held it before, and
    with --export deploy/models ships it there."""
    name = ran.words[2]
    (row,) = table(succeeded(ran))
    left = flow.holders[name].pop()
    back = flow.holders[name][-1]
    assert (row["name"], row["from"], int(row["to"])) == (name, f"{name}:v{left}", back)
    if "--export" in ran.words:
        assert bundles(flow.repo)[name.split("_")[1]] == f"{name}:v{back}"
        assert f"{name}@production exported to" in ran.done.stderr


def promoted(flow: Flow, ran: Ran) -> None:
    """`registry promote`: production moves to the version through the gate, or stays with
    the gate's reason."""
    name, version = ran.words[2], int(ran.words[3])
    if ran.done.returncode:
        assert "refused by the gate" in ran.done.stderr
        unchanged(flow, ran)
        return
    (row,) = table(ran.done.stdout)
    assert (row["name"], int(row["to"]), row["gate"]) == (name, version, "passed")
    flow.holders[name].append(version)


def retired(flow: Flow, ran: Ran) -> None:
    """`registry retire`: the model holds production no more; its versions stay."""
    name = ran.words[2]
    (row,) = table(succeeded(ran))
    assert (row["name"], int(row["retired"])) == (name, flow.holders[name][-1])
    flow.holders[name] = []


def policy(flow: Flow, ran: Ran) -> None:
    """`registry policy`: the floors, the rollback factor, and who set them why."""
    rows = {r["rule"]: r["value"] for r in table(succeeded(ran))}
    floors = {k.removeprefix("floor "): float(v) for k, v in rows.items() if k.startswith("floor")}
    assert floors == flow.policy["floors"]
    assert float(rows["rollback factor"]) == flow.policy["rollback_factor"]
    assert rows["set"].endswith(f": {flow.policy['reason']}")
    unchanged(flow, ran)


def policy_set(flow: Flow, ran: Ran) -> None:
    """`registry set-policy`: the floors named change, the rest stays, the reason is kept."""
    succeeded(ran)
    for i, word in enumerate(ran.words):
        if word == "--floor":
            metric, value = ran.words[i + 1].split("=")
            flow.policy["floors"][metric] = float(value)
    flow.policy["reason"] = ran.option("--reason")
    now = json.loads(run(flow.repo, "registry", "policy", "--json").stdout)
    assert now["floors"] == flow.policy["floors"] and now["set"]["reason"] == ran.option("--reason")
    assert now["rollback_factor"] == flow.policy["rollback_factor"]


def shown(flow: Flow, ran: Ran) -> None:
    """`registry show NAME@production`: the card of the version in production, its lineage,
    metrics and every file with the start of its sha256."""
    card = succeeded(ran)
    name = ran.words[2].removesuffix("@production")
    ref = f"{name}:v{flow.production()[name]}"
    meta = metadata(flow, ref)
    assert card.splitlines()[0] == f"{ref}  (production)"
    assert f"experiment    {meta['lineage']['dvc_experiment']}" in card
    assert re.search(rf"\n  auc +{meta['metrics']['auc']:.4g}\n", card)
    for artifact in meta["artifacts"].values():
        assert f"{artifact['file']}  " in card and artifact["sha256"][:12] in card
    assert "--verify" in ran.words  # and every file was checked against its digest
    assert card.splitlines()[-1].startswith("files verified: the metadata and every file match")
    unchanged(flow, ran)


def diffed(flow: Flow, ran: Ran) -> None:
    """`registry diff NAME 1 2`: a row per key that differs, the experiment's settings among
    them, no key whose values are the same."""
    name, first, second = ran.words[2], int(ran.words[3]), int(ran.words[4])
    rows = {r["key"]: (r[f"v{first}"], r[f"v{second}"]) for r in table(succeeded(ran))}
    assert all(a != b for a, b in rows.values())
    made = next(e for e, found in flow.experiments.items() if found.get(name) == second)
    for setting in flow.settings[made]:
        key, value = setting.split("=")
        old = _param(metadata(flow, f"{name}:v{first}")["params"], key)
        assert rows[f"params.{key}"] == (str(old), value)
    assert "params.train.seed" not in rows  # the same in both
    unchanged(flow, ran)


def verified(flow: Flow, ran: Ran) -> None:
    """`registry verify`: a store that agrees with itself says so, exit 0."""
    assert succeeded(ran).strip() == CLEAN
    unchanged(flow, ran)


def reindexed(flow: Flow, ran: Ran) -> None:
    """`registry reindex`: versions.json says each model's latest version."""
    models = {ref.split(":v")[0] for ref in flow.versions}
    assert succeeded(ran).strip() == f"reindexed {len(models)} models"
    latest = json.loads((flow.repo / "model_store" / "versions.json").read_text())
    assert latest == {
        m: max(_number(r) for r in flow.versions if r.startswith(m + ":")) for m in models
    }


def backed_up(flow: Flow, ran: Ran) -> None:
    """`registry backup DIR`: a copy of every file of the store, which verifies."""
    out = succeeded(ran).splitlines()
    copy = flow.repo / ran.words[2]
    assert out == [
        f"copied {len(ran.store) - 1} files to {ran.words[2]}",
        CLEAN.replace("the store agrees with itself", "the copy verifies"),
    ]
    books = {".lock"}
    assert {k: v for k, v in snapshot(copy).items() if k not in books} == {
        k: v for k, v in ran.store.items() if k not in books
    }
    assert {f"{m['name']}:v{m['version']}" for m in Registry(copy).list()} == flow.versions
    unchanged(flow, ran)


def collected(flow: Flow, ran: Ran) -> None:
    """`registry gc`: what an interrupted write left (here nothing). `registry gc --keep K`:
    --dry-run lists the versions beyond each model's newest K, never one that held an alias,
    and deletes nothing; then gc deletes those, files and all."""
    out = succeeded(ran).splitlines()
    if "--keep" not in ran.words:
        assert out == ["nothing to remove"]
        unchanged(flow, ran)
        return
    keep = int(ran.option("--keep"))
    if "--dry-run" in ran.words:
        assert out[0] == "would remove:"
        flow.collectable = out[1:]
        name = flow.copies[0].split(":v")[0]
        newest = sorted((r for r in flow.versions if r.startswith(f"{name}:")), key=_number)
        assert flow.collectable == [c for c in flow.copies if c not in newest[-keep:]] != []
        unchanged(flow, ran)
        return
    assert out == flow.collectable
    held = {f"{e['name']}:v{e['to_version']}" for e in events(flow) if "to_version" in e}
    assert not held & set(out)
    flow.versions -= set(out)
    for ref in out:
        name, version = ref.split(":v")
        assert not list((flow.repo / "model_store").glob(f"{name}_v{version}_*"))


def _number(ref: str) -> int:
    return int(ref.split(":v")[1])


def compared(flow: Flow, ran: Ran) -> None:
    """`fleet compare workspace EXP`: per device the AUC and pAUC of the last run and of the
    experiment (as registered), and the change."""
    a, b = ran.words[2:4]
    rows = table(succeeded(ran))
    figures = json.loads((flow.repo / "eval" / "plots" / "devices.json").read_text())
    base = {row["device"]: row for row in figures}
    theirs = {m.split("_")[1]: f"{m}:v{v}" for m, v in flow.experiments[b].items()}
    assert sorted(r["device"] for r in rows) == sorted(DEVICES)
    for row in rows:
        for key, title in (("auc", "AUC"), ("pauc", "pAUC")):
            mine = base[row["device"]][key]
            other = metadata(flow, theirs[row["device"]])["metrics"][key]
            assert row[f"{title} {a}"] == f"{mine:.3f}" and row[f"{title} {b}"] == f"{other:.3f}"
            assert float(row[f"{title} change"]) == pytest.approx(other - mine, abs=1e-3)


def scored(flow: Flow, ran: Ran) -> None:
    """`fleet score BUNDLE CLIP...`: a verdict per clip from the bundle's model: the score
    the evaluate stage gave the clip (the bundle is the model it evaluated), and its
    threshold."""
    bundle, clips = Path(ran.words[2]), ran.words[3:]
    rows = table(succeeded(ran))
    model = ran.bundles[bundle.name]
    assert ran.done.stderr.splitlines()[0] == f"device {bundle.name}: {model}"
    deployed = json.loads((flow.repo / "reports" / "deploy.json").read_text())["devices"]
    entry = deployed[bundle.name]
    assert f"{entry['name']}:v{entry['version']}" == model
    evaluated = json.loads((flow.repo / "eval/devices" / bundle.name / "scores.json").read_text())
    score = {f"data/demo/{row['file']}": row["score"] for row in evaluated}
    assert [row["clip"] for row in rows] == clips
    for row in rows:
        # printed to 5 decimals; the bundle scores in float32 as the evaluate stage did
        assert float(row["score"]) == pytest.approx(score[row["clip"]], rel=1e-5, abs=1e-5)
        assert row["threshold"] == f"{entry['threshold']:.5f}"
        above = float(row["score"]) > entry["threshold"]
        assert row["verdict"] == ("ANOMALY" if above else "normal")


def tabled(flow: Flow, ran: Ran) -> None:
    """`fleet table`: each device's figures of the last run, and the fleet's."""
    out = succeeded(ran)
    figures = json.loads((flow.repo / "eval" / "plots" / "devices.json").read_text())
    rows = {r["device"]: r for r in table(out)}
    assert {d["device"]: rows[d["device"]]["AUC"] for d in figures} == {
        d["device"]: f"{d['auc']:.3f}" for d in figures
    }
    fleet = json.loads((flow.repo / "eval" / "metrics.json").read_text())
    assert f"{fleet['devices']} devices, mean AUC {fleet['auc_mean']:.3f}" in out


CHECKS: dict[tuple[str, ...], Check] = {
    ("registry", "list"): listed,
    ("registry", "history"): history,
    ("registry", "check"): verdict,
    ("registry", "promote-experiment"): promoted_experiment,
    ("registry", "export"): exported,
    ("registry", "rollback"): rolled_back,
    ("registry", "promote"): promoted,
    ("registry", "retire"): retired,
    ("registry", "policy"): policy,
    ("registry", "set-policy"): policy_set,
    ("registry", "show"): shown,
    ("registry", "diff"): diffed,
    ("registry", "verify"): verified,
    ("registry", "reindex"): reindexed,
    ("registry", "gc"): collected,
    ("registry", "backup"): backed_up,
    ("dvc", "exp"): experiment,
    ("fleet", "status"): status,
    ("fleet", "compare"): compared,
    ("fleet", "score"): scored,
    ("fleet", "table"): tabled,
}


def the_report_changes_nothing_in_the_registry(flow: Flow) -> None:
    """The README's way to redraw the page after a change by hand: the page shows the
    rollback and reads the store without changing a byte of it."""
    before = snapshot(flow.repo / "model_store")
    run(flow.repo, "dvc", "repro", "--force", "--single-item", "report")
    assert snapshot(flow.repo / "model_store") == before
    page = (flow.repo / "report" / "index.html").read_text()
    assert "noisy on site" in page and "machine scrapped" in page


def test_the_daily_loop_examples_work_as_written(tmp_path: Path) -> None:
    fleet = {"generate": {"devices": ["LT-2", "FAN-7", "PMP-3"], "start_date": "20261101"}}
    fleet |= DEFAULT
    repo = make_repo(tmp_path / "repo", merge(TINY, fleet))
    commands = readme_commands("## The daily loop")
    for words in commands:
        run(repo, *words)
    assert [w[:2] for w in commands].count(["fleet", "daily"]) == 3
    store = Registry(repo / "model_store")
    # The replay reproduces day 2's fine-tuning byte for byte: v2 again, nothing new.
    latest = store.get("acoustic_LT-2_twfr-pca")
    assert (latest["version"], latest["lineage"]["parent_version"]) == (2, 1)
    checked = [e for e in store.history("acoustic_LT-2_twfr-pca") if e["type"] == "checked"]
    assert checked and checked[-1]["experiment"] and checked[-1]["to_version"] == 2

    cron = readme_commands("## The daily loop", block=1)[0]  # the job cron runs, as written
    job = as_typed(repo, cron[cron.index("&&") + 1 : cron.index(">>")])
    assert job[:3] == ["fleet", "daily", "--days-ago"]
    # as cron runs it: the environment's `fleet`, with no venv on the PATH
    job[0] = str(Path(sys.executable).parent / "fleet")
    today = date.today()
    done = subprocess.run(
        job,
        cwd=repo,
        env=env() | {"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=HANG_S,
        check=False,
    )
    ran = re.search(r"^daily (\d{8}): ran$", done.stdout, re.M)
    assert done.returncode == NOTHING and ran, done.stdout + done.stderr  # a day without audio
    # the day before the day it ran, which may have begun since the test read the clock
    yesterday = ran[1]
    assert yesterday in {(d - timedelta(days=1)).strftime("%Y%m%d") for d in (today, date.today())}
    said = done.stdout.split("commit the day: ")[1].splitlines()[0]
    for command in said.split(" && "):  # what it says to commit is the whole of the run's record
        run(repo, *shlex.split(command))
    assert run(repo, "git", "status", "--porcelain").stdout == ""
    for device in ("LT-2", "FAN-7", "PMP-3"):  # no audio for yesterday here: nothing moves
        assert f"{device}: skipped in extract: no clips recorded on {yesterday}" in done.stdout
        assert f"production acoustic_{device}_twfr-pca:v2 kept" in done.stdout


def test_your_own_fleet_commands_work_as_written(tmp_path: Path) -> None:
    """The second block of "Your own fleet" (the first is the folder layout), on a fleet
    generated where a user's folder would be."""
    repo = make_repo(tmp_path / "repo", TINY)
    run(repo, "dvc", "repro", "generate")
    fleet = tmp_path / "my-fleet"
    shutil.copytree(repo / "data" / "demo", fleet)
    edit_params(repo / "params.yaml", {"data": {"root": str(fleet)}})  # as the README says
    commands = readme_commands("## Your own fleet", block=1)
    before = tree(fleet)
    for words in commands:
        run(repo, *words)
    assert tree(fleet) == before  # "nothing is written under data.root"
    assert commands[0] == ["dvc", "repro"]
    assert len(Registry(repo / "model_store").list(alias="production")) == 2
    assert "fleet trained" in run(repo, "git", "log", "--oneline").stdout
    assert run(repo, "git", "status", "--porcelain").stdout == ""  # the run's record, all of it
    assert commands[1][2:] == list(RECORD)  # as `fleet daily` says it
