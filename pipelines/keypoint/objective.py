"""What the keypoint network trains for (the engine's `Objective`), and its predictions.

A batch is (images, coords): uint8 (N, 4, H, W), R, G, B and the padding mask, and float32
(N, 4), gap x, y, slider x, y in input pixels. The network sees the images in [0, 1]; the
loss is the heatmaps' focal loss plus `offset_weight` x the offsets' L1 (heatmap.py), in
float32 whatever the network's precision. Validation adds seed 002's figures (metrics.py)
of the decoded coordinates over all the batches, each prefixed `val_`.

With `augment`, each training captcha is seen flipped upside down half the time and with
its colour channels in a random order: what a captcha is does not change under either (the
piece stays on the left, the gap keeps the piece's shape), and the network, which overfits
a site's captchas within a few epochs otherwise, learns from twelve variants of each
(bench/README.md). The draws come from torch's random state, which the engine checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from pipelines import engine
from pipelines.keypoint import heatmap
from pipelines.keypoint.metrics import keypoint_metrics


class Keypoints:
    """The focal loss of the heatmaps and the L1 of the offsets, on cells of `stride`
    pixels with Gaussians of `sigma` cells (None: heatmap.SIGMA)."""

    def __init__(
        self,
        stride: int = 4,
        sigma: float | None = None,
        offset_weight: float = 1.0,
        augment: bool = False,
    ) -> None:
        self.stride, self.sigma, self.offset_weight = stride, sigma, offset_weight
        self.augment = augment

    def loss(self, model: nn.Module, batch: engine.Batch) -> Tensor:
        images, coords = augmented(*batch) if self.augment else batch
        return self._loss(model(_inputs(images)), coords, images.shape[-2:])

    def validate(self, model: nn.Module, batches: Iterator[engine.Batch]) -> dict[str, float]:
        total, predicted, true = 0.0, [], []
        for images, coords in batches:
            outputs = model(_inputs(images))
            total += self._loss(outputs, coords, images.shape[-2:]).item() * len(images)
            predicted.append(heatmap.decode(*outputs, stride=self.stride).cpu())
            true.append(coords.cpu())
        figures = keypoint_metrics(torch.cat(predicted).numpy(), torch.cat(true).numpy())
        rows = sum(len(t) for t in true)
        return {"val_loss": total / rows} | {f"val_{k}": v for k, v in figures.items()}

    def _loss(self, outputs: tuple[Tensor, Tensor], coords: Tensor, size: torch.Size) -> Tensor:
        logits, offsets = outputs
        heat, offset, index = heatmap.targets(coords, *size, self.stride, self.sigma)
        focal = heatmap.focal_loss(logits, heat)
        return focal + self.offset_weight * heatmap.offset_loss(offsets, offset, index)


def predict(model: nn.Module, images: Tensor, batch_size: int) -> np.ndarray:
    """The coordinates (N, 4) in input pixels the model finds in uint8 images (N, 4, H, W),
    `batch_size` at a time on the model's device, in eval mode and without gradients."""
    device = next(model.parameters()).device
    training = model.training
    model.eval()
    found = []
    with torch.no_grad():
        for batch in images.split(batch_size):
            outputs = model(_inputs(batch.to(device)))
            found.append(heatmap.decode(*outputs, stride=model.stride).cpu())
    model.train(training)
    return torch.cat(found).numpy()


def augmented(images: Tensor, coords: Tensor) -> tuple[Tensor, Tensor]:
    """The captchas (N, 4, H, W) and their coordinates (N, 4), each flipped upside down with
    probability 1/2 (a y becomes H - y: pixel rows are unit intervals) and its R, G, B in a
    random order; the mask channel stays last."""
    n, _, height, width = images.shape
    flip = (torch.rand(n) < 0.5).to(images.device)
    images = torch.where(flip[:, None, None, None], images.flip(2), images)
    ys = coords[:, 1::2]
    coords = coords.clone()
    coords[:, 1::2] = torch.where(flip[:, None], height - ys, ys)
    order = torch.rand(n, 3).argsort(dim=1).to(images.device)
    colours = images[:, :3].gather(1, order[:, :, None, None].expand(n, 3, height, width))
    return torch.cat((colours, images[:, 3:]), dim=1), coords


def _inputs(images: Tensor) -> Tensor:
    return images.float() / 255
