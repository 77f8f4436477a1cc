"""The keypoint objective: heatmap targets and their decoding (heatmap.py), the losses, seed
002's figures (metrics.py), and `Keypoints` training and validating a small network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipelines.keypoint import heatmap
from pipelines.keypoint import model as networks
from pipelines.keypoint.metrics import METRICS, keypoint_metrics
from pipelines.keypoint.objective import Keypoints, augmented, predict

HEIGHT, WIDTH = 64, 128


def coords(n: int, seed: int = 0) -> torch.Tensor:
    """Random keypoints on a HEIGHT x WIDTH input, with cell edges and the input's corners."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, 2, generator=g) * torch.tensor([WIDTH, HEIGHT])
    picked = torch.tensor([[[0.0, 0.0], [WIDTH - 0.01, HEIGHT - 0.01]], [[4.0, 8.0], [3.99, 12.5]]])
    return torch.cat((picked, xy)).flatten(1)


def offset_map(offset: torch.Tensor, index: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Offsets (N, 4, h, w): the target offsets at the cells around each keypoint, noise
    elsewhere."""
    n, k = index.shape[0], index.shape[2]
    maps = torch.rand(n, 2, 2, h * w, generator=torch.Generator().manual_seed(1))
    maps.scatter_(3, index[:, :, None].expand(n, 2, 2, k), offset.transpose(2, 3))
    return maps.view(n, 4, h, w)


def test_targets_are_one_at_each_keypoints_cell() -> None:
    points = coords(6)
    heat, offset, index = heatmap.targets(points, HEIGHT, WIDTH)
    h, w = HEIGHT // 4, WIDTH // 4
    assert heat.shape == (8, 2, h, w) and offset.shape == (8, 2, 9, 2)
    assert index.shape == (8, 2, 9)  # the 3 x 3 cells around each keypoint, its own first
    assert heat.min() >= 0 and heat.max() == 1
    assert torch.equal(heat.flatten(2).argmax(dim=2), index[..., 0])
    assert (heat.eq(1).flatten(2).sum(dim=2) == 1).all()  # one positive per keypoint
    own = offset[:, :, 0]
    assert ((own >= 0) & (own < 1)).all()
    assert index[1, :, 0].tolist() == [2 * w + 1, 3 * w]  # (4, 8), (3.99, 12.5): floor(c / 4)
    assert offset[:, :, 1:].abs().max() < 2


def test_a_heatmap_one_cell_off_still_decodes_to_the_keypoint() -> None:
    points = coords(32)
    heat, offset, index = heatmap.targets(points, HEIGHT, WIDTH)
    h, w = heat.shape[-2:]
    cells = torch.stack((index[..., 0] % w, index[..., 0] // w), dim=2)
    off = torch.where(cells < torch.tensor([w - 1, h - 1]), cells + 1, cells - 1)
    shifted = torch.zeros_like(heat).flatten(2)
    shifted.scatter_(2, (off[..., 1] * w + off[..., 0])[..., None], 1.0)
    decoded = heatmap.decode(shifted.view_as(heat), offset_map(offset, index, h, w))
    assert torch.allclose(decoded, points, atol=1e-4, rtol=0)


def test_a_wider_sigma_spreads_the_heat() -> None:
    narrow, _, _ = heatmap.targets(coords(2), HEIGHT, WIDTH, sigma=1.0)
    wide, _, _ = heatmap.targets(coords(2), HEIGHT, WIDTH, sigma=3.0)
    assert wide.sum() > narrow.sum()


def test_decoding_the_targets_gives_back_the_coordinates() -> None:
    points = coords(32)
    heat, offset, index = heatmap.targets(points, HEIGHT, WIDTH)
    decoded = heatmap.decode(heat, offset_map(offset, index, *heat.shape[-2:]))
    assert torch.allclose(decoded, points, atol=1e-4, rtol=0)


def test_the_focal_loss_is_lowest_at_the_true_heatmap() -> None:
    heat, _, _ = heatmap.targets(coords(4), HEIGHT, WIDTH)
    true = torch.logit(heat.clamp(1e-4, 1 - 1e-4))
    shifted = true.roll(shifts=3, dims=3)
    at_truth = heatmap.focal_loss(true, heat)
    assert at_truth < heatmap.focal_loss(shifted, heat) / 10
    assert at_truth < heatmap.focal_loss(torch.zeros_like(true), heat)
    assert torch.isfinite(heatmap.focal_loss(torch.full_like(true, 1e4), heat))


def test_the_offset_loss_is_zero_at_the_truth() -> None:
    _, offset, index = heatmap.targets(coords(4), HEIGHT, WIDTH)
    maps = offset_map(offset, index, HEIGHT // 4, WIDTH // 4)
    assert heatmap.offset_loss(maps, offset, index) == 0
    assert heatmap.offset_loss(maps, offset + 0.25, index) == pytest.approx(0.25)


def test_metrics_on_hand_made_errors() -> None:
    true = np.full((4, 4), 50.0)
    errors = np.array(
        [
            [0.5, -0.5, 1, 0],  # gap 0.5, slider 0.5: within 1 px
            [2, -2, 0, 2],  # gap 2, slider 1: 1.5, within 2 px
            [-10, 0, 4, -6],  # gap 5, slider 5: 5, within 5 px
            [12, 0, 6, 6],  # gap 6, slider 6: no hit
        ]
    )
    figures = keypoint_metrics(true + errors, true)
    assert list(figures) == list(METRICS)
    assert figures["hit_le_1px"] == 25 and figures["hit_le_2px"] == 50
    assert figures["hit_le_5px"] == 75
    assert figures["gap_mae"] == pytest.approx(13.5 / 4)
    assert figures["slider_mae"] == pytest.approx(12.5 / 4)
    assert figures["mae_px"] == pytest.approx(26 / 8)
    assert figures["rmse_px"] == pytest.approx(math.sqrt(127.5 / 8))


def test_metrics_of_a_perfect_prediction() -> None:
    true = np.random.default_rng(0).uniform(0, 100, (5, 4))
    figures = keypoint_metrics(true, true)
    assert figures["mae_px"] == figures["rmse_px"] == 0
    assert figures["hit_le_1px"] == 100


def test_metrics_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"expected \(N, 4\)"):
        keypoint_metrics(np.zeros((3, 4)), np.zeros((3, 2)))


def blobs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Captchas of two bright squares on dark noise: the gap white, the slider red."""
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(n, 4, HEIGHT, WIDTH, generator=g) * 60).to(torch.uint8)
    images[:, 3] = 255
    centres = torch.rand(n, 2, 2, generator=g) * torch.tensor([WIDTH - 16, HEIGHT - 16]) + 8
    for i, ((gx, gy), (sx, sy)) in enumerate(centres.int().tolist()):
        images[i, :3, gy - 4 : gy + 4, gx - 4 : gx + 4] = 255
        images[i, 0, sy - 4 : sy + 4, sx - 4 : sx + 4] = 255
    return images, centres.int().float().flatten(1)


def small() -> networks.KeypointNet:
    torch.manual_seed(0)
    return networks.build(
        networks.architecture(channels=(16, 32, 64), modules=(1, 1), blocks=1, stem=16, head=16)
    )


def test_a_small_network_learns_to_find_two_blobs() -> None:
    net, objective, batch = small(), Keypoints(sigma=1.0), blobs(4)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = objective.loss(net, batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < losses[0] / 8  # about 35 times lower


def test_validate_returns_every_figure() -> None:
    net, (images, points) = small().eval(), blobs(6)
    batches = iter([(images[:4], points[:4]), (images[4:], points[4:])])
    with torch.no_grad():
        figures = Keypoints().validate(net, batches)
    assert set(figures) == {"val_loss"} | {f"val_{name}" for name in METRICS}
    assert all(math.isfinite(v) for v in figures.values())
    assert all(0 <= figures[f"val_hit_le_{px}px"] <= 100 for px in (1, 2, 5))


def test_predict_gives_coordinates_in_input_pixels() -> None:
    net, (images, _) = small(), blobs(5)
    found = predict(net, images, batch_size=2)
    assert found.shape == (5, 4) and found.dtype == np.float32
    assert ((found[:, ::2] >= 0) & (found[:, ::2] <= WIDTH + 4)).all()
    assert net.training  # as it was


def test_augmented_captchas_keep_their_keypoints_on_their_shapes() -> None:
    images, centres = blobs(32)
    torch.manual_seed(0)
    flipped, moved = augmented(images, centres)
    assert torch.equal(moved[:, 0::2], centres[:, 0::2])  # the x never change
    upside_down = moved[:, 1] != centres[:, 1]
    assert 0 < upside_down.sum() < 32
    assert torch.equal(moved[upside_down, 1::2], HEIGHT - centres[upside_down, 1::2])
    assert torch.equal(flipped[:, 3], images[:, 3])  # the mask stays the 4th channel
    for i, flip in enumerate(upside_down.tolist()):
        seen = images[i, :3].flip(1) if flip else images[i, :3]  # row r is row H - 1 - r
        assert torch.equal(flipped[i, :3].sort(dim=0).values, seen.sort(dim=0).values)
    kept = ~upside_down
    assert not torch.equal(flipped[kept, :3], images[kept, :3])  # colours move without a flip
