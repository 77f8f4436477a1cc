"""pipelines.acoustic.model: the autoencoders' shapes and range, what the dense one
reconstructs (stacked frames of a window's audio), and the input-shape checks."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from pipelines.acoustic.model import (
    ConvAutoencoder,
    DenseAutoencoder,
    check_dense_shape,
    check_input_shape,
    from_architecture,
    reconstruction_errors,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.mark.parametrize(
    ("shape", "channels", "latent"),
    [
        ((2, 1, 128, 256), (16, 32, 64, 64), 8),
        ((2, 1, 64, 64), (8, 16), 4),
        ((3, 1, 16, 32), (4,), 2),
    ],
)
def test_output_shape_equals_input_shape(
    shape: tuple[int, ...], channels: tuple[int, ...], latent: int
) -> None:
    model = ConvAutoencoder(channels, latent).eval()
    x = torch.rand(shape)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert y.dtype == torch.float32


def test_output_is_in_zero_one() -> None:
    model = ConvAutoencoder((8, 16), 4)
    x = torch.randn(4, 1, 64, 64) * 100  # far outside [0, 1]: the sigmoid still bounds it
    with torch.no_grad():
        y = model(x)
    assert float(y.min()) >= 0.0
    assert float(y.max()) <= 1.0


def test_the_bottleneck_squeezes_to_latent_channels() -> None:
    model = ConvAutoencoder((8, 16), 3)
    with torch.no_grad():
        z = model.encoder(torch.rand(2, 1, 64, 64))
    assert z.shape == (2, 3, 16, 16)  # two halvings


@pytest.mark.parametrize(
    ("n_mels", "frames", "channels"),
    [(128, 256, (16, 32, 64, 64)), (64, 64, (8, 16)), (16, 16, (4, 8)), (8, 24, (4, 8, 16))],
)
def test_check_input_shape_accepts(n_mels: int, frames: int, channels: tuple[int, ...]) -> None:
    assert check_input_shape(n_mels, frames, channels) is None


@pytest.mark.parametrize(
    ("n_mels", "frames", "channels", "divisor"),
    [(100, 256, (16, 32, 64, 64), 16), (128, 250, (16, 32, 64, 64), 16), (6, 8, (4, 8), 4)],
)
def test_check_input_shape_refuses(
    n_mels: int, frames: int, channels: tuple[int, ...], divisor: int
) -> None:
    reason = check_input_shape(n_mels, frames, channels)
    assert reason is not None
    assert f"features.n_mels ({n_mels})" in reason
    assert f"features.frames ({frames})" in reason
    assert f"2**len(train.channels) = {divisor}" in reason


def test_a_refused_shape_really_breaks_the_model() -> None:
    assert check_input_shape(18, 64, (8, 16)) is not None
    model = ConvAutoencoder((8, 16), 4).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 1, 18, 64))
    assert y.shape != (1, 1, 18, 64)  # 18 -> 9 -> 5 -> 10 -> 20


def test_reconstruction_errors() -> None:
    model = ConvAutoencoder((4, 8), 2)
    windows = torch.rand(10, 1, 16, 16)
    errors = reconstruction_errors(model, windows, batch_size=3)
    assert errors.shape == (10,)
    assert not model.training  # scored in eval mode
    with torch.no_grad():
        expected = ((model(windows) - windows) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(errors, expected)
    assert (errors > 0).all()


def test_reconstruction_errors_do_not_depend_on_batch_size() -> None:
    model = ConvAutoencoder((4, 8), 2)
    windows = torch.rand(7, 1, 16, 16)
    torch.testing.assert_close(
        reconstruction_errors(model, windows, batch_size=2),
        reconstruction_errors(model, windows, batch_size=64),
    )


def test_reconstruction_errors_of_no_windows() -> None:
    errors = reconstruction_errors(ConvAutoencoder((4, 8), 2), torch.zeros(0, 1, 16, 16))
    assert errors.shape == (0,)


def test_the_dcase_dense_autoencoder_is_640_128x4_8_128x4_640() -> None:
    net = DenseAutoencoder(n_mels=128, frames=313, stack=5, units=(128, 128, 128, 128, 8))
    linear = [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, nn.Linear)]
    widths = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640]
    assert linear == list(itertools.pairwise(widths))
    assert sum(isinstance(m, nn.BatchNorm1d) for m in net.modules()) == 9  # none on the output


def test_a_dense_autoencoder_reconstructs_each_run_of_stacked_audio_frames() -> None:
    n_mels, frames, stack = 4, 7, 3
    net = DenseAutoencoder(n_mels, frames, stack, (6, 2)).eval()
    x = torch.rand(2, 1, n_mels, frames + 5)  # 5 columns of padding
    target = net.target(x)
    assert target.shape == (2, frames - stack + 1, stack * n_mels)
    # vector v: frame v's bands, then frame v+1's, ... (the DCASE baseline's layout)
    expected = torch.cat([x[:, 0, :, 2 + t] for t in range(stack)], dim=1)
    torch.testing.assert_close(target[:, 2], expected)
    with torch.no_grad():
        y = net(x)
        padded = x.clone()
        padded[..., frames:] = 9.0
        assert y.shape == target.shape
        torch.testing.assert_close(net(padded), y)  # the padding is no input
    errors = reconstruction_errors(net, x)
    torch.testing.assert_close(errors, ((y - target) ** 2).mean(dim=(1, 2)))


def test_from_architecture_builds_the_recorded_type() -> None:
    dense = {"type": "dense-ae", "n_mels": 8, "frames": 9, "stack": 5, "units": [16, 4]}
    assert isinstance(from_architecture(dense), DenseAutoencoder)
    assert isinstance(from_architecture(dense | {"type": "dense-ae-mahalanobis"}), DenseAutoencoder)
    # recorded before there were types: a convae
    assert isinstance(from_architecture({"channels": [4], "latent_channels": 2}), ConvAutoencoder)


@pytest.mark.parametrize(
    ("frames", "stack", "units", "expected"),
    [
        (313, 5, (128, 8), None),
        (5, 5, (8,), None),
        (4, 5, (8,), "a window holds 4 frames of audio"),
        (313, 5, (), "train.dense_units must name at least one layer width"),
    ],
)
def test_check_dense_shape(
    frames: int, stack: int, units: tuple[int, ...], expected: str | None
) -> None:
    reason = check_dense_shape(frames, stack, units)
    assert reason is None if expected is None else expected in str(reason)
