"""Anomaly detectors, the model types of the acoustic family (`train.model`).

Every detector maps a device's scaled log-Mel windows to one score per window, higher meaning
less like the device's normal; a clip's score is the mean of its windows' scores, the
threshold is fitted on the training windows' scores, and the gate compares two models by
their mean score on the same windows. So the evaluate, deploy and score code is the same for
every type. A fitted detector is a dict of tensors (saved as `model.pth`, loaded with
`weights_only=True` after its sha256 is checked) and its `architecture`, a JSON mapping whose
`type` names the detector.

convae    the seed's convolutional autoencoder (model.py): a window's mean squared
          reconstruction error. Trained by pipelines/engine.py.
twfr-pca  no training loop. Each window's frames are pooled per Mel band at both ends of
          time-weighted pooling (TWFR, Guan et al. 2023): the maximum (impulsive faults such
          as a valve's) and the mean (stationary ones such as a bearing's hum). Each of the two
          vectors is standardised and scored by its reconstruction error through a PCA of the
          normal windows; the two errors are each divided by their spread on normal clips
          held out of the fit (so neither dominates) and added, and the sum is divided by its
          mean on those held-out clips: a score is in multiples of the model's normal, so two
          versions' scores compare. It keeps the pooled vectors it was fitted on as its
          references, so a fine-tuning refits on them and the day's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from sklearn.decomposition import PCA

from pipelines.acoustic import model
from pipelines.engine import load_verified

TYPES = ("convae", "twfr-pca")
FOLDS = 10  # clips held out in turn to measure a member's spread on unseen normal audio
MAX_REFERENCES = 4096  # pooled windows a twfr-pca keeps (the most recent)


class Detector(Protocol):
    def scores(self, windows: np.ndarray) -> np.ndarray:
        """One score per scaled window (n, n_mels, frames)."""
        ...


@dataclass(frozen=True)
class ConvAE:
    net: model.ConvAutoencoder

    def scores(self, windows: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).unsqueeze(1)
        return model.reconstruction_errors(self.net, x).numpy()


@dataclass(frozen=True)
class TwfrPca:
    state: dict[str, torch.Tensor]
    frames: int  # a window's frames that hold audio (the rest is padding)

    def scores(self, windows: np.ndarray) -> np.ndarray:
        total = np.zeros(len(windows))
        for pool, vectors in pooled(windows, self.frames).items():
            prefix = f"{pool}."
            member = {
                k.removeprefix(prefix): v.numpy()
                for k, v in self.state.items()
                if k.startswith(prefix)
            }
            total += _pca_error(member, vectors) * float(member["weight"])
        return total / float(self.state["normal"])


def kind(architecture: dict[str, Any]) -> str:
    """The detector type an architecture describes (versions from before types: convae)."""
    return architecture.get("type", "convae")


def build(architecture: dict[str, Any], state: dict[str, torch.Tensor]) -> Detector:
    if kind(architecture) == "twfr-pca":
        return TwfrPca(state, architecture["frames"])
    net = model.from_architecture(architecture)
    net.load_state_dict(state)
    return ConvAE(net.eval())


def load(path: Path, sha256: str, architecture: dict[str, Any]) -> Detector:
    """The detector saved at `path`, its bytes checked against `sha256` before loading."""
    return build(architecture, load_verified(path, sha256))


def pooled(windows: np.ndarray, frames: int) -> dict[str, np.ndarray]:
    """Each window's per-band maximum and mean over its `frames` columns of audio: the two
    ends of TWFR pooling, r = 0 and r = 1."""
    body = windows[:, :, :frames]
    return {"max": body.max(axis=2).astype(np.float64), "mean": body.mean(axis=2, dtype=np.float64)}


def fit_twfr_pca(
    windows: np.ndarray,
    clip_of_window: np.ndarray,
    frames: int,
    components: int,
    parent: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """A twfr-pca fitted on `windows` (and on the references of `parent`, a fine-tuning)."""
    clips = np.asarray(clip_of_window, dtype=np.int64)
    vectors = pooled(windows, frames)
    if parent is not None:
        offset = int(parent["ref_clips"].max()) + 1 if len(parent["ref_clips"]) else 0
        clips = np.concatenate([parent["ref_clips"].numpy(), clips + offset])
        vectors = {p: np.vstack([parent[f"{p}.refs"].numpy(), v]) for p, v in vectors.items()}
    keep = slice(-MAX_REFERENCES, None)
    clips, vectors = clips[keep], {p: v[keep] for p, v in vectors.items()}
    state = {"ref_clips": torch.from_numpy(clips)}
    normal = 0.0
    for pool, x in vectors.items():
        member = _fit_pca(x, components)
        held = _held_out(x, clips, components)
        member["weight"] = np.float64(1.0 / (held.std() + 1e-9) if len(held) > 2 else 1.0)
        member["refs"] = x
        normal += float(member["weight"]) * float(held.mean() if len(held) else 1.0)
        state |= {f"{pool}.{k}": torch.from_numpy(np.asarray(v)) for k, v in member.items()}
    return state | {"normal": torch.tensor(max(normal, 1e-12), dtype=torch.float64)}


def _fit_pca(x: np.ndarray, components: int) -> dict[str, np.ndarray]:
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)  # a constant band (floored at top_db) says nothing
    z = (x - mean) / std
    n = max(1, min(components, len(x) - 1, x.shape[1]))
    pca = PCA(n_components=n, svd_solver="full").fit(z)
    return {"mean": mean, "std": std, "center": pca.mean_, "basis": pca.components_}


def _pca_error(member: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    z = (x - member["mean"]) / member["std"] - member["center"]
    rebuilt = (z @ member["basis"].T) @ member["basis"]
    return ((z - rebuilt) ** 2).mean(axis=1)


def _held_out(x: np.ndarray, clips: np.ndarray, components: int) -> np.ndarray:
    """The scores of normal clips held out of the fit, fold by fold (none below 3 clips)."""
    ids = np.unique(clips)
    if len(ids) < 3:
        return np.zeros(0)
    fold_of = {c: i % min(FOLDS, len(ids)) for i, c in enumerate(ids)}
    folds = np.array([fold_of[c] for c in clips])
    held: list[float] = []
    for fold in np.unique(folds):
        fitted = _fit_pca(x[folds != fold], components)
        errors = _pca_error(fitted, x[folds == fold])
        inside = clips[folds == fold]
        held += [float(errors[inside == c].mean()) for c in np.unique(inside)]
    return np.array(held)
