"""registry.lineage: git commit and dirty flag, DVC experiment, and what registration records."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from registry import lineage
from tests.patience import HANG_S
from tests.registry_helpers import FAMILY, MODEL_TYPE, SCOPE, make_artifacts, new_registry


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODEL_STORE", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@example.com")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    # a temp folder that is inside no repository, so "outside git" is really outside
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=HANG_S
    )
    return result.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "-q")
    (path / "train.py").write_text("print('train')\n")
    _git(path, "add", "train.py")
    _git(path, "commit", "-q", "-m", "first")
    return path


def test_clean_repo_gives_the_commit_and_not_dirty(repo: Path) -> None:
    origin = lineage.capture(cwd=repo)
    assert origin["git_commit"] == _git(repo, "rev-parse", "HEAD")
    assert len(origin["git_commit"]) == 40
    assert origin["git_dirty"] is False


def test_modified_tracked_file_makes_it_dirty(repo: Path) -> None:
    (repo / "train.py").write_text("print('changed')\n")
    origin = lineage.capture(cwd=repo)
    assert origin["git_dirty"] is True
    assert origin["git_commit"] == _git(repo, "rev-parse", "HEAD")


def test_untracked_files_do_not_make_it_dirty(repo: Path) -> None:
    (repo / "scratch.txt").write_text("notes")
    assert lineage.capture(cwd=repo)["git_dirty"] is False


def test_outside_a_repository_the_commit_is_none(tmp_path: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    origin = lineage.capture(cwd=outside)
    assert origin["git_commit"] is None
    assert origin["git_dirty"] is None


def test_repository_without_commits_has_no_commit(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    _git(empty, "init", "-q")
    origin = lineage.capture(cwd=empty)
    assert origin["git_commit"] is None
    assert origin["git_dirty"] is None


def test_missing_git_binary_gives_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    origin = lineage.capture(cwd=tmp_path)
    assert origin["git_commit"] is None
    assert origin["git_dirty"] is None


def test_dvc_experiment_and_caller_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_EXP_NAME", "exp-lucky-seed")
    origin = lineage.capture(cwd=tmp_path, data_fingerprint="md5:abc", parent_version=4)
    assert origin == {
        "git_commit": None,
        "git_dirty": None,
        "dvc_experiment": "exp-lucky-seed",
        "data_fingerprint": "md5:abc",
        "parent_version": 4,
    }
    monkeypatch.delenv("DVC_EXP_NAME")
    assert lineage.capture(cwd=tmp_path)["dvc_experiment"] is None


def test_git_runs_without_a_shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[object, dict]] = []
    real_run = subprocess.run

    def spy(args: object, **kwargs: object) -> subprocess.CompletedProcess:
        seen.append((args, kwargs))
        return real_run(args, **kwargs)

    monkeypatch.setattr(lineage.subprocess, "run", spy)
    lineage.capture(cwd=tmp_path)
    assert seen
    for args, kwargs in seen:
        assert isinstance(args, list) and args[0] == "git"
        assert not kwargs.get("shell")


def test_registration_records_lineage_of_the_working_directory(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1")
    registry = new_registry(tmp_path / "store", actor="t")
    meta = registry.register(
        make_artifacts(tmp_path / "a1", b"one"),
        FAMILY,
        SCOPE,
        MODEL_TYPE,
        params={"lr": 0.001},
        metrics={"auc": 0.9},
        data_fingerprint="sha256:data",
        parent_version=None,
    )
    head = _git(repo, "rev-parse", "HEAD")
    assert meta["lineage"] == {
        "git_commit": head,
        "git_dirty": False,
        "dvc_experiment": "exp-1",
        "data_fingerprint": "sha256:data",
        "parent_version": None,
    }
    assert meta["params"] == {"lr": 0.001}
    assert meta["metrics"] == {"auc": 0.9}
    assert registry.get(f"{meta['name']}:v1")["lineage"] == meta["lineage"]

    (repo / "train.py").write_text("print('tuned')\n")
    monkeypatch.delenv("DVC_EXP_NAME")
    second = registry.register(
        make_artifacts(tmp_path / "a2", b"two"), FAMILY, SCOPE, MODEL_TYPE, parent_version=1
    )
    assert second["lineage"]["git_commit"] == head
    assert second["lineage"]["git_dirty"] is True
    assert second["lineage"]["dvc_experiment"] is None
    assert second["lineage"]["parent_version"] == 1


def test_registration_outside_git_records_no_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.chdir(plain)
    meta = new_registry(tmp_path / "store", actor="t").register(
        make_artifacts(tmp_path / "a1"), FAMILY, SCOPE, MODEL_TYPE
    )
    assert meta["lineage"]["git_commit"] is None
    assert meta["lineage"]["git_dirty"] is None
