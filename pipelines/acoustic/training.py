"""The train stage: one autoencoder per extracted device.

Written per device: `model.pth` (the best weights, a state_dict, with its sha256 beside it
in `model.pth.json`), `scale.npy`, and `checkpoints/` (`last.pth`, `best.pth`) from which a
killed run resumes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines import engine, fleet
from pipelines.acoustic import features, model
from pipelines.acoustic.extraction import load_device
from pipelines.errors import ParamError
from pipelines.params import Params, as_dict


@dataclass(frozen=True)
class TrainInput:
    features: Path
    params: Params


def plan(features_dir: Path, params: Params) -> list[fleet.Job]:
    """One job per extracted device, fingerprinted by its features, the params and the code."""
    f, t = params.features, params.train
    problem = model.check_input_shape(f.n_mels, f.frames, t.channels)
    if problem:
        raise ParamError(f"params.yaml: {problem}")
    settings = [as_dict(t), fleet.code_digest(model, engine, sys.modules[__name__])]
    settings.append(torch.__version__)
    return [
        fleet.Job(
            device, fleet.fingerprint(settings, stamp), TrainInput(features_dir / device, params)
        )
        for device, stamp in fleet.complete_devices(features_dir).items()
    ]


def build(job: fleet.Job, work: Path) -> dict[str, Any]:
    inp: TrainInput = job.inputs
    p = inp.params.train
    torch.set_num_threads(p.torch_threads)
    windows, _, index = load_device(inp.features)
    validation = np.asarray(index["validation"], dtype=bool)
    scale = features.fit_scale(windows, ~validation)  # on the training part only
    x = torch.from_numpy(features.apply_scale(windows, scale, out=windows)).unsqueeze(1)
    validation = torch.from_numpy(validation)
    result = engine.fit(
        lambda: model.ConvAutoencoder(p.channels, p.latent_channels),
        x[~validation],
        x[validation] if validation.any() else None,
        p,
        work / "checkpoints",
    )
    sha = engine.save_checkpoint(work / "model.pth", result.state)
    np.save(work / "scale.npy", np.array(scale, dtype=np.float64))
    fleet.write_json(work / "history.json", result.history)
    return {
        "windows": len(x),
        "validation_windows": int(validation.sum()),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "val_loss": result.best_loss if validation.any() else None,
        "train_loss": result.history[-1]["train_loss"],
        "trained_on": result.device,
        "resumed_from_epoch": result.resumed_from,
        "model_sha256": sha,
        "architecture": {"channels": list(p.channels), "latent_channels": p.latent_channels},
    }


def log_curves(models_dir: Path, live_dir: Path) -> None:
    """Every device's loss curves, as DVCLive plots `{device}/train/loss`, `{device}/val/loss`."""
    from dvclive import Live

    with Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        for device in fleet.complete_devices(models_dir):
            for row in fleet.read_json(models_dir / device / "history.json"):
                live.step = row["epoch"]
                live.log_metric(f"{device}/train/loss", row["train_loss"])
                if row["val_loss"] is not None:
                    live.log_metric(f"{device}/val/loss", row["val_loss"])


def load_model(path: Path, sha256: str, architecture: dict[str, Any]) -> model.ConvAutoencoder:
    """The autoencoder saved at `path`, its bytes checked against `sha256` before loading."""
    net = model.from_architecture(architecture)
    net.load_state_dict(engine.load_verified(path, sha256))
    return net.eval()
