"""The keypoint family's params, its own file (keypoint/params.yaml), typed and checked.

    data: {root, height, width}                where the sites are; the network's input size
    generate: {sites, count, seed, ...}        the demo captchas (stage generate)
    train: {model, ...}                        how each site's network is trained (SiteTraining)
    deploy: {auto_promote, keep_backups}

The defaults are the demo's: a small Lite-HRNet on 128 x 256 captchas that trains on the CPU
in a minute or two. Seed 002's full Lite-HRNet-18 at 256 x 512 is `bench/keypoint.py`'s
`full` config (channels 40, 80, 160, 320; modules 2, 4, 2; blocks 2; stem 32; head 64).
Checked as the other families' are (pipelines/params.py): an unknown key, a wrong
type or an out-of-range value stops the stage before any work, naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipelines.errors import ParamError
from pipelines.params import INIT_FROM_PATTERN, bounded, build_section, matching, read_file


@dataclass(frozen=True)
class SiteTraining:
    """How one site's network is trained: the architecture (model.py), the objective
    (objective.py) and the shared engine's settings, named as EngineConfig names them."""

    model: Literal["litehrnet", "unet"] = "litehrnet"  # unet: the plain reference
    # scratch | production (fine-tune each site's production network on its samples now)
    # | NAME:vN,... (pinned parents)
    init_from: str = matching(
        "scratch", INIT_FROM_PATTERN, "scratch, production or NAME:vN, comma-separated"
    )
    val_fraction: float = bounded(0.1, gt=0, lt=1)
    test_fraction: float = bounded(0.1, gt=0, lt=1)  # the held-out samples evaluate reports
    split_seed: int = bounded(0, ge=0)
    # the network: Lite-HRNet's branch widths (one per branch), modules per stage, blocks
    # per module; the unet's first width is channels[0]
    channels: tuple[int, ...] = bounded((16, 32, 64), ge=4)
    modules: tuple[int, ...] = bounded((1, 1), ge=1)
    blocks: int = bounded(1, ge=1)
    stem: int = bounded(16, ge=4)
    head: int = bounded(32, ge=4)
    # the objective: the heatmaps' Gaussian (in 1/4-resolution cells) and the offsets' weight
    sigma: float = bounded(2.0, gt=0)
    offset_weight: float = bounded(1.0, ge=0)
    augment: bool = True  # flips and colour orders of the training captchas (objective.py)
    # the engine (seed 002's): AdamW, cosine warm restarts after a linear warm-up, an EMA of
    # the weights and buffers, early stopping on hit@5 guarded by the MAE
    seed: int = bounded(0, ge=0)
    epochs: int = bounded(8, ge=1)
    min_epochs: int = bounded(3, ge=1)
    batch_size: int = bounded(4, ge=1)
    accumulate: int = bounded(1, ge=1)  # batches per optimizer step
    optimizer: Literal["adam", "adamw"] = "adamw"
    lr: float = bounded(0.005, gt=0, le=1)
    betas: tuple[float, ...] = bounded((0.9, 0.999), gt=0, lt=1)
    eps: float = bounded(1e-8, gt=0)
    weight_decay: float = bounded(0.05, ge=0)
    warmup_epochs: int = bounded(1, ge=0)
    cosine_t0: int | None = bounded(8, ge=1)  # the first cosine period's epochs; null: none
    cosine_t_mult: int = bounded(1, ge=1)
    eta_min: float = bounded(3e-6, ge=0)
    ema_decay: float | None = bounded(0.95, gt=0, lt=1)  # null: no EMA
    grad_clip: float | None = bounded(5.0, gt=0)
    monitor: str = "val_hit_le_5px"
    mode: Literal["min", "max"] = "max"
    patience: int = bounded(4, ge=1)
    min_delta: float = bounded(0.0, ge=0)
    guard: str | None = "val_mae_px"  # a second metric whose improvement keeps training on
    guard_mode: Literal["min", "max"] = "min"
    guard_min_delta: float = bounded(0.01, ge=0)
    bf16: Literal["auto", "on", "off"] = "auto"  # auto: on CUDA only (bench/README.md)
    channels_last: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    min_gpu_mem_mb: int = bounded(1024, ge=0)
    torch_threads: int = bounded(2, ge=1)  # on the CPU; results reproducible for a value


@dataclass(frozen=True)
class KeypointData:
    root: str = "data"  # one folder per site (labels.jsonl, images/), relative to keypoint/
    height: int = bounded(128, ge=32)  # the network's input, a multiple of 32; images are
    width: int = bounded(256, ge=32)  # letterboxed into it (data.py)


@dataclass(frozen=True)
class KeypointGenerate:
    # a demo site per name (letters, digits, '.', '-'), each its own captchas
    sites: tuple[str, ...] = matching(("shop",), r"[A-Za-z0-9][A-Za-z0-9.-]{0,63}", "a site code")
    count: int = bounded(2000, ge=10)  # captchas per site
    seed: int = bounded(0, ge=0)
    gap: Literal["shadow", "outline", "mixed"] = "mixed"  # how the gap is drawn
    rotation: float = bounded(0.3, ge=0, le=1)  # the share of captchas rotated
    noise: float = bounded(0.3, ge=0, le=1)  # the share with pixel noise


@dataclass(frozen=True)
class KeypointDeploy:
    auto_promote: bool = True  # in a plain run only; an experiment never moves an alias
    keep_backups: int = bounded(3, ge=1)  # earlier bundles kept in the deploy folder
    gate_samples: int = bounded(64, ge=1)  # validation captchas a version keeps for the gate


@dataclass(frozen=True)
class KeypointParams:
    data: KeypointData = KeypointData()
    generate: KeypointGenerate = KeypointGenerate()
    train: SiteTraining = SiteTraining()
    deploy: KeypointDeploy = KeypointDeploy()


def load_params(path: Path | str = "params.yaml") -> KeypointParams:
    """The family's params file (keypoint/params.yaml), checked; defaults where it is silent."""
    params = build_section(KeypointParams, read_file(path), "", str(path))
    for key in ("height", "width"):
        if getattr(params.data, key) % 32:
            raise ParamError(
                f"{path}: data.{key}: expected a multiple of 32 (the network halves it five "
                f"times), got {getattr(params.data, key)}"
            )
    return params
