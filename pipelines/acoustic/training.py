"""The train stage: one detector of type `train.model` per extracted device, new or fine-tuned.

Where each device starts is `train.init_from` (see pipelines/parents.py). From scratch, the
scale is fitted on the training windows; a fine-tuning loads its parent's registered state
(sha256-checked, `weights_only`) and keeps the parent's scale, so that it sees inputs as it
was fitted to. A `convae` (built from `train.channels`) or `dense-ae*` (from
`train.stack_frames` and `dense_units`; a fine-tuning: in its parent's architecture) is
trained by pipelines/engine.py on its reconstruction error (model.Reconstruction), with
the settings `engine_config` takes from `train` (`finetune_epochs` at `finetune_lr` when
fine-tuned); a type without a training loop (`twfr-pca`, `twfr-gmm`, `twfr-knn`,
`frame-gmm`) is fitted at once, a fine-tuning on its parent's references and the day's
windows (pipelines/acoustic/detectors.py).

Written per device: `model.pth` (the detector's state, with its sha256 beside it in
`model.pth.json`), `scale.npy`, and for a type with a training loop `checkpoints/`
(`last.pth`, `best.pth`) from which a killed run resumes; the summary records where it
started (`start`).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines import cluster, engine, fleet, parents
from pipelines.acoustic import data, detectors, family, features, model
from pipelines.acoustic.extraction import load_device
from pipelines.errors import DeviceError, DeviceSkipped, ParamError
from pipelines.params import Params, TrainParams, as_dict
from registry.api import Registry
from registry.errors import RegistryError
from registry.naming import model_name
from registry.store import locate

log = logging.getLogger(__name__)
PLOTTED = ("loss", "lr")  # the curves dvc.yaml declares a plot of


@dataclass(frozen=True)
class Parent:
    """What a fine-tuning takes from its parent version."""

    scale: tuple[float, float]
    architecture: dict[str, Any]
    state: dict[str, torch.Tensor]  # its fitted detector
    reference: float  # its normal score: on its own evaluation windows, or 1 (SELF_SCALED)


@dataclass(frozen=True)
class TrainInput:
    features: Path
    params: Params
    start: parents.Start | None  # None: not to be trained in this run
    store: Path | None
    parent: Parent | None = None  # its parent, read by the stage's process (on a cluster)


def plan(features_dir: Path, params: Params) -> list[fleet.Job]:
    """One job per extracted device, fingerprinted by its features, the params and the code.

    The fingerprint holds `init_from` as written, not the version it resolves to: once a
    day's fine-tuning is promoted, a rerun over the same inputs is not fine-tuned again."""
    family_name = params.deploy.family
    devices = fleet.complete_devices(features_dir)
    mine = {device: params.for_device(device) for device in devices}  # `devices:` overrides
    for device, p in mine.items():
        _check_shape(p, device)
    names = {d: model_name(family_name, d, p.train.model) for d, p in mine.items()}
    start = parents.plan(params.train.init_from, names, family_name, "device", locate)
    code = (model, detectors, engine, parents, family, sys.modules[__name__])
    settings = [family_name, torch.__version__, fleet.code_digest(*code)]
    return [
        fleet.Job(
            device,
            fleet.fingerprint([as_dict(mine[device].train), *settings], devices[device]),
            TrainInput(features_dir / device, mine[device], start.starts[device], start.store),
        )
        for device in names
    ]


def unread_settings(params: Params, devices: list[str]) -> list[str]:
    """A line per `train` setting that changes nothing in this run: a value other than the
    default that no device's model type reads (`dvc exp run -S train.lr=...` on twfr-pca),
    or a device's override that its own type does not read."""
    types = sorted({params.train_for(d).model for d in devices} or {params.train.model})
    default = as_dict(TrainParams())
    lines = [
        _unread(f"train.{key}", value, types)
        for key, value in as_dict(params.train).items()
        if value != default[key] and not any(_reads(t, key) for t in types)
    ]
    for device in devices:
        model_type = params.train_for(device).model
        lines += [
            _unread(f"devices.{device}.{key}", value, [model_type])
            for key, value in params.devices.get(device, {}).items()
            if not _reads(model_type, key)
        ]
    return lines


def _reads(model_type: str, key: str) -> bool:
    return key in detectors.EVERY_TYPE or key in detectors.READS[model_type]


def _unread(key: str, value: object, types: list[str]) -> str:
    reads = "; ".join(f"{t} reads train.{', train.'.join(detectors.READS[t])}" for t in types)
    return (
        f"params.yaml: {key} = {value} changes nothing: no detector of this run reads it ({reads})"
    )


def _check_shape(params: Params, device: str) -> None:
    f, t = params.features, params.train
    if t.model == "convae":
        problem = model.check_input_shape(f.n_mels, f.frames, t.channels)
    elif t.model in detectors.TRAINED:
        frames = features.audio_frames(f, params.data.sample_rate)
        problem = model.check_dense_shape(frames, t.stack_frames, t.dense_units)
    else:
        problem = None
    if problem:
        where = f"devices.{device} in params.yaml" if params.devices.get(device) else "params.yaml"
        raise ParamError(f"{where}: {problem}")


@dataclass(frozen=True)
class Fitted:
    """A detector as the train stage leaves it, whichever its type."""

    state: dict[str, torch.Tensor]
    architecture: dict[str, Any]
    epochs_run: int
    best_epoch: int
    val_loss: float | None
    train_loss: float
    trained_on: str = "cpu"
    resumed_from: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def build(job: fleet.Job, work: Path) -> dict[str, Any]:
    inp: TrainInput = job.inputs
    p = inp.params.train
    if inp.start is None:
        raise DeviceSkipped(job.device, f"train.init_from ({p.init_from}) starts no training of it")
    torch.set_num_threads(p.torch_threads)
    windows, _, index = load_device(inp.features)
    validation = np.asarray(index["validation"], dtype=bool)
    parent = inp.parent or with_parent(job).inputs.parent  # read by the stage, or here
    # on the training part only; a fine-tuning keeps its parent's
    scale = parent.scale if parent else features.fit_scale(windows, ~validation)
    x = features.apply_scale(windows, scale, out=windows)
    novel = _novel_clips(job.device, inp, parent, x, index) if parent else []
    clip_of = np.asarray(index["train_clip_of_window"])
    keep = ~np.isin(clip_of, novel)
    x, validation, clip_of = x[keep], validation[keep], clip_of[keep]
    if p.model in detectors.TRAINED:
        fitted = _train_network(x, validation, inp.params, parent, work / "checkpoints", job.device)
    else:
        fitted = _fit_at_once(x, validation, clip_of, inp.params, parent)
    sha = engine.save_checkpoint(work / "model.pth", fitted.state)
    np.save(work / "scale.npy", np.array(scale, dtype=np.float64))
    fleet.write_json(work / "history.json", fitted.history)
    return {
        "windows": len(x),
        "validation_windows": int(validation.sum()),
        "epochs_run": fitted.epochs_run,
        "best_epoch": fitted.best_epoch,
        "val_loss": fitted.val_loss,
        "train_loss": fitted.train_loss,
        "trained_on": fitted.trained_on,
        "resumed_from_epoch": fitted.resumed_from,
        "model_sha256": sha,
        "architecture": fitted.architecture,
        "start": inp.start.as_dict(),
        "recordings": data.formats(index["train_clips"]),  # what fleet score checks clips against
        "novel_clips": [index["train_clips"][i]["file"] for i in novel],
    }


def _train_network(
    x: np.ndarray,
    validation: np.ndarray,
    params: Params,
    parent: Parent | None,
    work: Path,
    device: str,
) -> Fitted:
    """A convae or dense-ae* trained by the training loop; a dense-ae-mahalanobis then fits
    its scoring on the training windows' errors (held-out normal: the validation ones)."""
    p = params.train
    if parent is None:
        architecture = {"type": p.model} | _architecture(params)
    else:
        architecture = {"type": p.model} | parent.architecture
    windows = torch.from_numpy(x).unsqueeze(1)
    held = torch.from_numpy(validation)
    result = engine.fit(
        lambda: _network(architecture, parent),
        model.Reconstruction(),
        windows[~held],
        windows[held] if validation.any() else None,
        engine_config(p, finetuning=parent is not None),
        work,
        label=device,  # its progress lines name the device
    )
    state = result.state
    if p.model == "dense-ae-mahalanobis":
        net = detectors.network(architecture, state)
        state = state | detectors.fit_mahalanobis(net, x[~validation], x[validation])
    return Fitted(
        state=state,
        architecture=architecture,
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        val_loss=result.best_value if validation.any() else None,
        train_loss=result.history[-1]["train_loss"],
        trained_on=result.device,
        resumed_from=result.resumed_from,
        history=result.history,
    )


def _architecture(params: Params) -> dict[str, Any]:
    """A new network's layout, from `train` and, for a dense one, the windows' audio."""
    t, f = params.train, params.features
    if t.model == "convae":
        return {"channels": list(t.channels), "latent_channels": t.latent_channels}
    frames = features.audio_frames(f, params.data.sample_rate)
    return {
        "n_mels": f.n_mels,
        "frames": frames,
        "stack": t.stack_frames,
        "units": list(t.dense_units),
    }


def _fit_at_once(
    x: np.ndarray,
    validation: np.ndarray,
    clip_of: np.ndarray,
    params: Params,
    parent: Parent | None,
) -> Fitted:
    """A type without a training loop (detectors.METHODS), fitted on the training windows (a
    fine-tuning: in its parent's architecture, on its references too); its validation
    windows' mean score is its `val_loss`."""
    if parent is None:
        frames = features.audio_frames(params.features, params.data.sample_rate)
        architecture = detectors.new_architecture(params.train.model, frames, params.train)
    else:
        architecture = parent.architecture
    fit = ~validation
    state = detectors.fit(
        architecture, x[fit], clip_of[fit], params.train, parent.state if parent else None
    )
    detector = detectors.build(architecture, state)
    held = float(detector.scores(x[validation]).mean()) if validation.any() else None
    return Fitted(state, architecture, 0, 0, held, float(detector.scores(x[fit]).mean()))


def _novel_clips(
    device: str, inp: TrainInput, parent: Parent, x: np.ndarray, index: dict[str, Any]
) -> list[int]:
    """The recorded clips unlike the parent's normal: its mean score on them is above
    `novelty_factor` x its score on its own validation windows. They are left out of the
    fine-tuning (a model must not learn a fault as normal); when they are most of the day,
    the device is skipped. verified_normal/ clips are always learned."""
    factor = inp.params.train.novelty_factor
    clips = index["train_clips"]
    recorded = [i for i, clip in enumerate(clips) if clip["role"] == "recorded"]
    if not factor or not recorded:
        return []
    scores = detectors.build(parent.architecture, parent.state).scores(x)
    clip_of = np.asarray(index["train_clip_of_window"])
    ratio = {i: float(scores[clip_of == i].mean()) / parent.reference for i in recorded}
    novel = [i for i in recorded if ratio[i] > factor]
    if 2 * len(novel) > len(recorded):
        shown = ", ".join(f"x{ratio[i]:.2f}" for i in novel)
        raise DeviceSkipped(
            device,
            f"drifted from {inp.start.parent}: {len(novel)} of {len(recorded)} recorded clips "
            f"have its error above x{factor:g} its own normal ({shown}); not fine-tuned "
            "(clips a person has checked as normal belong in verified_normal/)",
        )
    return novel


def engine_config(p: TrainParams, finetuning: bool) -> engine.EngineConfig:
    """The engine's settings for a network: early stopping on its validation loss (the
    engine's defaults), a fine-tuning with its own epochs and learning rate."""
    epochs, lr = (p.finetune_epochs, p.finetune_lr) if finetuning else (p.epochs, p.lr)
    return engine.EngineConfig(
        seed=p.seed,
        epochs=epochs,
        min_epochs=min(p.min_epochs, epochs),
        batch_size=p.batch_size,
        lr=lr,
        grad_clip=p.grad_clip,
        device=p.device,
        min_gpu_mem_mb=p.min_gpu_mem_mb,
        patience=p.patience,
        min_delta=p.min_delta,
    )


def with_parent(job: fleet.Job) -> fleet.Job:
    """A fine-tuning's job with its parent read here, for a worker that must not open the
    model store (it stays on the stage's machine: pipelines/cluster.py)."""
    inp: TrainInput = job.inputs
    if inp.start is None or not inp.start.parent:
        return job
    parent = _parent(job.device, inp.store, inp.start.parent)
    return dataclasses.replace(job, inputs=dataclasses.replace(inp, parent=parent, store=None))


def _parent(device: str, store: Path | None, ref: str) -> Parent:
    try:
        version = Registry(store).version(ref)
        state = family.state(version)  # read and sha256-checked once
        architecture = family.architecture(version)
        detector = detectors.build(architecture, state)
        if detectors.kind(architecture) in detectors.SELF_SCALED:
            normal = 1.0  # by construction: its mean score on held-out normal clips
        else:
            normal = family.own_error(version, detector)
        return Parent(family.scale(version), architecture, state, normal)
    except (RegistryError, ValueError) as exc:
        raise DeviceError(device, f"cannot start from {ref}: {exc}") from exc


def _network(architecture: dict[str, Any], parent: Parent | None) -> model.Network:
    if parent is None:
        return model.from_architecture(architecture)
    return detectors.network(architecture, parent.state)


def log_curves(models_dir: Path, live_dir: Path) -> None:
    """Every device's training curves as DVCLive plots: `{device}/train/loss`,
    `{device}/val/loss` in `live_dir`, the learning rate `{device}/lr` in `live_dir/lr`."""
    devices = fleet.complete_devices(models_dir)
    engine.log_curves(
        {d: fleet.read_json(models_dir / d / "history.json") for d in devices},
        live_dir,
        PLOTTED,
    )


class Stage:
    """The train stage: scaled log-Mel windows -> a detector per device, curves in `live`."""

    ARGUMENTS = ("features", "out")
    OPTIONS: Mapping[str, str] = {"live": "logs/train"}

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = paths

    def work(self, p: Params) -> dict[str, fleet.Outcome]:
        out = self.paths["out"]
        on = cluster.of(p.fleet, [self.paths["features"]], prepare=with_parent)
        jobs = plan(self.paths["features"], p)
        for line in unread_settings(p, [job.device for job in jobs]):
            log.warning("%s", line)
        outcomes = fleet.run_stage(out, jobs, build, p.fleet.workers, "train", on)
        log_curves(out, self.paths["live"])
        return outcomes
