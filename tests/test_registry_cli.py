"""registry.cli: every command over the API, --json, --store / $MODEL_STORE, and the error path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from registry.api import Registry
from registry.cli import app
from tests.registry_helpers import (
    FAMILY,
    MODEL_TYPE,
    NAME,
    SCOPE,
    flip_byte,
    make_artifacts,
    snapshot,
)

REPO = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).parent / "registry"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no params.yaml here: promote runs without a gate by default
    monkeypatch.delenv("MODEL_STORE", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("REGISTRY_ACTOR", "cli-tester")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def cli(*args: str | Path, env: dict[str, str] | None = None) -> Any:
    result = runner.invoke(app, [str(a) for a in args], env=env)
    return result


def ok(*args: str | Path, env: dict[str, str] | None = None) -> str:
    result = cli(*args, env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def ok_json(*args: str | Path) -> Any:
    return json.loads(ok(*args, "--json"))


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
        timeout=60,
    )


def assert_one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
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
    store: Path, tmp_path: Path, tag: str, scope: str = SCOPE, **files: Any
) -> dict[str, Any]:
    folder = make_artifacts(tmp_path / "art" / tag, tag.encode(), **files)
    return ok_json(*register_args(folder, scope), "--store", store)


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


def test_register_bad_metrics_file_is_a_usage_error(store: Path, tmp_path: Path) -> None:
    folder = make_artifacts(tmp_path / "a1")
    (tmp_path / "m.json").write_text("[1, 2]")
    result = cli(
        *register_args(folder),
        "--metrics",
        tmp_path / "m.json",
        "--store",
        store,
    )
    assert result.exit_code == 2
    assert "expected a mapping" in result.output
    assert not store.exists()


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
    assert table[0].split() == ["name", "version", "aliases", "created", "auc"]
    assert set(table[1]) <= {"-", " "}
    assert len(table) == 5
    assert any(line.split()[:3] == [NAME, "2", "production"] for line in table[2:])
    every = ok_json("list", "--store", two_models)
    assert len(every) == 3
    assert [m["version"] for m in ok_json("list", "--name", NAME, "--store", two_models)] == [1, 2]
    fan = ok_json("list", "--scope", "FAN-7", "--store", two_models)
    assert [m["name"] for m in fan] == [f"{FAMILY}_FAN-7_{MODEL_TYPE}"]
    prod = ok_json("list", "--alias", "production", "--store", two_models)
    assert [(m["version"], m["aliases"]) for m in prod] == [(2, ["production"])]


def test_show_refs(two_models: Path) -> None:
    assert ok_json("show", NAME, "--store", two_models)["version"] == 2
    assert ok_json("show", f"{NAME}:v1", "--store", two_models)["version"] == 1
    shown = ok_json("show", f"{NAME}@production", "--store", two_models)
    assert shown["version"] == 2 and shown["aliases"] == ["production"]
    table = ok("show", f"{NAME}:v1", "--store", two_models)
    assert table.splitlines()[0].split() == ["field", "value"]
    assert any(line.startswith("version") and line.split()[1] == "1" for line in table.splitlines())


def test_store_from_env_and_option_precedence(two_models: Path, tmp_path: Path) -> None:
    env = {"MODEL_STORE": str(two_models)}
    assert len(json.loads(ok("list", "--json", env=env))) == 3
    assert json.loads(ok("show", NAME, "--json", env=env))["version"] == 2
    empty = tmp_path / "empty-store"
    assert json.loads(ok("list", "--json", "--store", empty, env=env)) == []  # --store wins
    assert not empty.exists()


def test_default_store_is_model_store_in_the_working_directory(tmp_path: Path) -> None:
    register(tmp_path / "model_store", tmp_path, "v1")
    assert len(ok_json("list")) == 1


def test_history_and_diff(store: Path, tmp_path: Path) -> None:
    for tag, auc in (("v1", 0.9), ("v2", 0.95)):
        folder = make_artifacts(tmp_path / "art" / tag, tag.encode())
        (tmp_path / f"{tag}.json").write_text(json.dumps({"auc": auc}))
        ok(
            *register_args(folder),
            "--metrics",
            tmp_path / f"{tag}.json",
            "--store",
            store,
        )
    ok("promote", NAME, "1", "--reason", "first one", "--store", store)
    records = ok_json("history", NAME, "--store", store)
    assert [r["type"] for r in records] == ["registered", "registered", "promoted"]
    assert records[-1]["reason"] == "first one" and records[-1]["actor"] == "cli-tester"
    table = ok("history", NAME, "--store", store).splitlines()
    assert table[0].split() == ["time", "event", "version", "alias", "from", "actor", "reason"]
    assert table[-1].split()[1:4] == ["promoted", "1", "production"]
    assert ok_json("diff", NAME, "1", "2", "--store", store) == {
        "params": {},
        "metrics": {"auc": [0.9, 0.95]},
    }
    diff_table = ok("diff", NAME, "1", "2", "--store", store).splitlines()
    assert diff_table[0].split() == ["section", "key", "v1", "v2", "differs"]
    assert diff_table[2].split() == ["metrics", "auc", "0.9", "0.95", "*"]


# ================================================================== promote / rollback
def test_promote_rollback_walk(store: Path, tmp_path: Path) -> None:
    for tag in ("v1", "v2", "v3"):
        register(store, tmp_path, tag)
    for version in ("1", "3", "2"):
        ok("promote", NAME, version, "--store", store)
    table = ok("rollback", NAME, "--reason", "noisy", "--store", store).splitlines()
    assert table[0].split() == ["name", "alias", "from", "to"]
    assert table[2].split() == [NAME, "production", "2", "3"]
    record = ok_json("rollback", NAME, "--store", store)
    assert (record["from_version"], record["to_version"]) == (3, 1)
    assert ok_json("show", f"{NAME}@production", "--store", store)["version"] == 1
    before = snapshot(store)
    result = run_main("rollback", NAME, "--store", store)
    assert_one_error_line(result, f"{NAME}@production", "no previous holder")
    assert snapshot(store) == before


def test_promote_json_and_alias(store: Path, tmp_path: Path) -> None:
    register(store, tmp_path, "v1")
    record = ok_json("promote", NAME, "1", "--alias", "staging", "--store", store)
    assert (record["type"], record["alias"], record["to_version"]) == ("promoted", "staging", 1)
    again = ok("promote", NAME, "1", "--alias", "staging", "--store", store)
    assert again.splitlines()[2].split() == [NAME, "staging", "-", "1"]  # unchanged, nothing new
    assert len(ok_json("history", NAME, "--store", store)) == 2


def test_promote_uses_the_gate_params_file(store: Path, tmp_path: Path) -> None:
    gate_file = tmp_path / "params.yaml"
    gate_file.write_text(
        "deploy:\n  gate:\n    floors:\n      auc: 0.9\n    rollback_factor: 2.0\n"
    )
    register(store, tmp_path, "v1")  # no metrics: the auc floor fails
    before = snapshot(store)
    result = run_main("promote", NAME, "1", "--store", store, cwd=tmp_path)  # ./params.yaml
    assert_one_error_line(result, "refused by the gate", "auc = None is below the floor 0.9")
    assert snapshot(store) == before
    record = ok_json("promote", NAME, "1", "--force", "--gate-params", gate_file, "--store", store)
    assert record["forced"] is True
    assert record["gate"]["passed"] is False
    assert record["gate"]["figures"]["auc"] is None


# ================================================================== verify
def test_verify_clean_and_tampered(store: Path, tmp_path: Path) -> None:
    register(store, tmp_path, "v1")
    register(store, tmp_path, "v2")
    result = cli("verify", "--store", store)
    assert result.exit_code == 0
    assert "all artifacts match" in result.stdout
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
        }
    ]
    real = run_main("verify", "--store", store)
    assert real.returncode == 1 and str(weights) in real.stdout


def test_tampered_file_refused_by_promote_and_export(store: Path, tmp_path: Path) -> None:
    register(store, tmp_path, "v1")
    Registry(store).promote(NAME, 1)
    register(store, tmp_path, "v2")
    flip_byte(store / f"{NAME}_v1_model.pth")
    flip_byte(store / f"{NAME}_v2_model.pth")
    before = snapshot(store)
    promote = run_main("promote", NAME, "2", "--store", store, cwd=tmp_path)
    assert_one_error_line(promote, str(store / f"{NAME}_v2_model.pth"), "sha256")
    export = run_main("export", NAME, "--to", tmp_path / "deploy", "--store", store)
    assert_one_error_line(export, str(store / f"{NAME}_v1_model.pth"), "refused")
    assert snapshot(store) == before
    assert not (tmp_path / "deploy").exists()


# ================================================================== export
def test_export_layout_and_backups(store: Path, tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    for number in range(1, 5):
        register(store, tmp_path, f"v{number}", scale=(0.0, float(number)), threshold=number / 10)
        ok("promote", NAME, str(number), "--store", store)
        out = ok("export", NAME, "--to", deploy, "--keep-backups", "2", "--store", store)
        assert out.strip() == str(deploy / SCOPE)
    target = deploy / SCOPE
    assert (target / "ae_model.pth").read_bytes() == b"v4"
    np.testing.assert_array_equal(np.load(target / "global_scale.npy"), [0.0, 4.0])
    np.testing.assert_allclose(np.load(target / "thresholds" / f"threshold_{SCOPE}.npy"), 0.4)
    bundle = json.loads((target / "bundle.json").read_text())
    assert bundle["device"] == SCOPE and bundle["model"] == f"{NAME}:v4"
    backups = sorted((deploy / ".backups" / SCOPE).iterdir())
    assert len(backups) == 2
    assert [json.loads((b / "bundle.json").read_text())["model"] for b in backups] == [
        f"{NAME}:v2",
        f"{NAME}:v3",
    ]
    assert (backups[-1] / "ae_model.pth").read_bytes() == b"v3"


def test_export_alias_option_and_missing_alias(store: Path, tmp_path: Path) -> None:
    register(store, tmp_path, "v1")
    ok("promote", NAME, "1", "--alias", "staging", "--store", store)
    ok("export", NAME, "--to", tmp_path / "deploy", "--alias", "staging", "--store", store)
    assert (tmp_path / "deploy" / SCOPE / "ae_model.pth").read_bytes() == b"v1"
    result = run_main("export", NAME, "--to", tmp_path / "other", "--store", store)
    assert_one_error_line(result, "has no alias 'production'")
    assert not (tmp_path / "other").exists()


# ================================================================== reindex / gc
def test_reindex_and_gc(store: Path, tmp_path: Path) -> None:
    for number in range(1, 5):
        register(store, tmp_path, f"v{number}")
    ok("promote", NAME, "1", "--store", store)
    assert ok("gc", "--keep", "1", "--store", store).splitlines() == [f"{NAME}:v2", f"{NAME}:v3"]
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
        run_main(*register_args(no_model), "--store", two_models), "missing model.pth"
    )
    extra = make_artifacts(tmp_path / "extra")
    (extra / "notes.txt").write_text("hi")
    assert_one_error_line(
        run_main(*register_args(extra), "--store", two_models), "unexpected file(s) notes.txt"
    )
    assert snapshot(two_models) == before


def test_corrupt_versions_json_and_missing_version(two_models: Path, tmp_path: Path) -> None:
    (two_models / "versions.json").write_text("{ broken")
    before = snapshot(two_models)
    folder = make_artifacts(tmp_path / "new", b"new")
    result = run_main(*register_args(folder), "--store", two_models)
    assert_one_error_line(result, "versions.json", "registry reindex")
    assert_one_error_line(
        run_main("promote", NAME, "9", "--store", two_models, cwd=tmp_path), f"{NAME}:v9"
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
        timeout=60,
    )
    assert_one_error_line(result, f"{NAME}:v9", "no such model version")
    shown = subprocess.run(
        [str(CONSOLE_SCRIPT), "show", NAME, "--json"],
        capture_output=True,
        text=True,
        env=env | {"MODEL_STORE": str(two_models)},
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["version"] == 2


@pytest.mark.parametrize("command", ["export", "reindex", "gc"])
def test_every_command_has_json_output(store: Path, tmp_path: Path, command: str) -> None:
    register(store, tmp_path, "v1")
    ok("promote", NAME, "1", "--store", store)
    args = {
        "export": ["export", NAME, "--to", str(tmp_path / "deploy")],
        "reindex": ["reindex"],
        "gc": ["gc", "--keep", "1"],
    }[command]
    json.loads(ok(*args, "--store", store, "--json"))
