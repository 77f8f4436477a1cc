"""CenterNet's keypoint targets, losses and decoding, for two keypoints a captcha (the gap,
then the slider piece), on a grid of cells `stride` input pixels wide.

Coordinates are (N, 4) float: gap x, gap y, slider x, slider y, in input pixels. A
coordinate c lies in cell floor(c / stride), at sub-cell offset c / stride - floor(c /
stride) in [0, 1); decoding is (cell + offset) x stride, so a target decodes to exactly its
coordinates. A keypoint's heatmap is a Gaussian of `sigma` cells around its cell, exactly
1.0 there; the focal loss treats the 1.0 as the positive and reduces the penalty of the
cells near it. The offset loss is the L1 at each keypoint's cell only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SIGMA = 2.0  # cells: the Gaussian's standard deviation when none is given


def targets(
    coords: Tensor, height: int, width: int, stride: int = 4, sigma: float | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """For coords (N, 4) on an input of height x width: the heatmaps (N, 2, h, w) in [0, 1],
    the sub-cell offsets (N, 4) and the flat cell index of each keypoint (N, 2), for cells
    of `stride` pixels. A keypoint outside the input is put in the nearest cell."""
    h, w = height // stride, width // stride
    sigma = SIGMA if sigma is None else sigma
    points = coords.float().view(-1, 2, 2) / stride  # (N, keypoint, x/y), in cells
    largest = torch.tensor([w - 1, h - 1], dtype=points.dtype, device=points.device)
    cells = torch.minimum(points.floor().clamp_min(0), largest)
    xs = torch.arange(w, dtype=points.dtype, device=points.device)
    ys = torch.arange(h, dtype=points.dtype, device=points.device)
    dx2 = (xs - cells[..., 0, None]).square()  # (N, 2, w)
    dy2 = (ys - cells[..., 1, None]).square()  # (N, 2, h)
    heat = torch.exp(-(dy2[..., :, None] + dx2[..., None, :]) / (2 * sigma**2))
    index = (cells[..., 1] * w + cells[..., 0]).long()
    return heat, (points - cells).flatten(1), index


def focal_loss(logits: Tensor, heat: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss of logits (N, 2, h, w) against the
    heatmaps, summed and divided by the number of keypoints (the cells at 1.0), in float32.
    The logs are log-sigmoids, finite for any logit."""
    logits, heat = logits.float(), heat.float()
    positive = heat.eq(1).float()
    p, not_p = torch.sigmoid(logits), torch.sigmoid(-logits)
    gain = positive * not_p.pow(alpha) * F.logsigmoid(logits)
    # zero at the keypoints themselves, where (1 - heat) is 0
    penalty = (1 - heat).pow(beta) * p.pow(alpha) * F.logsigmoid(-logits)
    return -(gain + penalty).sum() / positive.sum().clamp_min(1)


def offset_loss(offsets: Tensor, target_offset: Tensor, index: Tensor) -> Tensor:
    """The mean L1 of the offsets (N, 4, h, w) at each keypoint's cell against the target
    offsets (N, 4), in float32."""
    return F.l1_loss(_at(offsets, index), target_offset.float())


def decode(logits: Tensor, offsets: Tensor, stride: int = 4) -> Tensor:
    """Coordinates (N, 4) in input pixels: each heatmap's highest cell, plus its offset."""
    n, _, _, w = logits.shape
    index = logits.flatten(2).argmax(dim=2)  # (N, 2)
    cells = torch.stack((index % w, index // w), dim=2).float()
    return ((cells + _at(offsets, index).view(n, 2, 2)) * stride).flatten(1)


def _at(offsets: Tensor, index: Tensor) -> Tensor:
    """The offsets (N, 4) at the cells `index` (N, 2): dx, dy at the gap's, at the slider's."""
    at = index.repeat_interleave(2, dim=1).unsqueeze(2)
    return offsets.float().flatten(2).gather(2, at).squeeze(2)
