"""Benchmark: the keypoint family's networks, their speed and what they reach on captchas.

Run by hand from the repository root (not in CI, not in tests):

    .venv/bin/python -m bench.keypoint speed [--batch 8] [--steps 6] [--json OUT]
    .venv/bin/python -m bench.keypoint accuracy [--config demo|full|unet] [--count N]
                                                [--epochs N] [--minutes M] [--json OUT]

`speed`: images per second of a training step (forward, backward, AdamW) and of inference,
for Lite-HRNet-18 at 256 x 512 (seed 002's), the demo's small Lite-HRNet at 128 x 256 and
the plain U-Net reference at 256 x 512, each in fp32 and bf16 autocast, contiguous and
channels_last, beside the fp32 contiguous run of the same network as a ratio. On CUDA (when
there is one) the same, and the largest training batch that fits (doubling until out of
memory). The median of `--steps` timed steps after two warm-up steps.

`accuracy`: generates `--count` captchas (the demo's generator, at the config's size) and
trains one site through `training.fit_site` with the config's settings, then reports seed
002's figures on the held-out captchas and the wall time. `--minutes` sets the epochs from
a measured first epoch so that the training fits in about that budget (the cosine period
follows); `--epochs` sets them outright. Seed 002's targets: MAE < 2 px, RMSE < 3 px,
hit@1 > 90 %, hit@2 > 95 %, hit@5 > 99 %.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from pipelines.keypoint import model as networks
from pipelines.keypoint import synth, training
from pipelines.keypoint.card import METRICS
from pipelines.keypoint.data import read_site
from pipelines.keypoint.objective import Keypoints
from pipelines.keypoint.params import SiteTraining

FULL = {
    "channels": (40, 80, 160, 320),
    "modules": (2, 4, 2),
    "blocks": 2,
    "stem": 32,
    "head": 64,
    "batch_size": 16,  # the demo's 4 pays for its tiny network, not for this one
}
CONFIGS: dict[str, tuple[dict[str, Any], tuple[int, int]]] = {
    "demo": ({}, (128, 256)),  # SiteTraining's defaults: the demo's small Lite-HRNet
    "full": (FULL, (256, 512)),
    "unet": ({"model": "unet", "channels": (16, 32, 64), "head": 32}, (256, 512)),
}
SPEED = (("litehrnet-18", FULL, (256, 512)), ("demo", {}, (128, 256)))
SPEED += (("unet-16", CONFIGS["unet"][0], (256, 512)),)
TARGETS = {"mae_px": 2.0, "rmse_px": 3.0, "hit_le_1px": 90.0, "hit_le_2px": 95.0}
TARGETS["hit_le_5px"] = 99.0


def settings(overrides: dict[str, Any]) -> SiteTraining:
    return dataclasses.replace(SiteTraining(), **overrides)


def step_rate(
    net: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], train: bool, steps: int
) -> float:
    """Images per second of a training step (or an inference pass), the median of `steps`."""
    device = batch[0].device
    objective = Keypoints()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    times = []
    for i in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        if train:
            optimizer.zero_grad(set_to_none=True)
            objective.loss(net, batch).backward()
            optimizer.step()
        else:
            with torch.no_grad():
                net(batch[0].float() / 255)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # the first steps warm caches and allocators
            times.append(time.perf_counter() - started)
    return len(batch[0]) / statistics.median(times)


def a_batch(size: tuple[int, int], n: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 4, *size), generator=g, dtype=torch.uint8)
    coords = torch.rand(n, 4, generator=g) * torch.tensor([size[1], size[0]] * 2)
    return images.to(device), coords.to(device)


def speed(batch: int, steps: int) -> dict[str, Any]:
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    found: dict[str, Any] = {}
    for device in devices:
        for name, overrides, size in SPEED:
            arch = training.architecture(settings(overrides))
            rows = {}
            for bf16 in (False, True):
                for last in (False, True):
                    net = networks.build(arch).to(device)
                    data = a_batch(size, batch, device)
                    if last:
                        net = net.to(memory_format=torch.channels_last)
                        data = (data[0].contiguous(memory_format=torch.channels_last), data[1])
                    key = f"{'bf16' if bf16 else 'fp32'}{' channels_last' if last else ''}"
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                        rows[key] = {
                            "train": step_rate(net.train(), data, True, steps),
                            "infer": step_rate(net.eval(), data, False, steps),
                        }
            base = rows["fp32"]
            for row in rows.values():
                row |= {f"{k}_ratio": row[k] / base[k] for k in ("train", "infer")}
            entry = {"parameters": networks.parameter_count(networks.build(arch))}
            entry |= {"size": list(size), "batch": batch, "settings": rows}
            if device.type == "cuda":
                entry["largest_batch"] = largest_batch(arch, size, device)
            found[f"{device.type} {name}"] = entry
            print_speed(f"{device.type} {name}", entry)
    return found


def largest_batch(arch: dict[str, Any], size: tuple[int, int], device: torch.device) -> int:
    """The largest power-of-two training batch (bf16, channels_last) that fits in memory."""
    fits, n = 0, 8
    while n <= 4096:
        net = networks.build(arch).to(device).to(memory_format=torch.channels_last)
        try:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                step_rate(net.train(), a_batch(size, n, device), True, 1)
        except torch.OutOfMemoryError:
            break
        finally:
            del net
            torch.cuda.empty_cache()
        fits, n = n, n * 2
    return fits


def print_speed(name: str, entry: dict[str, Any]) -> None:
    print(f"\n{name}: {entry['parameters']:,} parameters, {entry['size']}, batch {entry['batch']}")
    print(f"  {'setting':20} {'train img/s':>11} {'ratio':>6} {'infer img/s':>11} {'ratio':>6}")
    for key, r in entry["settings"].items():
        print(
            f"  {key:20} {r['train']:11.1f} {r['train_ratio']:6.2f} "
            f"{r['infer']:11.1f} {r['infer_ratio']:6.2f}"
        )
    if "largest_batch" in entry:
        print(f"  largest training batch that fits (bf16, channels_last): {entry['largest_batch']}")


def accuracy(config: str, count: int, epochs: int | None, minutes: float | None) -> dict[str, Any]:
    overrides, (height, width) = CONFIGS[config]
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        started = time.perf_counter()
        synth.generate_site(site, count, 0, synth.SiteStyle(height=height, width=width))
        generated = time.perf_counter() - started
        samples, _ = read_site(site, height, width)
        s = settings(overrides)
        if minutes is not None:
            probe = dataclasses.replace(s, epochs=1, cosine_t0=1, warmup_epochs=0)
            started = time.perf_counter()
            training.fit_site("probe", samples, probe, Path(tmp) / "probe")
            epochs = max(1, int(minutes * 60 / (time.perf_counter() - started)))
        if epochs is not None:
            s = dataclasses.replace(s, epochs=epochs, cosine_t0=epochs, patience=epochs)
        started = time.perf_counter()
        trained = training.fit_site("bench", samples, s, Path(tmp) / "checkpoints")
        seconds = time.perf_counter() - started
        figures, _ = training.evaluate(trained, samples)
    met = {
        k: figures[k] < v if METRICS[k] == "lower" else figures[k] > v for k, v in TARGETS.items()
    }
    result = {
        "config": config,
        "size": [height, width],
        "captchas": count,
        "held_out": len(trained.split.test),
        "parameters": networks.parameter_count(networks.build(trained.architecture)),
        "epochs_run": trained.epochs_run,
        "train_seconds": seconds,
        "generate_seconds": generated,
        "device": trained.device,
        "figures": figures,
        "seed_002_targets_met": met,
    }
    print(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fast = sub.add_parser("speed")
    fast.add_argument("--batch", type=int, default=8)
    fast.add_argument("--steps", type=int, default=6)
    fit = sub.add_parser("accuracy")
    fit.add_argument("--config", choices=sorted(CONFIGS), default="demo")
    fit.add_argument("--count", type=int, default=2000)
    fit.add_argument("--epochs", type=int)
    fit.add_argument("--minutes", type=float)
    for p in (fast, fit):
        p.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.command == "speed":
        result = speed(args.batch, args.steps)
    else:
        result = accuracy(args.config, args.count, args.epochs, args.minutes)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
