"""One site's network trained end to end: split its samples, fit through the shared engine,
predict coordinates, evaluate on its held-out samples.

`fit_site` deals the site's samples to train, val and test (pipelines/split.py) and trains
the network `SiteTraining.model` (model.py) on the training samples for the `Keypoints`
objective (objective.py) through pipelines/engine.py with seed 002's settings: AdamW, cosine
warm restarts after a linear warm-up, an EMA of the weights and buffers (the weights it
returns), bf16 where set, channels_last, gradient accumulation, early stopping on hit@5 with
the MAE as its guard. Its state is the network's tensors only, so that
`torch.load(weights_only=True)` reads it; the architecture (a JSON mapping) and the input
size go beside it.

A fine-tuning (`parent`, nanoGPT's `init_from`) keeps its parent's architecture and input
size and starts from its weights. A kill -9 during training loses nothing: the same call with
the same `checkpoints_dir` resumes to the weights an uninterrupted run ends with.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipelines import engine
from pipelines.keypoint import model as networks
from pipelines.keypoint.data import Samples
from pipelines.keypoint.errors import SiteError
from pipelines.keypoint.metrics import keypoint_metrics
from pipelines.keypoint.objective import Keypoints, predict
from pipelines.keypoint.params import SiteTraining
from pipelines.split import Split, split_rows


@dataclasses.dataclass(frozen=True)
class TrainedSite:
    """A site's network as trained: what it is, its tensors, its input size and its split."""

    architecture: dict[str, Any]
    state: dict[str, torch.Tensor]
    height: int
    width: int
    split: Split
    history: list[engine.Row] = dataclasses.field(default_factory=list)
    epochs_run: int = 0
    resumed_from: int = 0
    device: str = "cpu"


def architecture(s: SiteTraining) -> dict[str, Any]:
    """The network the settings describe (model.py records every setting)."""
    return networks.architecture(
        s.model, channels=s.channels, modules=s.modules, blocks=s.blocks, stem=s.stem, head=s.head
    )


def engine_config(s: SiteTraining) -> engine.EngineConfig:
    """The engine's settings; SiteTraining names each engine setting it has as EngineConfig
    does (a fine-tuning's epochs are the site's own)."""
    shared = {f.name for f in dataclasses.fields(engine.EngineConfig)}
    return engine.EngineConfig(**{k: v for k, v in vars(s).items() if k in shared})


def objective(s: SiteTraining) -> Keypoints:
    return Keypoints(sigma=s.sigma, offset_weight=s.offset_weight, augment=s.augment)


def fit_site(
    site: str,
    samples: Samples,
    settings: SiteTraining,
    checkpoints_dir: Path,
    parent: TrainedSite | None = None,
) -> TrainedSite:
    """Train the settings' network on `samples`' training part (from `parent` when given)."""
    s = settings
    height, width = samples.images.shape[2:]
    if parent is not None and (parent.height, parent.width) != (height, width):
        raise SiteError(
            site,
            f"cannot fine-tune {parent.height}x{parent.width} weights on {height}x{width} "
            "input: set data.height and data.width to the parent's",
        )
    split = split_rows(
        len(samples), s.val_fraction, s.test_fraction, s.split_seed, scope=f"site {site}"
    )
    built = parent.architecture if parent is not None else architecture(s)

    def make_model() -> nn.Module:
        net = networks.build(built)
        if parent is not None:
            net.load_state_dict(parent.state)
        return net

    result = engine.fit(
        make_model,
        objective(s),
        _part(samples, split.train),
        _part(samples, split.val),
        engine_config(s),
        checkpoints_dir,
        label=site,
    )
    return TrainedSite(
        built,
        result.state,
        height,
        width,
        split,
        result.history,
        result.epochs_run,
        result.resumed_from,
        result.device,
    )


def network(trained: TrainedSite) -> nn.Module:
    """The trained site's network, built and loaded once for any number of predictions."""
    net = networks.build(trained.architecture)
    net.load_state_dict(trained.state)
    return net


def predict_site(trained: TrainedSite, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """(N, 4) coordinates in input pixels (gap x, y, slider x, y) for uint8 (N, 4, H, W)."""
    return predict(network(trained), torch.from_numpy(images), batch_size)


def evaluate(trained: TrainedSite, samples: Samples) -> tuple[dict[str, float], np.ndarray]:
    """Seed 002's figures on the held-out samples, in each captcha's own pixels, and the
    predictions (N, 4) in those pixels."""
    test = trained.split.test
    scale = samples.scales[test][:, None]
    predicted = predict_site(trained, samples.images[test]) / scale
    return keypoint_metrics(predicted, samples.coords[test] / scale), predicted


def _part(samples: Samples, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor] | None:
    if not len(index):
        return None
    return torch.from_numpy(samples.images[index]), torch.from_numpy(samples.coords[index])
