"""pipelines.acoustic.model: the autoencoder's shapes and range, and the input-shape check."""

from __future__ import annotations

import pytest
import torch

from pipelines.acoustic.model import ConvAutoencoder, check_input_shape, reconstruction_errors


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
