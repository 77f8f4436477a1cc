"""The keypoint networks (pipelines/keypoint/model.py): their outputs' shapes, Lite-HRNet-18's
size, architectures that rebuild the same network, channels_last and bf16 autocast."""

from __future__ import annotations

import json

import pytest
import torch

from pipelines.keypoint import model as networks
from pipelines.keypoint.objective import Keypoints


def small(model_type: str) -> dict:
    """A network small enough for a test: the same structure, narrow."""
    if model_type == "unet":
        return networks.architecture("unet", channels=(8,), head=16)
    return networks.architecture(channels=(16, 32, 64), modules=(1, 1), blocks=1, stem=16, head=16)


def images(n: int, height: int, width: int) -> torch.Tensor:
    return torch.rand(n, 4, height, width, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("model_type", networks.MODEL_TYPES)
@pytest.mark.parametrize(("height", "width"), [(128, 256), (256, 512)])
def test_outputs_are_heatmaps_and_offsets_at_a_quarter(
    model_type: str, height: int, width: int
) -> None:
    net = networks.build(small(model_type)).eval()
    with torch.no_grad():
        logits, offsets = net(images(2, height, width))
    assert logits.shape == (2, 2, height // 4, width // 4)
    assert offsets.shape == (2, 4, height // 4, width // 4)
    assert torch.isfinite(logits).all() and torch.isfinite(offsets).all()


def test_lite_hrnet_18_has_the_papers_size() -> None:
    net = networks.build(networks.architecture())
    backbone, full = networks.parameter_count(net.backbone), networks.parameter_count(net)
    print(f"Lite-HRNet-18: backbone {backbone:,} parameters, with neck and heads {full:,}")
    assert 0.9e6 < backbone < 1.4e6
    assert backbone < full


def test_the_heatmap_bias_is_centernets() -> None:
    net = networks.build(small("litehrnet"))
    assert torch.allclose(net.heatmap[-1].bias, torch.tensor(networks.HEATMAP_BIAS))


@pytest.mark.parametrize("model_type", networks.MODEL_TYPES)
def test_an_architecture_rebuilds_the_same_network(model_type: str) -> None:
    recorded = json.loads(json.dumps(small(model_type)))
    assert recorded["type"] == model_type and recorded["stride"] == 4
    first, second = networks.build(recorded), networks.build(recorded)
    assert networks.parameter_count(first) == networks.parameter_count(second)
    second.load_state_dict(first.state_dict())
    x = images(1, 64, 128)
    with torch.no_grad():
        for a, b in zip(first.eval()(x), second.eval()(x), strict=True):
            assert torch.equal(a, b)


def test_the_mean_and_std_are_the_architectures_not_the_states() -> None:
    net = networks.build(networks.architecture(mean=(0.5,) * 4, std=(0.25,) * 4))
    assert "mean" not in net.state_dict()
    assert net.mean.flatten().tolist() == [0.5] * 4 and net.std.flatten().tolist() == [0.25] * 4


@pytest.mark.parametrize("model_type", networks.MODEL_TYPES)
def test_channels_last_computes_the_same(model_type: str) -> None:
    net = networks.build(small(model_type)).eval()
    x = images(2, 64, 128)
    with torch.no_grad():
        plain = net(x)
        net = net.to(memory_format=torch.channels_last)
        last = net(x.to(memory_format=torch.channels_last))
    for a, b in zip(plain, last, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("model_type", networks.MODEL_TYPES)
def test_trains_under_bf16_autocast_with_channels_last(model_type: str) -> None:
    net = networks.build(small(model_type)).to(memory_format=torch.channels_last)
    batch = (
        (images(2, 64, 128) * 255).to(torch.uint8).to(memory_format=torch.channels_last),
        torch.tensor([[10.0, 20.0, 100.0, 40.0], [63.5, 0.0, 3.9, 63.9]]),
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = net(batch[0].float() / 255)
        loss = Keypoints().loss(net, batch)
    assert logits.dtype == torch.bfloat16
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_rejects_an_input_not_a_multiple_of_32() -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        networks.build(small("litehrnet"))(torch.rand(1, 4, 48, 64))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"model_type": "resnet"}, "model type"),
        ({"channels": (16, 32), "modules": (1, 1)}, "branch widths"),
        ({"channels": (16, 33, 64), "modules": (1, 1)}, "even widths"),
        ({"stem": 15}, "even widths"),
        ({"in_channels": 3}, "one value per input channel"),
    ],
)
def test_rejects_an_architecture_it_cannot_build(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        networks.architecture(**settings)
