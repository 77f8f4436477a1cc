"""registry.loading: verified bytes (Registry.read: sha256, no symlinks) before
torch.load(weights_only=True), never an unsafe fallback."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipelines.acoustic import model as acoustic_model
from registry import loading
from registry.api import Registry
from registry.errors import IntegrityError, NotFoundError
from tests.patience import HANG_S
from tests.registry_helpers import (
    ARCHITECTURE,
    FAMILY,
    INFERENCE,
    MODEL_TYPE,
    NAME,
    SCOPE,
    flip_byte,
    make_acoustic_artifacts,
    make_artifacts,
    new_registry,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODEL_STORE", raising=False)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return new_registry(tmp_path / "store", actor="t")


def _state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 8))
    return model.state_dict()


def _register_weights(registry: Registry, tmp_path: Path, payload: object, tag: str) -> dict:
    folder = tmp_path / "art" / tag
    folder.mkdir(parents=True)
    torch.save(payload, folder / "model.pth")
    make_artifacts(folder, (folder / "model.pth").read_bytes())
    return registry.register(folder, FAMILY, SCOPE, MODEL_TYPE, metrics={"auc": 0.95})


class _Evil:
    """Unpickling this object opens (and so creates) the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def test_registered_state_dict_loads_equal(registry: Registry, tmp_path: Path) -> None:
    original = _state_dict()
    _register_weights(registry, tmp_path, original, "v1")
    registry.promote(NAME, 1)
    for ref in (NAME, f"{NAME}:v1", f"{NAME}@production"):
        loaded = loading.load_weights(registry, ref)
        assert set(loaded) == set(original)
        for key, tensor in original.items():
            assert torch.equal(loaded[key], tensor)
            assert loaded[key].device.type == "cpu"
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 8))
    model.load_state_dict(loading.load_weights(registry, NAME))


def test_flipped_byte_is_refused_before_torch_load(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = _register_weights(registry, tmp_path, _state_dict(), "v1")
    weights = registry.store.root / meta["artifacts"]["model"]["file"]
    flip_byte(weights, offset=len(weights.read_bytes()) // 2)
    calls: list[object] = []

    def no_load(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise AssertionError("torch.load must not be reached")

    monkeypatch.setattr(torch, "load", no_load)
    with pytest.raises(IntegrityError) as caught:
        loading.load_weights(registry, f"{NAME}:v1")
    assert str(weights) in str(caught.value)
    assert "sha256" in str(caught.value) and f"{NAME}:v1" in str(caught.value)
    assert calls == []


def test_code_running_pickle_is_refused_and_never_runs(registry: Registry, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    meta = _register_weights(registry, tmp_path, {"w": _Evil(marker)}, "evil")
    assert not marker.exists()  # saving it ran nothing
    with pytest.raises(IntegrityError, match="not a plain-tensor weights file"):
        loading.load_weights(registry, f"{NAME}:v{meta['version']}")
    assert not marker.exists()
    # control: the payload is live, an unsafe load would have run it
    stored = registry.store.root / meta["artifacts"]["model"]["file"]
    torch.load(stored, weights_only=False)
    assert marker.exists()


def test_plain_pickle_payload_is_refused(registry: Registry, tmp_path: Path) -> None:
    marker = tmp_path / "pwned-plain"
    folder = make_artifacts(tmp_path / "art", pickle.dumps({"w": _Evil(marker)}, protocol=2))
    registry.register(folder, FAMILY, SCOPE, MODEL_TYPE)
    with pytest.raises(IntegrityError):
        loading.load_weights(registry, NAME)
    assert not marker.exists()


def test_garbage_weights_are_refused(registry: Registry, tmp_path: Path) -> None:
    registry.register(
        make_artifacts(tmp_path / "art", b"not a torch file"), FAMILY, SCOPE, MODEL_TYPE
    )
    with pytest.raises(IntegrityError, match="not a plain-tensor weights file"):
        loading.load_weights(registry, NAME)


def test_a_symlink_in_place_of_the_weights_is_refused_even_with_the_same_bytes(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = _register_weights(registry, tmp_path, _state_dict(), "v1")
    weights = registry.store.root / meta["artifacts"]["model"]["file"]
    elsewhere = tmp_path / "elsewhere.pth"
    elsewhere.write_bytes(weights.read_bytes())
    weights.unlink()
    weights.symlink_to(elsewhere)
    monkeypatch.setattr(torch, "load", _never)
    with pytest.raises(IntegrityError, match="symlink") as caught:
        loading.load_weights(registry, NAME)
    assert str(weights) in str(caught.value) and f"{NAME}:v1" in str(caught.value)


def _never(*args: object, **kwargs: object) -> None:
    raise AssertionError("torch.load must not be reached")


def test_a_real_acoustic_model_loads_into_its_architecture(
    registry: Registry, tmp_path: Path
) -> None:
    folder = make_acoustic_artifacts(tmp_path / "acoustic", seed=3)
    expected = torch.load(folder / "model.pth", weights_only=True)
    registry.register(folder, "acoustic", SCOPE, MODEL_TYPE, extra=INFERENCE)
    loaded = loading.load_weights(registry, f"acoustic_{SCOPE}_{MODEL_TYPE}:v1")
    net = acoustic_model.from_architecture(ARCHITECTURE)
    net.load_state_dict(loaded)
    assert all(torch.equal(loaded[key], tensor) for key, tensor in expected.items())


def test_state_dict_loads_plain_tensors_from_bytes() -> None:
    original = _state_dict()
    buffer = io.BytesIO()
    torch.save(original, buffer)
    loaded = loading.state_dict(buffer.getvalue(), "somewhere:v1")
    assert all(torch.equal(loaded[key], tensor) for key, tensor in original.items())


def test_state_dict_refuses_code_and_names_where_it_came_from(tmp_path: Path) -> None:
    marker = tmp_path / "pwned-bytes"
    buffer = io.BytesIO()
    torch.save({"w": _Evil(marker)}, buffer)
    for data in (buffer.getvalue(), b"not a torch file"):
        with pytest.raises(IntegrityError, match="somewhere:v7: not a plain-tensor weights file"):
            loading.state_dict(data, "somewhere:v7")
    assert not marker.exists()


def test_unknown_ref_is_not_found(registry: Registry) -> None:
    with pytest.raises(NotFoundError):
        loading.load_weights(registry, f"{NAME}:v1")


def test_missing_weights_file_is_an_integrity_error(registry: Registry, tmp_path: Path) -> None:
    meta = _register_weights(registry, tmp_path, _state_dict(), "v1")
    (registry.store.root / meta["artifacts"]["model"]["file"]).unlink()
    with pytest.raises(IntegrityError):
        loading.load_weights(registry, NAME)


def _imports_after(statement: str) -> str:
    code = (
        f"import sys; {statement}; "
        "print(','.join(m for m in ('torch', 'sqlite_utils', 'numpy') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=HANG_S,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_cli_import_does_not_import_torch_or_sqlite_utils() -> None:
    code = (
        "import sys, registry.cli; "
        "assert 'torch' not in sys.modules and 'sqlite_utils' not in sys.modules"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=HANG_S
    )
    assert result.returncode == 0, result.stderr


def test_loading_module_imports_torch_only_when_loading() -> None:
    assert "torch" not in _imports_after("import registry.loading").split(",")
