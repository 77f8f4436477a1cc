"""The autoencoders: one per device, trained on its normal log-Mel windows.

Both take windows (batch, 1, n_mels, frames) in [0, 1] and say what they reconstruct with
`target(x)`; the training engine (pipelines/engine.py) minimises `Reconstruction`'s loss,
the mean squared error between `model(x)` and `model.target(x)`, and a window's score is
that error.

ConvAutoencoder (convae, the seed's) reconstructs the whole window. Each encoder block
halves both axes; a 1x1 convolution then squeezes the channels to `latent_channels`, the
bottleneck that keeps the model from simply copying its input (an anomaly should not pass
through). The decoder mirrors the encoder. n_mels and frames must be divisible by
2**len(channels).

DenseAutoencoder (dense-ae, the DCASE 2020 Task 2 baseline) reconstructs each run of
`stack` consecutive frames of the window's audio, one vector of stack x n_mels values,
through dense layers (Linear + BatchNorm1d + ReLU) narrowing to a small code; the window's
padding columns are no input to it.
"""

from __future__ import annotations

from collections.abc import Iterator
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

    def target(self, x: torch.Tensor) -> torch.Tensor:
        return x


class DenseAutoencoder(nn.Module):
    """640-128-128-128-128-8-128-128-128-128-640 at the DCASE defaults (128 Mel bands,
    `stack` 5, `units` (128, 128, 128, 128, 8)): the decoder mirrors the encoder's hidden
    layers, the output layer is linear."""

    def __init__(self, n_mels: int, frames: int, stack: int, units: tuple[int, ...]):
        super().__init__()
        self.frames, self.stack = frames, stack  # frames: a window's columns of audio
        widths = (stack * n_mels, *units, *reversed(units[:-1]))
        layers: list[nn.Module] = []
        for c_in, c_out in pairwise(widths):
            layers += [nn.Linear(c_in, c_out), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(widths[-1], widths[0]))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstructed stacked vectors of each window: (batch, vectors, stack x n_mels)."""
        vectors = self.target(x)
        return self.net(vectors.flatten(0, 1)).view_as(vectors)

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """Every run of `stack` consecutive audio frames of each window, as one vector
        (frame by frame, as the DCASE baseline lays them out)."""
        runs = x[:, 0, :, : self.frames].unfold(2, self.stack, 1)  # (b, n_mels, vectors, stack)
        return runs.permute(0, 2, 3, 1).flatten(2)


Network = ConvAutoencoder | DenseAutoencoder


class Reconstruction:
    """The autoencoders' objective for the engine: the mean squared error of the
    reconstruction, on the validation windows per reconstructed value (`val_loss`)."""

    def loss(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(model(batch).float(), model.target(batch))

    def validate(self, model: nn.Module, batches: Iterator[torch.Tensor]) -> dict[str, float]:
        total, windows = 0.0, 0
        for batch in batches:
            target = model.target(batch)
            total += nn.functional.mse_loss(model(batch).float(), target, reduction="sum").item()
            windows += len(batch)
        return {"val_loss": total / target[0].numel() / windows}


def from_architecture(architecture: dict) -> Network:
    """The autoencoder a recorded architecture describes: a convae's (its `type`, or none
    before there were types) `{"channels": [...], "latent_channels": n}`, else a dense
    one's `{"n_mels": n, "frames": n, "stack": n, "units": [...]}`."""
    a = architecture
    if a.get("type", "convae") == "convae":
        return ConvAutoencoder(tuple(a["channels"]), a["latent_channels"])
    return DenseAutoencoder(a["n_mels"], a["frames"], a["stack"], tuple(a["units"]))


def check_input_shape(n_mels: int, frames: int, channels: tuple[int, ...]) -> str | None:
    """None when the autoencoder can take (n_mels, frames) windows, else the reason."""
    divisor = 2 ** len(channels)
    if n_mels % divisor or frames % divisor:
        return (
            f"features.n_mels ({n_mels}) and features.frames ({frames}) must be divisible by "
            f"2**len(train.channels) = {divisor}"
        )
    return None


def check_dense_shape(audio_frames: int, stack: int, units: tuple[int, ...]) -> str | None:
    """None when a dense autoencoder can take windows of `audio_frames` frames of audio."""
    if not units:
        return "train.dense_units must name at least one layer width"
    if audio_frames < stack:
        return (
            f"a window holds {audio_frames} frames of audio (features.window_sec, hop_length, "
            f"frames), fewer than train.stack_frames ({stack})"
        )
    return None


def reconstruction_errors(
    model: nn.Module, windows: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """Mean squared reconstruction error of each window, shape (n,), on the model's device."""
    errors = [e.flatten(1).mean(dim=1) for e in squared_errors(model, windows, batch_size)]
    return torch.cat(errors) if errors else torch.zeros(0)


def squared_errors(
    model: nn.Module, windows: torch.Tensor, batch_size: int = 64
) -> Iterator[torch.Tensor]:
    """Batch by batch, the squared error of each value the model reconstructs, on the CPU."""
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            batch = windows[start : start + batch_size].to(device)
            yield ((model(batch) - model.target(batch)) ** 2).float().cpu()
