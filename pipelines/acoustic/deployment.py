"""The deploy stage: register each device's new model, promote it through the gate, export.

Per device (in parallel): the candidate bundle is written and must reproduce the
evaluation's scores from raw audio (`bundle.build`); its artifacts are registered as
`{family}_{device}_{model_type}` (the same bytes again register nothing new), with the
comparison the gate needs: the current production model's error and the candidate's,
both on the candidate's evaluation windows (the original system's degradation check).
With `deploy.auto_promote` the candidate is promoted to production if the gate passes.
Then every device's production version is exported to the inference layout.

The store is `deploy.store` resolved against the project root, or $MODEL_STORE; a queued
experiment runs in a copy under `.dvc/tmp/exps/`, and still registers into the one store.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines import fleet
from pipelines.acoustic import bundle, features, model
from pipelines.acoustic.extraction import load_device
from pipelines.params import Params, as_dict
from registry.api import Registry
from registry.errors import GateError, NotFoundError
from registry.loading import load_weights
from registry.naming import model_name

# registry artifact file -> where the pipeline keeps it, relative to models/{device}
ARTIFACTS = {"model.pth": "model.pth", "checkpoint_best.pth": "checkpoints/best.pth"}


def store_root(params: Params, cwd: Path | None = None) -> Path:
    """$MODEL_STORE, else deploy.store against the project root (outside DVC's exp copies)."""
    if os.environ.get("MODEL_STORE"):
        return Path(os.environ["MODEL_STORE"])
    store = Path(params.deploy.store)
    if store.is_absolute():
        return store
    cwd = (cwd or Path.cwd()).resolve()
    for parent in (cwd, *cwd.parents):
        if (
            parent.name == "exps"
            and parent.parent.name == "tmp"
            and parent.parent.parent.name == ".dvc"
        ):
            return parent.parent.parent.parent / store
    return cwd / store


@dataclass(frozen=True)
class DeployInput:
    candidate: bundle.DeployInput
    features: Path
    store: Path


def plan(
    models_dir: Path, eval_dir: Path, features_dir: Path, root: Path, params: Params
) -> list[fleet.Job]:
    store = store_root(params)
    settings = [as_dict(params.deploy), str(store), fleet.code_digest(sys.modules[__name__])]
    return [
        fleet.Job(
            job.device,
            fleet.fingerprint(settings, job.fingerprint),
            DeployInput(job.inputs, features_dir / job.device, store),
        )
        for job in bundle.plan(models_dir, eval_dir, root, params)
    ]


def build(job: fleet.Job, work: Path) -> dict[str, Any]:
    inp: DeployInput = job.inputs
    candidate, p = inp.candidate, inp.candidate.params
    summary = bundle.build(fleet.Job(job.device, job.fingerprint, candidate), work)
    registry = Registry(inp.store)
    name = model_name(p.deploy.family, job.device, p.deploy.model_type)
    meta = registry.register(
        _registration_folder(candidate, work),
        p.deploy.family,
        job.device,
        p.deploy.model_type,
        metrics=fleet.read_json(candidate.evaluation / "summary.json"),
        params={
            "features": as_dict(p.features),
            "train": as_dict(p.train),
            "split": as_dict(p.split),
        },
        extra={
            "comparison": _comparison(registry, name, work, inp.features),
            "inference": _inference(work),
        },
        data_fingerprint=fleet.read_stamp(inp.features),
    )
    shutil.rmtree(work / "registration")
    summary |= {"name": name, "version": meta["version"], "new": not meta.get("existing")}
    if p.deploy.auto_promote:
        gate = p.deploy.gate
        try:
            registry.promote(
                name,
                meta["version"],
                reason="auto_promote by the deploy stage",
                floors=gate.floors,
                rollback_factor=gate.rollback_factor,
            )
        except GateError as exc:
            summary["gate_refused"] = str(exc)
    return summary


def _registration_folder(candidate: bundle.DeployInput, work: Path) -> Path:
    folder = work / "registration"
    folder.mkdir()
    for name, source in ARTIFACTS.items():
        shutil.copyfile(candidate.model / source, folder / name)
    shutil.copyfile(work / bundle.SCALE, folder / "scale.npy")
    shutil.copyfile(work / bundle.threshold_file(work.name), folder / "threshold.npy")
    return folder


def _inference(work: Path) -> dict[str, Any]:
    """What a bundle needs besides its files: kept in the registry, written back on export."""
    manifest = fleet.read_json(work / bundle.MANIFEST)
    return {key: manifest[key] for key in ("sample_rate", "features", "architecture")}


def _comparison(registry: Registry, name: str, work: Path, features_dir: Path) -> dict[str, Any]:
    """Production's error and the candidate's, on the candidate's evaluation windows."""
    try:
        holder = registry.get(f"{name}@production")
    except NotFoundError:
        return {}
    windows, _, index = load_device(features_dir)
    validation = np.asarray(index["validation"], dtype=bool)
    raw = _unscale(windows[validation] if validation.any() else windows, tuple(index["scale"]))
    candidate = bundle.load_bundle(work)
    holder_scale = np.load(registry.store.root / holder["artifacts"]["scale"]["file"])
    holder_net = model.from_architecture(holder["inference"]["architecture"])
    holder_net.load_state_dict(load_weights(registry, f"{name}:v{holder['version']}"))
    return {
        "holder_version": holder["version"],
        "holder_error": _error(holder_net.eval(), raw, tuple(holder_scale)),
        "candidate_error": _error(candidate.net, raw, candidate.scale),
    }


def _unscale(windows: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    low, high = scale
    return windows * (high - low + 1e-6) + low


def _error(net: torch.nn.Module, raw: np.ndarray, scale: tuple[float, float]) -> float:
    scaled = torch.from_numpy(features.apply_scale(raw, scale)).unsqueeze(1)
    return float(model.reconstruction_errors(net, scaled).mean())


def export_production(devices: list[str], params: Params, target: Path) -> dict[str, str]:
    """Export each device's production version to `target/{device}/`; drop the others."""
    registry = Registry(store_root(params))
    target.mkdir(parents=True, exist_ok=True)  # a DVC output, even when nothing is in production
    exported = {}
    for device in devices:
        ref = f"{model_name(params.deploy.family, device, params.deploy.model_type)}@production"
        try:
            meta = registry.get(ref)
        except NotFoundError:
            continue
        exported[device] = f"{meta['name']}:v{meta['version']}"
        current = target / device / bundle.MANIFEST
        if not current.is_file() or fleet.read_json(current).get("model") != exported[device]:
            registry.export(ref, target, params.deploy.keep_backups)
    for folder in target.iterdir():
        if folder.is_dir() and not folder.name.startswith(".") and folder.name not in exported:
            shutil.rmtree(folder)
    return exported
