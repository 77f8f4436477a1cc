"""Shared fixtures, and the order the tests run in.

The end-to-end tests run first: each takes a minute or more, the rest a second or less. Each
module goes to one worker, in the order collected (`--dist loadscope --no-loadscope-reorder`,
Makefile: a module's fixtures are built once), so the workers finish together instead of one
end-to-end module running alone at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline_repo import make_repo, run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


@pytest.fixture(scope="session")
def tiny_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny fleet's repo after a plain `dvc repro`, and the tabular and keypoint
    families' tiny demos after `dvc repro tabular/dvc.yaml` and `dvc repro keypoint/dvc.yaml`
    (as `make demo` leaves a project: each pipeline run once, which `dvc exp apply` needs),
    committed: built once per worker, for tests to
    `copy_repo` and change as they like."""
    repo = make_repo(tmp_path_factory.mktemp("tiny") / "repo")
    run(repo, "dvc", "repro")
    run(repo, "dvc", "repro", "tabular/dvc.yaml")
    run(repo, "dvc", "repro", "keypoint/dvc.yaml")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "baseline: dvc.lock for dvc exp show")
    return repo
