"""The convolutional autoencoder: one per device, trained on its normal log-Mel windows.

Input and output are (batch, 1, n_mels, frames) in [0, 1]. Each encoder block halves both
axes; a 1x1 convolution then squeezes the channels to `latent_channels`, the bottleneck
that keeps the model from simply copying its input (an anomaly should not pass through).
The decoder mirrors the encoder. n_mels and frames must be divisible by 2**len(channels).
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn


class ConvAutoencoder(nn.Module):
    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 64), latent_channels: int = 8):
        super().__init__()
        widths = (1, *channels)
        encoder: list[nn.Module] = []
        for c_in, c_out in pairwise(widths):
            encoder += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out)]
            encoder += [nn.ReLU(inplace=True)]
        encoder.append(nn.Conv2d(channels[-1], latent_channels, 1))
        decoder: list[nn.Module] = [nn.Conv2d(latent_channels, channels[-1], 1), nn.ReLU(True)]
        for c_in, c_out in pairwise(reversed(widths)):
            decoder.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if c_out != 1:
                decoder += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        decoder.append(nn.Sigmoid())
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def from_architecture(architecture: dict) -> ConvAutoencoder:
    """The autoencoder described by a recorded `{"channels": [...], "latent_channels": n}`."""
    return ConvAutoencoder(tuple(architecture["channels"]), architecture["latent_channels"])


def check_input_shape(n_mels: int, frames: int, channels: tuple[int, ...]) -> str | None:
    """None when the autoencoder can take (n_mels, frames) windows, else the reason."""
    divisor = 2 ** len(channels)
    if n_mels % divisor or frames % divisor:
        return (
            f"features.n_mels ({n_mels}) and features.frames ({frames}) must be divisible by "
            f"2**len(train.channels) = {divisor}"
        )
    return None


def reconstruction_errors(
    model: nn.Module, windows: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """Mean squared reconstruction error of each window, shape (n,), on the model's device."""
    device = next(model.parameters()).device
    model.eval()
    errors = []
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            batch = windows[start : start + batch_size].to(device)
            errors.append(((model(batch) - batch) ** 2).mean(dim=(1, 2, 3)).float().cpu())
    return torch.cat(errors) if errors else torch.zeros(0)
