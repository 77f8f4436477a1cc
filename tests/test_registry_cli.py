"""registry.cli: every command over the API, --json, --store / $MODEL_STORE, and the error path.

The CLI finds families through their entry points, where only `acoustic` is installed: toy
models are promoted on their floors alone (no holder to compare with); comparisons and
exports use real acoustic models."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

from registry import export
from registry.api import Registry
from registry.cli import app
from registry.errors import RegistryError
from tests.patience import HANG_S
from tests.pipeline_repo import fresh_python, readme_commands
from tests.registry_helpers import (
    ARCHITECTURE,
    FAMILY,
    MODEL_TYPE,
    NAME,
    SCOPE,
    flip_byte,
    make_acoustic_artifacts,
    make_artifacts,
    snapshot,
    write_inference,
)

REPO = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).parent / "registry"
ACOUSTIC = f"acoustic_{SCOPE}_{MODEL_TYPE}"
OTHER = f"{FAMILY}_FAN-7_{MODEL_TYPE}"
GATE = {"auc": 0.9}
GOOD = {"auc": 0.95}
runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODEL_STORE", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("REGISTRY_ACTOR", "cli-tester")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store whose gate is a floor on auc, as a site sets it (the toy family these tests
    register declares none, and the CLI, which cannot find it, would apply no bound)."""
    registry = Registry(tmp_path / "store")
    registry.init()
    registry.set_policy(floors=GATE, reason="the site's gate")
    return tmp_path / "store"


def cli(*args: str | Path, env: dict[str, str] | None = None) -> Any:
    result = runner.invoke(app, [str(a) for a in args], env=env)
    return result


def ok(*args: str | Path, env: dict[str, str] | None = None) -> str:
    result = cli(*args, env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def ok_json(*args: str | Path, env: dict[str, str] | None = None) -> Any:
    return json.loads(ok(*args, "--json", env=env))


def refused(*args: str | Path) -> str:
    """The message of the RegistryError a command stops with (`main` prints it as one line)."""
    result = cli(*args)
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, RegistryError), result.exception
    return str(result.exception)


def run_main(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real entry point: RegistryError -> `error: ...` on stderr, exit 1."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MODEL_STORE", None)
    return subprocess.run(
        [sys.executable, "-c", "from registry.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=HANG_S,
    )


def assert_one_error_line(
    result: subprocess.CompletedProcess, *fragments: str, status: int = 1
) -> str:
    assert result.returncode == status, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""
    return lines[0]


def register_args(folder: Path, scope: str = SCOPE) -> list[str | Path]:
    """`registry register FOLDER` with the family, scope and model type options."""
    return ["register", folder, "--family", FAMILY, "--scope", scope, "--model-type", MODEL_TYPE]


def register(
    store: Path,
    tmp_path: Path,
    tag: str,
    scope: str = SCOPE,
    metrics: dict[str, float] | None = None,
    env: dict[str, str] | None = None,
    **files: Any,
) -> dict[str, Any]:
    """A toy model through `registry register`, by default with metrics that pass the floors."""
    folder = make_artifacts(tmp_path / "art" / tag, tag.encode(), **files)
    metrics_file = tmp_path / "art" / f"{tag}.json"
    metrics_file.write_text(json.dumps(GOOD if metrics is None else metrics))
    args = register_args(folder, scope)
    return ok_json(*args, "--metrics", metrics_file, "--store", store, env=env)


def register_acoustic(store: Path, tmp_path: Path, seed: int, bias: float = 0.0) -> int:
    """A real acoustic model (auc 0.95) through `registry register --extra`; its version."""
    folder = make_acoustic_artifacts(tmp_path / "acoustic" / f"s{seed}-b{bias:g}", seed, bias)
    (tmp_path / "acoustic" / "metrics.json").write_text(json.dumps(GOOD))
    extra = write_inference(tmp_path / "acoustic" / "inference.json")
    meta = ok_json(
        "register",
        folder,
        "--family",
        "acoustic",
        "--scope",
        SCOPE,
        "--model-type",
        MODEL_TYPE,
        "--metrics",
        tmp_path / "acoustic" / "metrics.json",
        "--extra",
        extra,
        "--store",
        store,
    )
    return meta["version"]


# ================================================================== register
def test_register_table_json_metrics_and_params(store: Path, tmp_path: Path) -> None:
    folder = make_artifacts(tmp_path / "a1", b"w1", optional=True)
    (tmp_path / "metrics.json").write_text(json.dumps({"auc": 0.91, "f1": 0.5}))
    (tmp_path / "params.yml").write_text("train:\n  lr: 0.001\n  epochs: 5\n")
    args = register_args(folder)
    out = ok(
        *args,
        "--metrics",
        tmp_path / "metrics.json",
        "--params",
        tmp_path / "params.yml",
        "--store",
        store,
    )
    assert "registered" in out and NAME in out and "1" in out.split()
    meta = Registry(store).get(f"{NAME}:v1")
    assert meta["metrics"] == {"auc": 0.91, "f1": 0.5}
    assert meta["params"] == {"train": {"lr": 0.001, "epochs": 5}}
    assert meta["actor"] == "cli-tester"
    assert set(meta["artifacts"]) == {
        "model",
        "scale",
        "threshold",
        "loss_curve",
        "checkpoint_best",
    }

    again = ok(*args, "--store", store)
    assert "already registered as" in again
    again_json = json.loads(ok(*args, "--store", store, "--json"))
    assert again_json["existing"] is True and again_json["version"] == 1


def test_register_keeps_extra_metadata_from_a_file(store: Path, tmp_path: Path) -> None:
    (tmp_path / "extra.yaml").write_text("inference:\n  sample_rate: 16000\n")
    folder = make_artifacts(tmp_path / "a1")
    ok(*register_args(folder), "--extra", tmp_path / "extra.yaml", "--store", store)
    assert Registry(store).get(NAME)["inference"] == {"sample_rate": 16000}


@pytest.mark.parametrize("option", ["--metrics", "--params", "--extra"])
def test_register_bad_metadata_file_is_a_usage_error(
    store: Path, tmp_path: Path, option: str
) -> None:
    folder, before = make_artifacts(tmp_path / "a1"), snapshot(store)
    (tmp_path / "m.json").write_text("[1, 2]")
    result = cli(*register_args(folder), option, tmp_path / "m.json", "--store", store)
    assert result.exit_code == 2
    assert "expected a mapping" in result.output
    missing = cli(*register_args(folder), option, tmp_path / "nope.json", "--store", store)
    assert missing.exit_code == 2 and "cannot read" in missing.output
    assert snapshot(store) == before


def test_register_refuses_extra_that_sets_recorded_fields(store: Path, tmp_path: Path) -> None:
    (tmp_path / "extra.json").write_text(json.dumps({"version": 7}))
    folder = make_artifacts(tmp_path / "a1")
    message = refused(*register_args(folder), "--extra", tmp_path / "extra.json", "--store", store)
    assert "may not set recorded fields: version" in message
    assert Registry(store).list() == []


# ================================================================== read commands
@pytest.fixture
def two_models(store: Path, tmp_path: Path) -> Path:
    register(store, tmp_path, "v1")
    register(store, tmp_path, "v2")
    register(store, tmp_path, "fan", scope="FAN-7")
    Registry(store).promote(NAME, 2)
    return store


def test_list_table_and_json_and_filters(two_models: Path) -> None:
    table = ok("list", "--store", two_models).splitlines()
    header = ["name", "version", "aliases", "created", "gated", "metrics", "experiment"]
    assert table[0].split() == header
    assert set(table[1]) <= {"-", " "}
    assert len(table) == 5
    production = [
        line.split() for line in table[2:] if line.split()[:3] == [NAME, "2", "production"]
    ]
    assert production and production[0][4:6] == ["auc", "0.95"]  # what the gate judges it on
    every = ok_json("list", "--store", two_models)
    assert len(every) == 3
    assert [m["version"] for m in ok_json("list", "--name", NAME, "--store", two_models)] == [1, 2]
    fan = ok_json("list", "--scope", "FAN-7", "--store", two_models)
    assert [m["name"] for m in fan] == [f"{FAMILY}_FAN-7_{MODEL_TYPE}"]
    prod = ok_json("list", "--alias", "production", "--store", two_models)
    assert [(m["version"], m["aliases"]) for m in prod] == [(2, ["production"])]


def test_list_by_experiment(store: Path, tmp_path: Path) -> None:
    register(store, tmp_path, "v1")
    register(store, tmp_path, "v2", env={"DVC_EXP_NAME": "exp-a"})
    register(store, tmp_path, "v3", env={"DVC_EXP_NAME": "exp-b"})
    found = ok_json("list", "--experiment", "exp-a", "--store", store)
    assert [(m["version"], m["lineage"]["dvc_experiment"]) for m in found] == [(2, "exp-a")]
    table = ok("list", "--experiment", "exp-b", "--store", store).splitlines()
    assert len(table) == 3 and table[2].split()[1] == "3" and table[2].split()[-1] == "exp-b"
    assert ok_json("list", "--experiment", "exp-c", "--store", store) == []


def test_show_refs(two_models: Path) -> None:
    assert ok_json("show", NAME, "--store", two_models)["version"] == 2
    assert ok_json("show", f"{NAME}:v1", "--store", two_models)["version"] == 1
    shown = ok_json("show", f"{NAME}@production", "--store", two_models)
    assert shown["version"] == 2 and shown["aliases"] == ["production"]


def test_read_commands_load_neither_the_lock_nor_a_models_library(two_models: Path) -> None:
    """`show` and `list` read the index: they pay for neither filelock nor torch at start-up."""
    reads = [["show", f"{NAME}@production"], ["list", "--alias", "production"]]
    code = (
        "import sys; from typer.testing import CliRunner; from registry.cli import app; "
        f"codes = [CliRunner().invoke(app, [*c, '--store', {str(two_models)!r}]).exit_code "
        f"for c in {reads!r}]; "
        "print(codes, sorted({'filelock', 'torch'} & set(sys.modules)))"
    )
    assert fresh_python(code) == "[0, 0] []"


def test_every_familys_declared_policy_is_read_without_torch() -> None:
    """`registry list` reads each listed family's declared POLICY (its gated metrics): the
    family modules import torch only where a model is loaded."""
    modules = [f"pipelines.{f}.family" for f in ("acoustic", "tabular", "keypoint")]
    code = (
        "import importlib, sys; "
        f"policies = [importlib.import_module(m).POLICY for m in {modules!r}]; "
        "print(len(policies), 'torch' in sys.modules)"
    )
    assert fresh_python(code) == "3 False"


def test_show_is_a_model_card_with_short_lines(store: Path, tmp_path: Path) -> None:
    """Identity and aliases first, then lineage, metrics, params (those that differ from the
    parent when there is one), the family's settings and the files with short digests."""
    registry = Registry(store)
    for tag, lr, parent in (("v1", 0.001, None), ("v2", 0.0003, 1)):
        registry.register(
            make_artifacts(tmp_path / "art" / tag, tag.encode()),
            *(FAMILY, SCOPE, MODEL_TYPE),
            metrics={"auc": 0.95},
            params={"train": {"lr": lr}},
            extra={"inference": {"rate": 16000}},
            parent_version=parent,
        )
    ok("promote", NAME, "2", "--store", store)
    card = ok("show", f"{NAME}@production", "--store", store)
    lines = card.splitlines()
    assert lines[0] == f"{NAME}:v2  (production)"
    assert lines[1] == f"family {FAMILY}, device {SCOPE}, model type {MODEL_TYPE}"
    sections = [
        line for line in lines if line and not line.startswith((" ", NAME, "family", "registered"))
    ]
    assert sections == [
        *("lineage", "metrics", "params that differ from v1", "settings", "files"),
        f"files not verified here (`registry show {NAME}:v2 --verify` checks them)",
    ]
    assert ["started", "from", "v1", "(fine-tuned)"] in [line.split() for line in lines]
    assert ["train.lr", "0.001", "->", "0.0003"] in [line.split() for line in lines]
    assert ["inference.rate", "16000"] in [line.split() for line in lines]
    model = Registry(store).get(f"{NAME}:v2")["artifacts"]["model"]
    assert any(line.endswith(f"  {model['sha256'][:12]}") for line in lines)
    assert max(map(len, lines)) < 100
    first = ok("show", f"{NAME}:v1", "--store", store)
    assert "params\n  train.lr  0.001" in first  # no parent: every param


def test_a_mistyped_name_gets_a_suggestion_and_at_n_the_version_syntax(two_models: Path) -> None:
    typo = NAME[:-2] + NAME[-1] + NAME[-2]  # the last two letters swapped
    assert f"did you mean {NAME}?" in refused("show", typo, "--store", two_models)
    assert f"did you mean {NAME}?" in refused("history", typo, "--store", two_models)
    said = refused("show", f"{NAME}@4", "--store", two_models)
    assert said == f"{NAME} has no alias '4' (version 4 is written {NAME}:v4)"
    far = refused("show", "toy_ZZ-9_other", "--store", two_models)
    assert "(`registry list` shows them)" in far


@pytest.mark.parametrize(
    ("args", "kind", "status"),
    [
        (["show", "toy_LT-2_convea"], "NotFoundError", 1),
        (["show"], "UsageError", 2),
        (["gc", "--keep", "0"], "UsageError", 2),
        (["promote", NAME, "2", "--force"], "UsageError", 2),
    ],
)
def test_with_json_an_error_is_one_json_line_on_stderr(
    two_models: Path, args: list[str], kind: str, status: int
) -> None:
    result = run_main(*args, "--store", two_models, "--json")
    assert result.returncode == status and result.stdout == ""
    (line,) = result.stderr.splitlines()
    error = json.loads(line)["error"]
    assert sorted(error) == ["message", "status", "type"]
    assert (error["type"], error["status"]) == (kind, status) and error["message"]


def test_every_command_says_what_it_does_with_an_example() -> None:
    command = typer.main.get_command(app)
    for name, sub in command.commands.items():
        summary, *rest = (sub.help or "").split("\n\n")
        assert "\n" not in summary and len(summary) < 100, name
        assert "Example: `registry " in " ".join(rest), name
    assert not (command.help or "").startswith("`registry`: the command line")


def test_store_from_env_and_option_precedence(two_models: Path, tmp_path: Path) -> None:
    env = {"MODEL_STORE": str(two_models)}
    assert len(json.loads(ok("list", "--json", env=env))) == 3
    assert json.loads(ok("show", NAME, "--json", env=env))["version"] == 2
    empty = tmp_path / "empty-store"
    missing = cli("list", "--json", "--store", empty, env=env)  # --store wins
    assert missing.exit_code == 1 and "empty-store: no model store here" in str(missing.exception)
    assert not empty.exists()


def test_default_store_is_model_store_in_the_working_directory(tmp_path: Path) -> None:
    """The project's own store is made by its first write; a store named on purpose is not."""
    ok(*register_args(make_artifacts(tmp_path / "a1")))
    assert (tmp_path / "model_store" / "events.jsonl").is_file()
    assert len(ok_json("list")) == 1


def test_history_and_diff(store: Path, tmp_path: Path) -> None:
    for tag, auc in (("v1", 0.9), ("v2", 0.95)):
        register(store, tmp_path, tag, metrics={"auc": auc})
    ok("promote", NAME, "1", "--reason", "first one", "--store", store)
    records = ok_json("history", NAME, "--store", store)
    assert [r["type"] for r in records] == ["registered", "registered", "promoted"]
    assert records[-1]["reason"] == "first one" and records[-1]["actor"] == "cli-tester"
    table = ok("history", NAME, "--store", store).splitlines()
    assert table[0].split() == ["time", "event", "version", "alias", "from", "actor", "detail"]
    last = ["promoted", "1", "production", "-", "cli-tester", "first", "one"]
    assert table[-1].split()[1:] == last
    assert ok_json("diff", NAME, "1", "2", "--store", store) == {"metrics.auc": [0.9, 0.95]}
    diff_table = ok("diff", NAME, "1", "2", "--store", store).splitlines()
    assert diff_table[0].split() == ["key", "v1", "v2"]
    assert diff_table[2:] == ["metrics.auc  0.9  0.95"]
    same = ok("diff", NAME, "1", "1", "--store", store)
    assert same == "v1 and v1 have the same params and metrics\n"


def test_history_names_another_types_version_in_its_rows(store: Path, tmp_path: Path) -> None:
    """An experiment of another model type checked against this model's production shows in
    this model's history as that type's NAME:vN, never as a bare number of this model."""
    register(store, tmp_path, "v1")
    ok("promote", NAME, "1", "--store", store)
    other = Registry(store).register(
        make_artifacts(tmp_path / "art" / "pca", b"pca"), FAMILY, SCOPE, "pca", metrics=GOOD
    )["name"]
    Registry(store).record_check(other, 1, "exp-b")
    rows = [r.split() for r in ok("history", NAME, "--store", store).splitlines()[2:]]
    assert [r[1:6] for r in rows[-1:]] == [
        ["checked", f"{other}:v1", "production", f"{NAME}:v1", "cli-tester"]
    ]


# ================================================================== promote / rollback
def test_promote_rollback_walk(store: Path, tmp_path: Path) -> None:
    for seed in (1, 2, 3):
        register_acoustic(store, tmp_path, seed)
    first = ok("promote", ACOUSTIC, "1", "--store", store).splitlines()
    assert first[0].split() == ["name", "alias", "from", "to", "gate"]
    assert first[2].split() == [ACOUSTIC, "production", "-", "1", "passed"]
    for version in ("3", "2"):
        record = ok_json("promote", ACOUSTIC, version, "--store", store)
        assert record["gate"]["passed"] and "candidate_error" in record["gate"]["figures"]
    register_acoustic(store, tmp_path, 4)
    checked = cli("check", ACOUSTIC, "4", "--store", store).output
    error = re.search(r"candidate_error = (\S+)", checked).group(1)  # as the tables round
    exact = json.loads(cli("check", ACOUSTIC, "4", "--store", store, "--json").stdout)
    assert float(error) == pytest.approx(exact["figures"]["candidate_error"], rel=1e-3)
    assert len(error.replace(".", "").lstrip("0")) <= 4
    rolled = cli("rollback", ACOUSTIC, "--reason", "noisy", "--store", store)
    assert rolled.stdout.splitlines()[2].split() == [
        *(ACOUSTIC, "production", f"{ACOUSTIC}:v2", "3", "-")
    ]
    assert rolled.stderr == (
        f"{ACOUSTIC}@production not exported: "
        f"`registry export --to DEPLOY_FOLDER {ACOUSTIC}` ships it\n"
    )
    rows = [r.split() for r in ok("history", ACOUSTIC, "--store", store).splitlines()[2:]]
    moves = [r[4] for r in rows if r[1] != "registered"]
    assert moves == ["-", f"{ACOUSTIC}:v1", f"{ACOUSTIC}:v3", f"{ACOUSTIC}:v2"]
    record = ok_json("rollback", ACOUSTIC, "--store", store)
    assert (record["from_version"], record["to_version"]) == (3, 1)
    assert ok_json("show", f"{ACOUSTIC}@production", "--store", store)["version"] == 1
    before = snapshot(store)
    result = run_main("rollback", ACOUSTIC, "--store", store)
    assert_one_error_line(result, f"{ACOUSTIC}@production", "no previous holder")
    assert snapshot(store) == before


def test_rollback_with_export_ships_the_version_it_returns_to(store: Path, tmp_path: Path) -> None:
    for seed in (1, 2):
        register_acoustic(store, tmp_path, seed)
        ok("promote", ACOUSTIC, str(seed), "--store", store)
    deploy = tmp_path / "deploy"
    shipped = Path(ok_json("export", ACOUSTIC, "--to", deploy, "--store", store)["exported"])
    assert json.loads((shipped / "bundle.json").read_text())["model"] == f"{ACOUSTIC}:v2"
    rolled = cli("rollback", ACOUSTIC, "--export", deploy, "--store", store)
    assert rolled.stderr == f"{ACOUSTIC}@production exported to {shipped}\n"
    assert json.loads((shipped / "bundle.json").read_text())["model"] == f"{ACOUSTIC}:v1"


def test_a_rollback_whose_export_is_refused_says_the_alias_moved(
    store: Path, tmp_path: Path
) -> None:
    for seed in (1, 2):
        register_acoustic(store, tmp_path, seed)
        ok("promote", ACOUSTIC, str(seed), "--store", store)
    deploy = tmp_path / "deploy"
    (deploy / SCOPE).mkdir(parents=True)  # the user's own folder, named like the device
    (deploy / SCOPE / "notes.txt").write_text("mine")
    result = run_main("rollback", ACOUSTIC, "--export", deploy, "--store", store)
    assert_one_error_line(
        result, f"{ACOUSTIC}@production is back on v1 but not exported", str(deploy / SCOPE)
    )
    assert ok_json("show", f"{ACOUSTIC}@production", "--store", store)["version"] == 1
    assert (deploy / SCOPE / "notes.txt").read_text() == "mine"


def test_promote_json_and_alias(store: Path, tmp_path: Path) -> None:
    register(store, tmp_path, "v1", metrics={})
    record = ok_json("promote", NAME, "1", "--alias", "staging", "--store", store)
    assert (record["type"], record["alias"], record["to_version"]) == ("promoted", "staging", 1)
    assert "gate" not in record
    again = ok("promote", NAME, "1", "--alias", "staging", "--store", store)
    assert again.splitlines()[2].split() == [NAME, "staging", "-", "1", "-"]
    assert len(ok_json("history", NAME, "--store", store)) == 2


def test_promote_meets_the_store_policy_wherever_it_runs(store: Path, tmp_path: Path) -> None:
    """A params.yaml where the command runs sets nothing: the gate is the store's."""
    (tmp_path / "params.yaml").write_text("deploy:\n  gate:\n    floors:\n      auc: 0.0\n")
    register(store, tmp_path, "v1", metrics={"auc": 0.5})
    before = snapshot(store)
    result = run_main("promote", NAME, "1", "--store", store, cwd=tmp_path)
    assert_one_error_line(result, "refused by the gate", "auc = 0.5 is below the floor", "--force")
    gate_params = cli("promote", NAME, "1", "--gate-params", tmp_path / "params.yaml")
    assert gate_params.exit_code == 2 and "No such option" in gate_params.output
    assert snapshot(store) == before
    ok("set-policy", "--drop-floor", "auc", "--reason", "no labelled clips yet", "--store", store)
    record = ok_json("promote", NAME, "1", "--store", store)
    assert record["gate"] == {"passed": True, "reasons": [], "findings": [], "figures": {}}


def test_force_needs_a_reason_and_is_recorded(store: Path, tmp_path: Path) -> None:
    register(store, tmp_path, "v1", metrics={"auc": 0.5})
    before = snapshot(store)
    result = run_main("promote", NAME, "1", "--force", "--store", store, cwd=tmp_path)
    assert_one_error_line(result, "--force needs a --reason", status=2)
    assert snapshot(store) == before
    args = ("promote", NAME, "1", "--force", "--reason", "hotfix", "--store", store)
    assert ok(*args).splitlines()[2].split() == [NAME, "production", "-", "1", "refused,", "forced"]
    last = ok("history", NAME, "--store", store).splitlines()[-1]
    assert last.split()[1:5] == ["promoted", "(forced)", "1", "production"]
    assert last.endswith("hotfix; auc = 0.5 is below the floor 0.9")


# ================================================================== policy and check
def test_policy_and_set_policy(tmp_path: Path) -> None:
    store, absent = tmp_path / "store", tmp_path / "absent"
    Registry(store).init()
    assert ok("policy", "--store", absent) == ok("policy", "--store", store)
    assert not absent.exists()  # reading the policy makes no store
    table = ok("policy", "--store", store).splitlines()
    assert table[0].split() == ["rule", "value"]
    assert [line.split() for line in table[2:]] == [
        ["rollback", "factor", "2.0"],
        ["set", "never:", "the", "default", "applies"],
    ]
    declared = ok("policy", "--family", "acoustic", "--store", store).splitlines()
    assert [line.split()[:2] for line in declared[2:4]] == [
        ["family", "acoustic"],
        ["floor", "auc"],
    ]
    assert "the default it declares applies" in declared[2]
    record = ok_json(
        *("set-policy", "--floor", "auc=0.8", "--floor", "pauc=0.5"),
        *("--rollback-factor", "1.5", "--reason", "pilot site", "--store", store),
    )
    assert record["type"] == "policy_set" and record["reason"] == "pilot site"
    assert record["policy"] == {"floors": {"auc": 0.8, "pauc": 0.5}, "rollback_factor": 1.5}
    assert record["previous"] == {"floors": {}, "rollback_factor": 2.0}
    table = ok("set-policy", "--drop-floor", "pauc", "--store", store).splitlines()
    assert [line.split() for line in table[2:]] == [
        ["floor", "auc", "0.8"],
        ["rollback", "factor", "1.5"],
    ]
    found = ok_json("policy", "--store", store)
    assert (found["floors"], found["rollback_factor"]) == ({"auc": 0.8}, 1.5)
    assert (found["set"]["actor"], found["set"]["reason"]) == ("cli-tester", "")
    assert ok("policy", "--store", store).splitlines()[-1].split()[-2:] == ["by", "cli-tester"]


def test_set_policy_refusals_change_nothing(store: Path, tmp_path: Path) -> None:
    register(store, tmp_path, "v1")
    before = snapshot(store)
    for value in ("auc", "auc=high"):
        result = cli("set-policy", "--floor", value, "--store", store)
        assert result.exit_code == 2 and "expected METRIC=NUMBER" in result.output
    dropped = run_main("set-policy", "--drop-floor", "pauc", "--store", store)
    assert_one_error_line(dropped, "no floor on pauc to drop; nothing changed", status=2)
    assert "rollback factor 0" in refused("set-policy", "--rollback-factor", "0", "--store", store)
    assert "floor metric 'a uc'" in refused("set-policy", "--floor", "a uc=0.9", "--store", store)
    result = cli("set-policy", "--ceiling", "rmse=low", "--store", store)
    assert result.exit_code == 2 and "expected METRIC=NUMBER" in result.output
    dropped = run_main("set-policy", "--drop-ceiling", "rmse", "--store", store)
    assert_one_error_line(dropped, "no ceiling on rmse to drop; nothing changed", status=2)
    assert snapshot(store) == before


def test_set_policy_sets_a_ceiling_and_check_refuses_above_it(store: Path, tmp_path: Path) -> None:
    register(store, tmp_path, "v1", metrics={"auc": 0.95, "rmse": 3.0})
    record = ok_json(
        *("set-policy", "--drop-floor", "auc", "--ceiling", "rmse=2.5"),
        *("--reason", "lower is better", "--store", store),
    )
    assert record["policy"] == {"floors": {}, "rollback_factor": 2.0, "ceilings": {"rmse": 2.5}}
    table = ok("policy", "--store", store).splitlines()
    rows = [line.split() for line in table[2:4]]
    assert rows == [["ceiling", "rmse", "2.5"], ["rollback", "factor", "2.0"]]
    checked = cli("check", NAME, "1", "--store", store, "--json")
    assert checked.exit_code == 1
    found = json.loads(checked.stdout)
    assert [f["code"] for f in found["findings"]] == ["above_ceiling"]
    assert found["reasons"] == ["rmse = 3 is above the ceiling 2.5"]


def test_a_familys_own_policy_is_set_shown_and_applied_to_its_versions_only(
    store: Path, tmp_path: Path
) -> None:
    register(store, tmp_path, "v1", metrics={"auc": 0.5, "rmse": 3.0})  # the toy family's
    ok(
        "set-policy",
        "--family",
        FAMILY,
        "--drop-floor",
        "auc",
        "--ceiling",
        "rmse=4.5",
        "--reason",
        "regression",
        "--store",
        store,
    )
    shown = [
        line.split() for line in ok("policy", "--family", FAMILY, "--store", store).splitlines()
    ]
    assert shown[2:5] == [
        ["family", FAMILY],
        ["ceiling", "rmse", "4.5"],
        ["rollback", "factor", "2.0"],
    ]
    others = ok("policy", "--family", "acoustic", "--store", store).splitlines()
    assert others[2].split() == [
        "family",
        "acoustic",
        "has",
        "none",
        "of",
        "its",
        "own:",
        "the",
        "store's",
        "applies",
    ]
    assert others[3].split() == ["floor", "auc", "0.9"]
    assert cli("check", NAME, "1", "--store", store).exit_code == 0  # no floor on auc for it
    listed = ok("list", "--store", store).splitlines()[2]
    assert " rmse 3 " in listed and "auc" not in listed  # what its own gate judges


def test_check_exits_1_when_the_gate_would_refuse_and_changes_nothing(
    store: Path, tmp_path: Path
) -> None:
    register_acoustic(store, tmp_path, 1)
    ok("promote", ACOUSTIC, "1", "--store", store)
    worse = register_acoustic(store, tmp_path, 2, bias=10.0)
    fine = register_acoustic(store, tmp_path, 3)
    before = snapshot(store)
    result = cli("check", ACOUSTIC, str(worse), "--store", store)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["verdict", "detail"]
    assert lines[2].split()[:3] == ["refused", "candidate", "error"]
    assert ["figure", "holder", "=", f"{ACOUSTIC}:v1"] in [line.split() for line in lines]
    as_json = cli("check", ACOUSTIC, str(worse), "--json", "--store", store)
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["passed"] is False
    passed = ok_json("check", ACOUSTIC, str(fine), "--store", store)
    assert passed["passed"] is True and passed["figures"]["holder"] == f"{ACOUSTIC}:v1"
    assert ok("check", ACOUSTIC, str(fine), "--store", store).splitlines()[2].split() == [
        "passed",
        "-",
    ]
    assert snapshot(store) == before


def test_check_of_the_current_holder_passes(store: Path, tmp_path: Path) -> None:
    register(store, tmp_path, "v1")
    ok("promote", NAME, "1", "--store", store)
    assert ok_json("check", NAME, "1", "--store", store)["passed"] is True


# ================================================================== experiments and retire
@pytest.fixture
def experiment(store: Path, tmp_path: Path) -> Path:
    """exp-a's deploy stage checked NAME v1 and OTHER v1; exp-b checked NAME v2 (auc 0.5)."""
    register(store, tmp_path, "v1")
    register(store, tmp_path, "fan", scope="FAN-7")
    register(store, tmp_path, "v2", metrics={"auc": 0.5})
    registry = Registry(store)
    registry.record_check(NAME, 1, "exp-a")
    registry.record_check(OTHER, 1, "exp-a")
    registry.record_check(NAME, 2, "exp-b")
    return store


def test_promote_experiment_moves_what_it_checked(experiment: Path) -> None:
    args = ("promote-experiment", "exp-a", "--reason", "best of the sweep", "--store", experiment)
    table = ok(*args).splitlines()
    assert table[0].split() == ["name", "alias", "from", "to", "gate"]
    assert sorted(line.split() for line in table[2:]) == [
        [OTHER, "production", "-", "1", "passed"],
        [NAME, "production", "-", "1", "passed"],
    ]
    held = ok_json("list", "--alias", "production", "--store", experiment)
    assert sorted(m["name"] for m in held) == [OTHER, NAME]
    history = ok("history", NAME, "--store", experiment).splitlines()
    assert history[4].split()[1] == "checked"
    assert history[4].endswith("experiment exp-a; the gate would pass it")
    assert history[5].endswith(
        "experiment exp-b; the gate would refuse it; auc = 0.5 is below the floor 0.9"
    )
    assert history[6].split()[1] == "promoted" and history[6].endswith("best of the sweep")


def test_promote_experiment_refused_moves_nothing(experiment: Path) -> None:
    before = snapshot(experiment)
    result = run_main("promote-experiment", "exp-b", "--store", experiment)
    assert_one_error_line(result, "experiment 'exp-b': nothing promoted", "auc = 0.5")
    assert "experiment 'exp-z': no candidate" in refused(
        "promote-experiment", "exp-z", "--store", experiment
    )
    assert snapshot(experiment) == before
    forced = ("--force", "--reason", "accepted by hand", "--store", experiment)
    records = ok_json("promote-experiment", "exp-b", *forced)
    assert [(r["name"], r["to_version"], r["forced"]) for r in records] == [(NAME, 2, True)]


def test_promote_experiment_by_scope(experiment: Path) -> None:
    records = ok_json("promote-experiment", "exp-a", "--scope", "FAN-7", "--store", experiment)
    assert [(r["name"], r["to_version"]) for r in records] == [(OTHER, 1)]
    assert ok_json("list", "--alias", "production", "--store", experiment)[0]["name"] == OTHER


def test_retire_leaves_nothing_to_roll_back_to(store: Path, tmp_path: Path) -> None:
    register(store, tmp_path, "v1")
    register(store, tmp_path, "v2")
    ok("promote", NAME, "1", "--store", store)
    table = ok("retire", NAME, "--reason", "device removed", "--store", store).splitlines()
    assert table[0].split() == ["name", "alias", "retired"]
    assert table[2].split() == [NAME, "production", "1"]
    assert ok_json("list", "--alias", "production", "--store", store) == []
    before = snapshot(store)
    assert "no previous holder" in refused("rollback", NAME, "--store", store)
    assert "has no alias 'production'" in refused("retire", NAME, "--store", store)
    assert snapshot(store) == before
    last = ok("history", NAME, "--store", store).splitlines()[-1]
    assert last.split()[1:4] == ["retired", "1", "production"]
    assert last.endswith("device removed")
    assert ok_json("promote", NAME, "2", "--store", store)["from_version"] is None


# ================================================================== verify
def test_verify_clean_and_tampered(store: Path, tmp_path: Path) -> None:
    register(store, tmp_path, "v1")
    register(store, tmp_path, "v2")
    result = cli("verify", "--store", store)
    assert result.exit_code == 0
    assert "the store agrees with itself" in result.stdout
    assert json.loads(ok("verify", "--json", "--store", store)) == []

    weights = store / f"{NAME}_v2_model.pth"
    flip_byte(weights)
    result = cli("verify", "--store", store)
    assert result.exit_code == 1
    assert str(weights) in result.stdout and "sha256 mismatch" in result.stdout
    as_json = cli("verify", NAME, "--json", "--store", store)
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout) == [
        {
            "name": NAME,
            "version": 2,
            "kind": "model",
            "file": str(weights),
            "problem": "sha256 mismatch",
            "repair": "restore it from a backup of the store",
        }
    ]
    real = run_main("verify", "--store", store)
    assert real.returncode == 1 and str(weights) in real.stdout


def test_tampered_file_refused_by_promote_and_export(store: Path, tmp_path: Path) -> None:
    register_acoustic(store, tmp_path, 1)
    ok("promote", ACOUSTIC, "1", "--store", store)
    register_acoustic(store, tmp_path, 2)
    flip_byte(store / f"{ACOUSTIC}_v1_model.pth")
    flip_byte(store / f"{ACOUSTIC}_v2_model.pth")
    before = snapshot(store)
    promote = run_main("promote", ACOUSTIC, "2", "--store", store, cwd=tmp_path)
    assert_one_error_line(promote, str(store / f"{ACOUSTIC}_v2_model.pth"), "sha256")
    message = refused("export", ACOUSTIC, "--to", tmp_path / "deploy", "--store", store)
    assert str(store / f"{ACOUSTIC}_v1_model.pth") in message and "refused" in message
    assert snapshot(store) == before
    assert export.exported(tmp_path / "deploy") == {}


# ================================================================== export
def _bundles(deploy: Path) -> list[str]:
    """Models of the bundles kept for SCOPE, oldest first."""
    folders = sorted(p for p in (deploy / export.OWN / SCOPE).iterdir() if p.is_dir())
    return [json.loads((f / export.MANIFEST).read_text())["model"] for f in folders]


def test_export_layout_and_backups(store: Path, tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    for seed in range(1, 5):
        version = register_acoustic(store, tmp_path, seed)
        ok("promote", ACOUSTIC, str(version), "--alias", "staging", "--store", store)
        args = ("--to", deploy, "--alias", "staging", "--keep-backups", "2", "--store", store)
        assert ok("export", ACOUSTIC, *args).strip() == str(deploy / SCOPE)
    target = deploy / SCOPE
    assert target.is_symlink() and os.readlink(target).startswith(f"{export.OWN}/{SCOPE}/")
    weights = (store / f"{ACOUSTIC}_v4_model.pth").read_bytes()
    assert (target / "ae_model.pth").read_bytes() == weights
    np.testing.assert_array_equal(np.load(target / "global_scale.npy"), [-80.0, 0.0])
    np.testing.assert_allclose(np.load(target / "thresholds" / f"threshold_{SCOPE}.npy"), 0.05)
    bundle = json.loads((target / "bundle.json").read_text())
    assert (bundle["device"], bundle["model"]) == (SCOPE, f"{ACOUSTIC}:v4")
    assert bundle["architecture"] == ARCHITECTURE and bundle["sample_rate"] == 16000
    shipped = {"ae_model.pth", "global_scale.npy", f"thresholds/threshold_{SCOPE}.npy"}
    assert set(bundle["sha256"]) == shipped
    assert _bundles(deploy) == [f"{ACOUSTIC}:v2", f"{ACOUSTIC}:v3", f"{ACOUSTIC}:v4"]
    again = ("--to", deploy, "--alias", "staging", "--store", store)
    assert ok_json("export", *again) == {SCOPE: {"model": f"{ACOUSTIC}:v4", "status": "unchanged"}}
    assert len(_bundles(deploy)) == 3
    zero = cli("export", ACOUSTIC, "--to", deploy, "--keep-backups", "0", "--store", store)
    assert zero.exit_code == 2


def test_export_of_a_missing_alias_or_a_family_without_exporter(
    store: Path, tmp_path: Path
) -> None:
    register(store, tmp_path, "v1")
    ok("promote", NAME, "1", "--store", store)
    other = tmp_path / "other"
    staging = refused("export", NAME, "--to", other, "--alias", "staging", "--store", store)
    assert "has no alias 'staging'" in staging
    result = run_main("export", NAME, "--to", other, "--store", store)
    assert_one_error_line(result, "no exporter is installed for family 'toy'")
    assert export.exported(other) == {} and not (other / SCOPE).exists()


def test_export_every_holder_and_take_a_retired_one_out_of_service(
    store: Path, tmp_path: Path
) -> None:
    deploy = tmp_path / "deploy"
    register_acoustic(store, tmp_path, 1)
    ok("promote", ACOUSTIC, "1", "--store", store)
    register(store, tmp_path, "fan", scope="FAN-7")
    ok("promote", OTHER, "1", "--store", store)
    result = cli("export", "--to", deploy, "--store", store)
    assert result.exit_code == 1
    rows = [line.split()[:3] for line in result.stdout.splitlines()]
    assert rows[0] == ["scope", "model", "status"]
    assert rows[2:] == [["FAN-7", f"{OTHER}:v1", "failed"], [SCOPE, f"{ACOUSTIC}:v1", "exported"]]
    assert "no exporter is installed for family 'toy'" in result.stdout
    only = ("--to", deploy, "--family", "acoustic", "--store", store)
    assert ok_json("export", *only) == {SCOPE: {"model": f"{ACOUSTIC}:v1", "status": "unchanged"}}
    ok("retire", ACOUSTIC, "--reason", "device removed", "--store", store)
    assert ok_json("export", *only) == {SCOPE: {"model": f"{ACOUSTIC}:v1", "status": "removed"}}
    assert export.exported(deploy) == {} and not (deploy / SCOPE).is_symlink()


# ================================================================== reindex / gc
def test_reindex_and_gc(store: Path, tmp_path: Path) -> None:
    for number in range(1, 5):
        register(store, tmp_path, f"v{number}")
    ok("promote", NAME, "1", "--store", store)
    before = snapshot(store)
    doomed = [f"{NAME}:v2", f"{NAME}:v3"]
    assert ok("gc", "--keep", "1", "--dry-run", "--store", store).splitlines() == [
        "would remove:",
        *doomed,
    ]
    assert ok_json("gc", "--keep", "1", "--dry-run", "--store", store) == doomed
    assert snapshot(store) == before
    assert ok("gc", "--keep", "1", "--store", store).splitlines() == doomed
    assert ok("gc", "--keep", "1", "--store", store).strip() == "nothing to remove"
    before = ok_json("list", "--store", store)
    (store / "index.sqlite").unlink()
    (store / "versions.json").unlink()
    assert_one_error_line(run_main("list", "--store", store), "index is missing", "reindex")
    assert ok("reindex", "--store", store).strip() == "reindexed 1 models"
    assert ok_json("list", "--store", store) == before
    assert register(store, tmp_path, "v5")["version"] == 5
    assert cli("gc", "--keep", "0", "--store", store).exit_code == 2


# ================================================================== the error path
@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("acoustic/LT-2_convae", "model name 'acoustic/LT-2_convae'"),
        ("../x_LT-2_convae", "family '../x'"),
        ("..", "expected family_scope_modeltype"),
        ("acoustic_LT_2_convae", "expected family_scope_modeltype"),
        ("a b_c_d", "family 'a b'"),
        ("", "expected NAME, NAME:vN or NAME@alias"),
        (f"{NAME}@a_b", "alias 'a_b'"),
        (f"{NAME}:v0", "version 0"),
    ],
)
def test_show_bad_ref_is_one_error_line(two_models: Path, ref: str, says: str) -> None:
    before = snapshot(two_models)
    assert_one_error_line(run_main("show", ref, "--store", two_models), says)
    assert snapshot(two_models) == before


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--family", "a/b"),
        ("--scope", ".."),
        ("--model-type", "a_b"),
        ("--scope", "a b"),
        ("--family", ""),
    ],
)
def test_register_bad_name_is_one_error_line(
    two_models: Path, tmp_path: Path, option: str, value: str
) -> None:
    folder = make_artifacts(tmp_path / "new", b"new")
    names = {"--family": FAMILY, "--scope": SCOPE, "--model-type": MODEL_TYPE} | {option: value}
    before = snapshot(two_models)
    args = [a for pair in names.items() for a in pair]
    result = run_main("register", folder, *args, "--store", two_models)
    assert_one_error_line(result, repr(value), "is not a valid device code")
    assert snapshot(two_models) == before


def test_register_missing_and_extra_artifacts(two_models: Path, tmp_path: Path) -> None:
    before = snapshot(two_models)
    no_model = make_artifacts(tmp_path / "no-model")
    (no_model / "model.pth").unlink()
    assert_one_error_line(
        run_main(*register_args(no_model), "--store", two_models), "missing model.*"
    )
    extra = make_artifacts(tmp_path / "extra")
    (extra / ".DS_Store").write_text("hi")
    assert_one_error_line(
        run_main(*register_args(extra), "--store", two_models),
        "unexpected file(s) .DS_Store; expected only files named {kind}.{ext}",
    )
    # an installed family declares its files: anything else is refused, naming them
    acoustic = make_acoustic_artifacts(tmp_path / "acoustic")
    (acoustic / "notes.txt").write_text("hi")
    args = ["register", acoustic, "--family", "acoustic", "--scope", SCOPE]
    assert_one_error_line(
        run_main(*args, "--model-type", MODEL_TYPE, "--store", two_models),
        "unexpected file(s) notes.txt; expected only model.pth, scale.npy",
    )
    assert snapshot(two_models) == before


def test_corrupt_versions_json_and_missing_version(two_models: Path, tmp_path: Path) -> None:
    (two_models / "versions.json").write_text("{ broken")
    before = snapshot(two_models)
    folder = make_artifacts(tmp_path / "new", b"new")
    result = run_main(*register_args(folder), "--store", two_models)
    assert_one_error_line(result, "versions.json", "registry reindex")
    assert_one_error_line(
        run_main("promote", NAME, "9", "--store", two_models, cwd=tmp_path),
        "versions.json",
        "registry reindex",
    )
    assert snapshot(two_models) == before


def test_console_script_reports_errors_in_one_line(two_models: Path) -> None:
    assert CONSOLE_SCRIPT.exists()
    env = {k: v for k, v in os.environ.items() if k != "MODEL_STORE"}
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "show", f"{NAME}:v9", "--store", str(two_models)],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG_S,
    )
    assert_one_error_line(result, f"{NAME}:v9", "no such model version")
    shown = subprocess.run(
        [str(CONSOLE_SCRIPT), "show", NAME, "--json"],
        capture_output=True,
        text=True,
        env=env | {"MODEL_STORE": str(two_models)},
        timeout=HANG_S,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["version"] == 2


COMMANDS = [
    ["list"],
    ["show", ACOUSTIC],
    ["history", ACOUSTIC],
    ["diff", ACOUSTIC, "1", "2"],
    ["verify"],
    ["check", ACOUSTIC, "3"],
    ["promote", ACOUSTIC, "3", "--alias", "staging"],
    ["promote-experiment", "exp-a"],
    ["rollback", ACOUSTIC],
    ["export", ACOUSTIC, "--to", "deploy"],
    ["export", "--to", "deploy"],
    ["retire", ACOUSTIC],
    ["policy"],
    ["set-policy", "--floor", "auc=0.8"],
    ["reindex"],
    ["gc", "--keep", "1"],
]


def test_every_command_has_json_output(store: Path, tmp_path: Path) -> None:
    for seed in (1, 2, 3):
        register_acoustic(store, tmp_path, seed)
    ok("promote", ACOUSTIC, "1", "--store", store)
    ok("promote", ACOUSTIC, "2", "--store", store)
    Registry(store).record_check(ACOUSTIC, 3, "exp-a")
    for args in COMMANDS:
        json.loads(ok(*args, "--store", store, "--json"))


@pytest.fixture
def read_only_store(two_models: Path, tmp_path: Path) -> Any:
    """The store, bind-mounted read-only (root and mount privileges, as CI has; skipped else)."""
    view = tmp_path / "read-only"
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(two_models), str(view)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"a read-only store needs bind mounts: {mounted.stderr.decode().strip()}")
    try:
        remount = ["mount", "-o", "remount,bind,ro", str(view)]
        subprocess.run(remount, capture_output=True, check=True)
        yield view
    finally:
        subprocess.run(["umount", str(view)], capture_output=True, check=False)


def test_a_read_only_store_reads_and_refuses_writes_in_one_line(
    read_only_store: Path, tmp_path: Path
) -> None:
    listed = run_main("list", "--json", "--store", read_only_store)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 3
    assert run_main("verify", "--store", read_only_store).returncode == 0
    folder = make_artifacts(tmp_path / "new", b"new")
    for args in (
        register_args(folder),
        ["promote", NAME, "1"],
        ["reindex"],
        ["gc", "--keep", "1"],
    ):
        result = run_main(*args, "--store", read_only_store)
        assert_one_error_line(result, "Read-only file system")


def test_a_store_path_that_is_a_file_is_one_clear_line(tmp_path: Path) -> None:
    not_a_store = tmp_path / "store.txt"
    not_a_store.write_text("a file")
    folder = make_artifacts(tmp_path / "new", b"new")
    assert_one_error_line(run_main("list", "--store", not_a_store), "not a folder")
    assert_one_error_line(run_main(*register_args(folder), "--store", not_a_store), "not a folder")
    assert not_a_store.read_text() == "a file"


def test_a_huge_version_is_one_clear_line(two_models: Path) -> None:
    huge = f"{NAME}:v{10**30}"
    assert_one_error_line(run_main("show", huge, "--store", two_models), "from 1 to")
    assert_one_error_line(
        run_main("promote", NAME, str(10**30), "--store", two_models), "from 1 to"
    )


# ================================================================== init, backup, show --verify
def test_a_mistyped_store_is_refused_not_made_and_init_makes_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write to a store named on purpose (--store, $MODEL_STORE) that is not there used to
    start a new store at v1 without a word."""
    folder, typo = make_artifacts(tmp_path / "a1"), tmp_path / "modle_store"
    for args in (register_args(folder), ["set-policy", "--floor", "auc=0.8"]):
        line = assert_one_error_line(run_main(*args, "--store", typo), "no model store here")
        assert f"`registry init {typo}` makes one" in line
    monkeypatch.setenv("MODEL_STORE", str(typo))
    assert "no model store here" in refused(*register_args(folder))
    assert not typo.exists()
    monkeypatch.delenv("MODEL_STORE")
    assert ok("init", typo).strip() == f"made an empty model store in {typo}"
    assert Registry(typo).verify() == [] and Registry(typo).list() == []
    assert ok_json(*register_args(folder), "--store", typo)["version"] == 1
    assert ok("init", typo).strip() == f"already a model store: {typo}"
    assert [m["version"] for m in Registry(typo).list()] == [1]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    assert "not a model store" in refused("init", mine)
    assert sorted(p.name for p in mine.iterdir()) == [".lock", "notes.txt"]


def test_export_into_the_store_is_refused(two_models: Path) -> None:
    before = snapshot(two_models)
    for to in (two_models, two_models / "deploy", two_models / "checkpoints"):
        line = assert_one_error_line(run_main("export", "--to", to, "--store", two_models))
        assert "is inside the model store" in line and "nothing was changed" in line
        one = run_main("export", NAME, "--to", to, "--store", two_models)
        assert_one_error_line(one, "is inside the model store")
    assert snapshot(two_models) == before


def test_show_says_whether_the_files_were_verified(two_models: Path) -> None:
    assert ok("show", NAME, "--store", two_models).endswith(
        f"files not verified here (`registry show {NAME}:v2 --verify` checks them)\n"
    )
    clean = ok("show", NAME, "--verify", "--store", two_models)
    assert clean.splitlines()[-1].startswith("files verified: the metadata and every file")
    assert ok_json("show", NAME, "--store", two_models)["verification"] == {"checked": False}
    checked = ok_json("show", NAME, "--verify", "--store", two_models)["verification"]
    assert checked == {"checked": True, "problems": []}
    damaged = two_models / f"{NAME}_v2_model.pth"
    flip_byte(damaged)
    result = cli("show", f"{NAME}@production", "--verify", "--store", two_models)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert "files DAMAGED" in lines
    assert any(str(damaged) in line and "sha256 mismatch" in line for line in lines)
    assert cli("show", f"{NAME}:v1", "--verify", "--store", two_models).exit_code == 0


def test_backup_copies_a_store_that_verifies_and_restores_by_copying(
    two_models: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "backups" / "models"
    out = ok("backup", copy, "--store", two_models)
    assert out.splitlines()[-1] == "the copy verifies: every file, digest, index row and alias"
    books = {".lock"}
    original = {k: v for k, v in snapshot(two_models).items() if k not in books}
    assert {k: v for k, v in snapshot(copy).items() if k not in books} == original
    again = run_main("backup", copy, "--store", two_models)
    assert_one_error_line(again, "not an empty folder", status=2)  # never over anything
    inside = run_main("backup", two_models / "b", "--store", two_models)
    assert_one_error_line(inside, "is inside the store", status=2)
    restored = tmp_path / "restored"  # the README's restore: a plain copy into a new folder
    subprocess.run(["cp", "-a", str(copy), str(restored)], check=True)
    assert Registry(restored).verify() == []
    assert Registry(restored).get(f"{NAME}@production")["version"] == 2


def test_the_readme_restore_works_as_written(two_models: Path, tmp_path: Path) -> None:
    """The README's restore block, run as written in a project whose store was damaged after
    its backup: the project's store is the backup again, and verifies."""
    project = tmp_path / "project"
    shutil.copytree(two_models, project / "model_store")
    ok("backup", tmp_path / "model_store.backup", "--store", project / "model_store")
    flip_byte(project / "model_store" / f"{NAME}_v2_model.pth")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for words in readme_commands("## The model registry", block=1):
        command = [str(CONSOLE_SCRIPT), *words[1:]] if words[0] == "registry" else words
        subprocess.run(command, cwd=project, env=env, check=True, capture_output=True)
    assert Registry(project / "model_store").verify() == []
    assert Registry(project / "model_store.damaged").verify() != []  # put aside, not deleted
