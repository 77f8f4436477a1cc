"""The training engine every network family shares: its settings are an `EngineConfig`, its
objective (the loss and the validation metrics) the family's `Objective`.

Read it top to bottom: `fit` seeds everything, picks the device, resumes from the last
checkpoint when there is a valid one, then runs epochs until `epochs` or early stopping.
An epoch is the optimizer on the objective's loss, gradients clipped to `grad_clip`, then the
objective's metrics on the validation data. Every epoch's metrics and learning rate (the rate
it trained at) make one row of the history; `log_curves` writes the rows of a stage's runs as
DVCLive plots.

The settings, each off (or today's behaviour) by default:

- `optimizer`: `adam` (the weight decay coupled as L2, as seed 003's trainer has it) or
  `adamw` (decoupled weight decay); both with `betas` and `eps`.
- A schedule of the learning rate, stepped once per epoch, one of two: `plateau_factor`,
  torch's `ReduceLROnPlateau` on the monitored metric; or `cosine_t0`, torch's
  `CosineAnnealingWarmRestarts` (a first period of `cosine_t0` epochs, each next one
  `cosine_t_mult` times as long, down to `eta_min`), optionally after `warmup_epochs` of a
  linear warm-up from lr x `warmup_start_factor` (torch's `LinearLR`, then `SequentialLR`;
  a warm-up without the cosine schedule is refused).
- `ema_decay`: an exponential moving average of the weights *and* of the buffers (batch
  norm's running statistics), updated after every optimizer step (torch's `AveragedModel`).
  Validation, `best.pth` and the returned weights are then the average's.
- `bf16`: autocast to bfloat16, `auto` on CUDA only, `on` on the CPU too, `off` never. No
  gradient scaler: bfloat16 has float32's exponent range.
- `channels_last`: the model and every 4-D tensor of a batch in that memory format.
- `accumulate`: an optimizer step every `accumulate` batches (and one for an epoch's
  remainder), each batch's loss divided by `accumulate`; `train_loss` stays the mean loss
  per row.

Early stopping: the monitored metric (`monitor`, in its direction `mode`) improves when it
beats its best by more than `min_delta`. An epoch is bad when it does not improve, and
`patience` bad epochs in a row (after `min_epochs`) stop the run. A `guard` metric, with its
own `guard_mode` and `guard_min_delta`, keeps a run alive that the monitor alone would stop:
an epoch where the guard beats its own best by more than `guard_min_delta` is not bad (the
bad epochs are counted from 0 again; one info line says so where the monitor did not
improve). The best epoch (`best.pth`,
`restore_best`) is the one with the best monitored value, where a tie goes to the guard: an
epoch whose monitored value is no worse than the best by more than `min_delta` and whose guard
improved becomes the best (its value the best value). The plateau scheduler looks at the
monitor only. Without validation data the training loss is monitored and the guard ignored.

After every epoch it writes `last.pth` (everything needed to continue exactly where it
stopped: optimizer, scheduler, the average, the guard's best, the shuffling generator,
torch's random state) and, on a new best epoch, `best.pth`. A run killed at any moment and
started again ends with the same weights as a run never interrupted. Data is a tensor, or a
tuple of tensors indexed together (inputs and targets): the engine batches rows, the
objective knows what they are.
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
from torch.optim import lr_scheduler
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from pipelines.errors import IntegrityError

log = logging.getLogger(__name__)
PROGRESS_SECONDS = 10.0
# 2: a named monitored metric and the scheduler's state
# 3: the weights' moving average, the cosine schedule, the guard metric's best
CHECKPOINT_FORMAT = 4
# A declared plot's file when no run logged its measure: DVC titles a plot with its path.
NO_CURVES = "no-curves-in-this-run.tsv"

Batch = torch.Tensor | tuple[torch.Tensor, ...]  # rows of the data, on the training device
Row = dict[str, float]  # one epoch of the history: epoch, train_loss, the metrics, lr
Scheduler = lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau


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
    weight_decay: float = 0.0  # adam: as L2 on the gradient; adamw: decoupled
    optimizer: Literal["adam", "adamw"] = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float | None = None  # the gradients' largest total norm; None: not clipped
    accumulate: int = 1  # batches per optimizer step
    device: Literal["auto", "cpu", "cuda"] = "auto"
    min_gpu_mem_mb: int = 512  # `auto` trains on the CPU when CUDA has less free
    bf16: Literal["auto", "on", "off"] = "auto"  # autocast; auto: on CUDA only
    channels_last: bool = False
    # Early stopping: after `patience` epochs in which `monitor` did not improve by more than
    # `min_delta` in its direction. Without validation data the training loss is monitored.
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True  # return the best epoch's weights, else the last epoch's
    # A second validation metric: an epoch where it improves by more than `guard_min_delta`
    # is no bad epoch, and wins a tie of the monitor (see the module's docstring)
    guard: str | None = None
    guard_mode: Literal["min", "max"] = "min"
    guard_min_delta: float = 0.0
    # ReduceLROnPlateau on the monitored metric: lr x factor after `plateau_patience` epochs
    # without improvement, never below `plateau_min_lr`; None: a constant learning rate
    plateau_factor: float | None = None
    plateau_patience: int = 5
    plateau_min_lr: float = 0.0
    # CosineAnnealingWarmRestarts: a first period of `cosine_t0` epochs from lr down to
    # `eta_min`, each next one `cosine_t_mult` times as long; None: no cosine schedule. It
    # begins after `warmup_epochs` of a linear rise from lr x `warmup_start_factor`.
    cosine_t0: int | None = None
    cosine_t_mult: int = 1
    eta_min: float = 0.0
    warmup_epochs: int = 0
    warmup_start_factor: float = 0.1
    ema_decay: float | None = None  # the weights' moving average; None: none

    def __post_init__(self) -> None:
        for name, valid, wanted in self._checks():
            if not valid:
                raise ValueError(f"{name} must be {wanted}, not {getattr(self, name)!r}")
        if self.cosine_t0 is not None and self.plateau_factor is not None:
            raise ValueError("cosine_t0 and plateau_factor exclude each other: set one or none")

    def _checks(self) -> Iterator[tuple[str, bool, str]]:
        """(field, whether its value is valid, what it must be)."""
        yield "mode", self.mode in ("min", "max"), "min or max"
        yield "guard_mode", self.guard_mode in ("min", "max"), "min or max"
        yield "optimizer", self.optimizer in ("adam", "adamw"), "adam or adamw"
        yield "bf16", self.bf16 in ("auto", "on", "off"), "auto, on or off"
        betas = len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas)
        yield "betas", betas, "two numbers in [0, 1)"
        yield "eps", self.eps > 0, "> 0"
        yield "accumulate", self.accumulate >= 1, ">= 1"
        yield "guard_min_delta", self.guard_min_delta >= 0, ">= 0"
        factor = self.plateau_factor
        yield "plateau_factor", factor is None or 0 < factor < 1, "in (0, 1)"
        yield "cosine_t0", self.cosine_t0 is None or self.cosine_t0 >= 1, ">= 1 or None"
        yield "cosine_t_mult", self.cosine_t_mult >= 1, ">= 1"
        yield "eta_min", self.eta_min >= 0, ">= 0"
        yield "warmup_epochs", self.warmup_epochs >= 0, ">= 0"
        warmup = self.warmup_epochs == 0 or self.cosine_t0 is not None
        yield "warmup_epochs", warmup, "0 without cosine_t0 (it leads into the cosine schedule)"
        yield "warmup_start_factor", 0 < self.warmup_start_factor <= 1, "in (0, 1]"
        decay = self.ema_decay
        yield "ema_decay", decay is None or 0 < decay < 1, "in (0, 1) or None"


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


@dataclass(frozen=True)
class _Watched:
    """What decides early stopping and the best epoch: the monitor and the guard, if any."""

    monitor: str
    mode: str
    min_delta: float
    guard: str | None
    guard_mode: str
    guard_min_delta: float

    @classmethod
    def of(cls, config: EngineConfig, validating: bool) -> _Watched:
        if not validating:  # only the training loss to go by
            return cls("train_loss", "min", config.min_delta, None, "min", 0.0)
        return cls(
            config.monitor,
            config.mode,
            config.min_delta,
            config.guard,
            config.guard_mode,
            config.guard_min_delta,
        )


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
    watched = _Watched.of(config, validating=val is not None)
    trainer = _Trainer.build(make_model, config, device, watched.mode)
    state = {"format": CHECKPOINT_FORMAT, "epoch": 0, "best_epoch": 0, "bad_epochs": 0}
    state |= {"best": _worst(watched.mode), "guard_best": _worst(watched.guard_mode)}
    state |= {"history": [], "best_state": trainer.weights()}
    state |= trainer.resume(checkpoints / "last.pth", device)
    start = state["epoch"]
    for epoch in range(start, config.epochs):
        # Checked before training, so a run resumed after its last epoch trains no more.
        if _stopping(state, config, epoch):
            break
        row = {"epoch": epoch + 1}
        row["train_loss"] = trainer.train_epoch(objective, train)
        if val is not None:
            row |= trainer.validate(objective, val)
        row["lr"] = trainer.optimizer.param_groups[0]["lr"]  # the rate this epoch trained at
        if _judge(state, row, watched):
            state["best_state"] = trainer.weights()
            save_checkpoint(checkpoints / "best.pth", {"model": state["best_state"]})
        trainer.schedule(_monitored(row, watched.monitor))
        progress.epoch(row, _stopping(state, config, epoch + 1))
        state["history"].append(row)
        state["epoch"] = epoch + 1
        save_checkpoint(checkpoints / "last.pth", state | trainer.state())
    return FitResult(
        state=state["best_state"] if config.restore_best else trainer.weights(),
        epochs_run=state["epoch"],
        best_epoch=state["best_epoch"],
        best_value=state["best"],
        history=state["history"],
        device=device.type,
        resumed_from=start,
    )


def _worst(mode: str) -> float:
    return math.inf if mode == "min" else -math.inf


def _judge(state: dict[str, Any], row: Row, watched: _Watched) -> bool:
    """Count the epoch of `row` as bad or not in `state`; whether it is the new best epoch."""
    w = watched
    value = _monitored(row, w.monitor)
    improved = _improves(value, state["best"], w.mode, w.min_delta)
    guarded = False
    if w.guard is not None:
        guard = _metric(row, w.guard, "guard metric")
        guarded = _improves(guard, state["guard_best"], w.guard_mode, w.guard_min_delta)
        if guarded:
            state["guard_best"] = guard
            if not improved:
                log.info(
                    "epoch %d: %s improved to %.5g, patience reset", row["epoch"], w.guard, guard
                )
    # A tie (no worse than the best by more than min_delta) goes to the guard: at a saturated
    # monitor (a hit rate of 100) the guard tells the better weights.
    tie = guarded and not _improves(state["best"], value, w.mode, w.min_delta)
    state["bad_epochs"] = 0 if improved or guarded else state["bad_epochs"] + 1
    if improved or tie:
        state |= {"best": value, "best_epoch": row["epoch"]}
    return improved or tie


def _optimizer(model: nn.Module, config: EngineConfig) -> torch.optim.Optimizer:
    kind = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return kind(
        model.parameters(),
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
    )


def _scheduler(
    optimizer: torch.optim.Optimizer, config: EngineConfig, mode: str
) -> Scheduler | None:
    if config.plateau_factor is not None:
        return _plateau(optimizer, config, mode)
    if config.cosine_t0 is None:
        return None
    cosine = lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=config.cosine_t0, T_mult=config.cosine_t_mult, eta_min=config.eta_min
    )
    if config.warmup_epochs == 0:
        return cosine
    warmup = lr_scheduler.LinearLR(
        optimizer, start_factor=config.warmup_start_factor, total_iters=config.warmup_epochs
    )
    # At the milestone SequentialLR starts the cosine schedule at its epoch 0, i.e. at lr.
    return lr_scheduler.SequentialLR(optimizer, [warmup, cosine], [config.warmup_epochs])


def _plateau(
    optimizer: torch.optim.Optimizer, config: EngineConfig, mode: str
) -> lr_scheduler.ReduceLROnPlateau:
    # An absolute threshold of min_delta: the scheduler and early stopping agree on what
    # counts as an improvement.
    return lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode=mode,
        factor=config.plateau_factor,
        patience=config.plateau_patience,
        threshold=config.min_delta,
        threshold_mode="abs",
        min_lr=config.plateau_min_lr,
    )


def _ema(model: nn.Module, decay: float | None) -> AveragedModel | None:
    if decay is None:
        return None
    # use_buffers: batch norm's running statistics are averaged too, so that they fit the
    # averaged weights rather than the last ones.
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


@dataclass
class _Trainer:
    """All that moves as a run trains; `last.pth` holds it besides the run's record."""

    config: EngineConfig
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler | None
    generator: torch.Generator
    ema: AveragedModel | None

    @classmethod
    def build(
        cls,
        make_model: Callable[[], nn.Module],
        config: EngineConfig,
        device: torch.device,
        mode: str,
    ) -> _Trainer:
        model = make_model().to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = _optimizer(model, config)
        return cls(
            config,
            device,
            model,
            optimizer,
            _scheduler(optimizer, config, mode),
            torch.Generator().manual_seed(config.seed),
            _ema(model, config.ema_decay),  # a copy of the model, in its memory format
        )

    @property
    def evaluated(self) -> nn.Module:
        """The network validated and kept: the moving average when there is one."""
        return self.model if self.ema is None else self.ema.module

    def weights(self) -> dict[str, torch.Tensor]:
        return _cpu_state(self.evaluated)

    def train_epoch(self, objective: Objective, data: Batch) -> float:
        """One epoch of optimizer steps; the mean loss per row."""
        c = self.config
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total, rows = 0.0, _length(data)
        batches = torch.randperm(rows, generator=self.generator).split(c.batch_size)
        for number, idx in enumerate(batches, start=1):
            with _autocast(self.device, c.bf16):
                loss = objective.loss(self.model, _rows(data, idx, self.device, c.channels_last))
            # The gradients of `accumulate` batches add up to their mean's, as one large batch.
            (loss / c.accumulate).backward()
            total += loss.item() * len(idx)
            if number % c.accumulate == 0 or number == len(batches):
                self._step()
        return total / rows

    def _step(self) -> None:
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def validate(self, objective: Objective, data: Batch) -> dict[str, float]:
        model, size = self.evaluated, self.config.batch_size
        model.eval()
        batches = (
            _rows(data, slice(start, start + size), self.device, self.config.channels_last)
            for start in range(0, _length(data), size)
        )
        with torch.no_grad(), _autocast(self.device, self.config.bf16):
            return objective.validate(model, batches)

    def schedule(self, monitored: float) -> None:
        """The learning rate of the next epoch."""
        if isinstance(self.scheduler, lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(monitored)
        elif self.scheduler is not None:
            self.scheduler.step()

    def state(self) -> dict[str, Any]:
        return {
            "model": _cpu_state(self.model),
            "optimizer": _cpu_tree(self.optimizer.state_dict()),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "ema": None if self.ema is None else _cpu_state(self.ema),  # with n_averaged
            "generator": self.generator.get_state(),
            "rng": torch.get_rng_state(),  # an objective's random augmentation draws from it
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
        torch.set_rng_state(checkpoint.pop("rng"))
        scheduled, averaged = checkpoint.pop("scheduler"), checkpoint.pop("ema")
        if self.scheduler is not None and scheduled is not None:
            self.scheduler.load_state_dict(scheduled)
        if self.ema is not None and averaged is not None:
            self.ema.load_state_dict(averaged)
        log.info("resuming from epoch %d", checkpoint["epoch"])
        return checkpoint


def _stopping(state: dict[str, Any], config: EngineConfig, epochs_done: int) -> bool:
    return state["bad_epochs"] >= config.patience and epochs_done >= config.min_epochs


def _monitored(row: Row, monitor: str) -> float:
    return _metric(row, monitor, "monitored metric")


def _metric(row: Row, name: str, role: str) -> float:
    try:
        return row[name]
    except KeyError:
        raise ValueError(f"the {role} {name!r} is none of {sorted(row)}") from None


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


def _autocast(device: torch.device, bf16: str) -> torch.autocast:
    # bfloat16 needs no gradient scaler. Off on the CPU unless asked for: float32 there keeps
    # runs bitwise reproducible.
    enabled = bf16 == "on" or (bf16 == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def _length(data: Batch) -> int:
    return len(data[0]) if isinstance(data, tuple) else len(data)


def _rows(
    data: Batch, index: torch.Tensor | slice, device: torch.device, channels_last: bool
) -> Batch:
    if isinstance(data, tuple):
        return tuple(_moved(t[index], device, channels_last) for t in data)
    return _moved(data[index], device, channels_last)


def _moved(tensor: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    if channels_last and tensor.dim() == 4:  # images, (N, C, H, W)
        return tensor.to(device, non_blocking=True, memory_format=torch.channels_last)
    return tensor.to(device, non_blocking=True)


def log_curves(
    histories: Mapping[str, Sequence[Mapping[str, float | None]]],
    live: Path,
    plotted: Sequence[str] = (),
) -> None:
    """Every run's history as DVCLive plots, one run per scope (a device, a task): `train_x`
    as `{scope}/train/x`, `val_x` as `{scope}/val/x`, any other metric m as `{scope}/m`.

    Each measure has a DVCLive directory of its own (losses in `live`, any other m in
    `live/m`), so that a plots entry of dvc.yaml reads one field in every file of its
    directory. A row's missing value (no validation data) is no point of its curve.
    `plotted`: the measures dvc.yaml declares a plot of; one no run logged (a type without a
    training loop logs none) gets a curve without points, since DVC fails on a declared
    plot whose folder is not there."""
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
    for measure in plotted:
        metrics = (live if measure == "loss" else live / measure) / "plots" / "metrics"
        if not metrics.is_dir():
            metrics.mkdir(parents=True)
            (metrics / NO_CURVES).write_text(f"step\t{measure}\n")


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
