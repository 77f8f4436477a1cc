"""The training engine every network family shares: its settings are an `EngineConfig`, its
objective (the loss and the validation metrics) the family's `Objective`.

Read it top to bottom: `fit` seeds everything, picks the device, resumes from the last
checkpoint when there is a valid one, then runs epochs until `epochs` or early stopping.
An epoch is Adam (with the config's weight decay, coupled as L2, as seed 003's trainer has
it) on the objective's loss, gradients clipped to `grad_clip`, then the objective's metrics
on the validation data. The monitored metric (`monitor`, in its direction `mode`) decides
early stopping and, when `plateau_factor` is set, torch's `ReduceLROnPlateau`; both count an
improvement of more than `min_delta`. Every epoch's metrics and learning rate make one row
of the history; `log_curves` writes the rows of a stage's runs as DVCLive plots.

After every epoch it writes `last.pth` (everything needed to continue exactly where it
stopped: optimizer, scheduler, the shuffling generator) and, on improvement, `best.pth`. A
run killed at any moment and started again ends with the same weights as a run never
interrupted. Data is a tensor, or a tuple of tensors indexed together (inputs and targets):
the engine batches rows, the objective knows what they are.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn

from pipelines.errors import IntegrityError

log = logging.getLogger(__name__)
PROGRESS_SECONDS = 10.0
CHECKPOINT_FORMAT = 2  # 2: a named monitored metric and the scheduler's state

Batch = torch.Tensor | tuple[torch.Tensor, ...]  # rows of the data, on the training device
Row = dict[str, float]  # one epoch of the history: epoch, train_loss, the metrics, lr


class Objective(Protocol):
    """What a family trains its network for."""

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The scalar to minimise on one training batch."""
        ...

    def validate(self, model: nn.Module, batches: Iterator[Batch]) -> dict[str, float]:
        """Metric name -> value over all validation batches (the model in eval mode, no
        gradients); the monitored metric is one of them."""
        ...


@dataclass(frozen=True)
class EngineConfig:
    """How the engine trains; each family makes one from its own params."""

    seed: int = 0
    epochs: int = 60
    min_epochs: int = 1  # no early stop before this many epochs
    batch_size: int = 16
    lr: float = 0.001
    weight_decay: float = 0.0
    grad_clip: float | None = None  # the gradients' largest total norm; None: not clipped
    device: Literal["auto", "cpu", "cuda"] = "auto"
    min_gpu_mem_mb: int = 512  # `auto` trains on the CPU when CUDA has less free
    # Early stopping: after `patience` epochs in which `monitor` did not improve by more than
    # `min_delta` in its direction. Without validation data the training loss is monitored.
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True  # return the best epoch's weights, else the last epoch's
    # ReduceLROnPlateau on the monitored metric: lr x factor after `plateau_patience` epochs
    # without improvement, never below `plateau_min_lr`; None: a constant learning rate
    plateau_factor: float | None = None
    plateau_patience: int = 5
    plateau_min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be min or max, not {self.mode!r}")
        if self.plateau_factor is not None and not 0 < self.plateau_factor < 1:
            raise ValueError(f"plateau_factor must be in (0, 1), not {self.plateau_factor}")


@dataclass
class FitResult:
    state: dict[str, torch.Tensor]  # the best epoch's weights (restore_best) or the last's, CPU
    epochs_run: int
    best_epoch: int
    best_value: float  # of the monitored metric
    history: list[Row] = field(default_factory=list)
    device: str = "cpu"
    resumed_from: int = 0


def select_device(preference: str, min_free_mb: int) -> torch.device:
    """`auto` takes CUDA when it is there with enough free memory, else the CPU."""
    if preference == "cpu" or not torch.cuda.is_available():
        if preference == "cuda":
            log.warning("device is cuda but CUDA is not available: training on the CPU")
        return torch.device("cpu")
    if preference == "auto":
        free_mb = torch.cuda.mem_get_info()[0] / 2**20
        if free_mb < min_free_mb:
            log.warning("CUDA has %.0f MB free < %d MB: training on the CPU", free_mb, min_free_mb)
            return torch.device("cpu")
    return torch.device("cuda")


def fit(
    make_model: Callable[[], nn.Module],
    objective: Objective,
    train: Batch,
    val: Batch | None,
    config: EngineConfig,
    checkpoints: Path,
    label: str = "",
) -> FitResult:
    """Train a new `make_model()` on `train` for `objective`; fall back to the CPU on CUDA OOM."""
    device = select_device(config.device, config.min_gpu_mem_mb)
    attempt = functools.partial(
        _fit_on, make_model, objective, train, val, config, checkpoints, label
    )
    try:
        return attempt(device)
    except torch.OutOfMemoryError:
        if device.type != "cuda":
            raise
        log.warning("CUDA out of memory: continuing on the CPU from the last checkpoint")
        torch.cuda.empty_cache()
        return attempt(torch.device("cpu"))


def _fit_on(
    make_model: Callable[[], nn.Module],
    objective: Objective,
    train: Batch,
    val: Batch | None,
    config: EngineConfig,
    checkpoints: Path,
    label: str,
    device: torch.device,
) -> FitResult:
    torch.manual_seed(config.seed)
    progress = _Progress(label or "training", config.epochs)
    model = make_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    monitor, mode = (config.monitor, config.mode) if val is not None else ("train_loss", "min")
    scheduler = _plateau(optimizer, config, mode)
    generator = torch.Generator().manual_seed(config.seed)
    state = {"format": CHECKPOINT_FORMAT, "epoch": 0, "best_epoch": 0, "bad_epochs": 0}
    state |= {"best": math.inf if mode == "min" else -math.inf, "history": []}
    state["best_state"] = _cpu_state(model)
    trainer = _Trainer(model, optimizer, scheduler, generator)
    state |= trainer.resume(checkpoints / "last.pth", device)
    start = state["epoch"]
    for epoch in range(start, config.epochs):
        # Checked before training, so a run resumed after its last epoch trains no more.
        if _stopping(state, config, epoch):
            break
        row = {"epoch": epoch + 1}
        row["train_loss"] = _train_epoch(
            model, objective, optimizer, train, config, generator, device
        )
        if val is not None:
            row |= _validate(model, objective, val, config.batch_size, device)
        row["lr"] = optimizer.param_groups[0]["lr"]  # the rate this epoch trained at
        value = _monitored(row, monitor)
        if _improves(value, state["best"], mode, config.min_delta):
            state |= {"best": value, "best_epoch": epoch + 1, "bad_epochs": 0}
            state["best_state"] = _cpu_state(model)
            save_checkpoint(checkpoints / "best.pth", {"model": state["best_state"]})
        else:
            state["bad_epochs"] += 1
        if scheduler is not None:
            scheduler.step(value)
        progress.epoch(row, _stopping(state, config, epoch + 1))
        state["history"].append(row)
        state["epoch"] = epoch + 1
        save_checkpoint(checkpoints / "last.pth", state | trainer.state())
    return FitResult(
        state=state["best_state"] if config.restore_best else _cpu_state(model),
        epochs_run=state["epoch"],
        best_epoch=state["best_epoch"],
        best_value=state["best"],
        history=state["history"],
        device=device.type,
        resumed_from=start,
    )


def _plateau(
    optimizer: torch.optim.Optimizer, config: EngineConfig, mode: str
) -> torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    if config.plateau_factor is None:
        return None
    # An absolute threshold of min_delta: the scheduler and early stopping agree on what
    # counts as an improvement.
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode=mode,
        factor=config.plateau_factor,
        patience=config.plateau_patience,
        threshold=config.min_delta,
        threshold_mode="abs",
        min_lr=config.plateau_min_lr,
    )


@dataclass
class _Trainer:
    """What `last.pth` holds besides the run's state: all that moves as it trains."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None
    generator: torch.Generator

    def state(self) -> dict[str, Any]:
        return {
            "model": _cpu_state(self.model),
            "optimizer": _cpu_tree(self.optimizer.state_dict()),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
        }

    def resume(self, path: Path, device: torch.device) -> dict[str, Any]:
        """Load the checkpoint at `path` into the trainer, if valid; the run's state it holds."""
        checkpoint = load_checkpoint(path, device)
        if checkpoint is None:
            return {}
        if checkpoint.get("format") != CHECKPOINT_FORMAT:
            log.warning("cannot resume, starting afresh: %s was written by an older engine", path)
            return {}
        self.model.load_state_dict(checkpoint.pop("model"))
        self.optimizer.load_state_dict(checkpoint.pop("optimizer"))
        self.generator.set_state(checkpoint.pop("generator"))
        scheduled = checkpoint.pop("scheduler")
        if self.scheduler is not None and scheduled is not None:
            self.scheduler.load_state_dict(scheduled)
        log.info("resuming from epoch %d", checkpoint["epoch"])
        return checkpoint


def _stopping(state: dict[str, Any], config: EngineConfig, epochs_done: int) -> bool:
    return state["bad_epochs"] >= config.patience and epochs_done >= config.min_epochs


def _monitored(row: Row, monitor: str) -> float:
    try:
        return row[monitor]
    except KeyError:
        raise ValueError(f"the monitored metric {monitor!r} is none of {sorted(row)}") from None


def _improves(value: float, best: float, mode: str, min_delta: float) -> bool:
    return value < best - min_delta if mode == "min" else value > best + min_delta


class _Progress:
    """One log line per run every PROGRESS_SECONDS of training (and at its first and last
    epoch): a long training says how far it is, a fleet's does not flood the console."""

    def __init__(self, label: str, epochs: int) -> None:
        self.label, self.epochs, self.last = label, epochs, -PROGRESS_SECONDS

    def epoch(self, row: Row, stopping: bool) -> None:
        now = time.monotonic()
        final = row["epoch"] == self.epochs or stopping
        if now - self.last < PROGRESS_SECONDS and row["epoch"] != 1 and not final:
            return
        self.last = now
        figures = ", ".join(f"{name} {value:.5g}" for name, value in row.items() if name != "epoch")
        log.info("%s: epoch %d/%d, %s", self.label, row["epoch"], self.epochs, figures)


def _train_epoch(
    model: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    data: Batch,
    config: EngineConfig,
    generator: torch.Generator,
    device: torch.device,
) -> float:
    model.train()
    total, rows = 0.0, _length(data)
    for idx in torch.randperm(rows, generator=generator).split(config.batch_size):
        batch = _rows(data, idx, device)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device):
            loss = objective.loss(model, batch)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        total += loss.item() * len(idx)
    return total / rows


def _validate(
    model: nn.Module, objective: Objective, data: Batch, batch_size: int, device: torch.device
) -> dict[str, float]:
    model.eval()
    batches = (
        _rows(data, slice(start, start + batch_size), device)
        for start in range(0, _length(data), batch_size)
    )
    with torch.no_grad(), _autocast(device):
        return objective.validate(model, batches)


def _autocast(device: torch.device) -> torch.autocast:
    # bf16 on CUDA; on the CPU full float32 keeps runs bitwise reproducible.
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _length(data: Batch) -> int:
    return len(data[0]) if isinstance(data, tuple) else len(data)


def _rows(data: Batch, index: torch.Tensor | slice, device: torch.device) -> Batch:
    if isinstance(data, tuple):
        return tuple(t[index].to(device, non_blocking=True) for t in data)
    return data[index].to(device, non_blocking=True)


def log_curves(histories: Mapping[str, Sequence[Mapping[str, float | None]]], live: Path) -> None:
    """Every run's history as DVCLive plots, one run per scope (a device, a task): `train_x`
    as `{scope}/train/x`, `val_x` as `{scope}/val/x`, any other metric m as `{scope}/m`.

    Each measure has a DVCLive directory of its own (losses in `live`, any other m in
    `live/m`), so that a plots entry of dvc.yaml reads one field in every file of its
    directory. A row's missing value (no validation data) is no point of its curve."""
    from dvclive import Live  # only the stage that logs pays for the import

    def open_live(folder: Path) -> Live:
        return stack.enter_context(
            Live(dir=str(folder), dvcyaml=False, save_dvc_exp=False, report=None)
        )

    with ExitStack() as stack:
        lives = {"loss": open_live(live)}  # always: the stage's output folder
        for scope, rows in histories.items():
            for row in rows:
                for key, value in row.items():
                    if key == "epoch" or value is None:
                        continue
                    split, measure = _curve(key)
                    if measure not in lives:
                        lives[measure] = open_live(live / measure)
                    lives[measure].step = int(row["epoch"])
                    lives[measure].log_metric(
                        "/".join(filter(None, (scope, split, measure))), value
                    )


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _cpu_tree(tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {k: _cpu_tree(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_cpu_tree(v) for v in tree)
    return copy.copy(tree)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> str:
    """Write `path` atomically, its sha256 recorded in the sidecar `path.json`; return it.

    The sidecar is replaced first and also names the sha256 it replaces, so a process killed
    between the two renames leaves a checkpoint that still matches its record.
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = _sidecar(path).get("sha256") if path.exists() else None
    _replace_bytes(
        _sidecar_path(path), json.dumps({"sha256": digest, "previous": previous}).encode()
    )
    _replace_bytes(path, data)
    return digest


def _replace_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _sidecar(path: Path) -> dict[str, Any]:
    try:
        return json.loads(_sidecar_path(path).read_text())
    except (OSError, ValueError):
        return {}


def load_verified(path: Path, sha256: str, device: torch.device | str = "cpu") -> Any:
    """Load `path` with weights_only=True after checking its bytes against `sha256`."""
    return _load_matching(path.read_bytes(), {sha256}, path, device)


def recorded_sha256(path: Path) -> str:
    """The sha256 that `save_checkpoint` recorded for `path`."""
    try:
        return _sidecar(path)["sha256"]
    except KeyError:
        raise IntegrityError(f"{path}: no sha256 recorded beside it") from None


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint at `path` if it matches its record, else None (and a warning)."""
    if not path.exists():
        return None
    record = _sidecar(path)
    accepted = {record.get("sha256"), record.get("previous")} - {None}
    try:
        return _load_matching(path.read_bytes(), accepted, path, device)
    except (OSError, IntegrityError) as exc:
        log.warning("cannot resume, starting afresh: %s", exc)
        return None


def _load_matching(data: bytes, accepted: set[str], path: Path, device: torch.device | str) -> Any:
    actual = hashlib.sha256(data).hexdigest()
    if actual not in accepted:
        raise IntegrityError(f"{path}: sha256 {actual[:12]}... does not match the recorded sha256")
    return torch.load(io.BytesIO(data), map_location=device, weights_only=True)


def _curve(key: str) -> tuple[str, str]:
    """A history key's split (train, val or none) and measure: val_r2 -> (val, r2)."""
    split, _, measure = key.partition("_")
    return (split, measure) if split in ("train", "val") and measure else ("", key)
