"""CenterNet's keypoint targets, losses and decoding, for two keypoints a captcha (the gap,
then the slider piece), on a grid of cells `stride` input pixels wide.

Coordinates are (N, 4) float: gap x, gap y, slider x, slider y, in input pixels. A
coordinate c lies in cell floor(c / stride); decoding is (cell + offset) x stride, so a
target decodes to exactly its coordinates. A keypoint's heatmap is a Gaussian of `sigma`
cells around its cell, exactly 1.0 there; the focal loss treats the 1.0 as the positive and
reduces the penalty of the cells near it. The offsets are trained not at the keypoint's cell
alone, as CenterNet does, but at the cells within `RADIUS` of it, each towards the keypoint
(an offset of -1 to 2 cells): a heatmap that peaks one cell off, as a Gaussian over a point
near a cell's edge does, still decodes to the point (bench/README.md: the keypoint family).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SIGMA = 2.0  # cells: the Gaussian's standard deviation when none is given
RADIUS = 1  # cells around a keypoint's own where its offsets are trained


def targets(
    coords: Tensor, height: int, width: int, stride: int = 4, sigma: float | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """For coords (N, 4) on an input of height x width: the heatmaps (N, 2, h, w) in [0, 1],
    the flat indices (N, 2, K) of the K cells around each keypoint where its offset is
    trained, its own cell first, and the offsets (N, 2, K, 2: x, y) from each of them to
    the keypoint, in cells. A keypoint outside the input is put in the nearest cell."""
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
    near = torch.minimum((cells[:, :, None] + _steps(points)).clamp_min(0), largest)
    index = (near[..., 1] * w + near[..., 0]).long()
    return heat, (points[:, :, None] - near), index


def _steps(points: Tensor) -> Tensor:
    """The (K, 2) steps from a cell to the cells within RADIUS of it, (0, 0) first."""
    span = torch.arange(-RADIUS, RADIUS + 1, dtype=points.dtype, device=points.device)
    steps = torch.cartesian_prod(span, span)
    return steps[steps.abs().sum(dim=1).argsort(stable=True)]


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
    """The mean L1 of the offsets (N, 4, h, w) at the cells `index` (N, 2, K) against the
    target offsets (N, 2, K, 2), in float32."""
    return F.l1_loss(_at(offsets, index), target_offset.float())


def decode(logits: Tensor, offsets: Tensor, stride: int = 4) -> Tensor:
    """Coordinates (N, 4) in input pixels: each heatmap's highest cell, plus its offset."""
    w = logits.shape[-1]
    index = logits.flatten(2).argmax(dim=2)  # (N, 2)
    cells = torch.stack((index % w, index // w), dim=2).float()
    return ((cells + _at(offsets, index[..., None])[:, :, 0]) * stride).flatten(1)


def _at(offsets: Tensor, index: Tensor) -> Tensor:
    """The offsets (N, 2, K, 2: x, y) of each keypoint at its cells `index` (N, 2, K), from
    offset maps (N, 4, h, w): dx, dy of the gap, dx, dy of the slider."""
    n, k = len(offsets), index.shape[-1]
    maps = offsets.float().flatten(2).view(n, 2, 2, -1)  # (N, keypoint, x/y, cells)
    at = maps.gather(3, index[:, :, None].expand(n, 2, 2, k))
    return at.transpose(2, 3)
