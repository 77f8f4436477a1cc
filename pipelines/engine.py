"""The training loop: Adam on mean squared error, early stopping, checkpoints that resume.

Read it top to bottom: `fit` seeds everything, picks the device, resumes from the last
checkpoint when there is a valid one, then runs epochs until `epochs` or early stopping.
After every epoch it writes `last.pth` (everything needed to continue exactly where it
stopped, the shuffling generator included) and, on improvement, `best.pth`. A run killed
at any moment and started again ends with the same weights as a run never interrupted.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipelines.errors import IntegrityError
from pipelines.params import TrainParams

log = logging.getLogger(__name__)
PROGRESS_SECONDS = 10.0


@dataclass
class FitResult:
    state: dict[str, torch.Tensor]  # best weights, on the CPU
    epochs_run: int
    best_epoch: int
    best_loss: float
    history: list[dict[str, float | None]] = field(default_factory=list)
    device: str = "cpu"
    resumed_from: int = 0


def select_device(preference: str, min_free_mb: int) -> torch.device:
    """`auto` takes CUDA when it is there with enough free memory, else the CPU."""
    if preference == "cpu" or not torch.cuda.is_available():
        if preference == "cuda":
            log.warning("train.device is cuda but CUDA is not available: training on the CPU")
        return torch.device("cpu")
    if preference == "auto":
        free_mb = torch.cuda.mem_get_info()[0] / 2**20
        if free_mb < min_free_mb:
            log.warning("CUDA has %.0f MB free < %d MB: training on the CPU", free_mb, min_free_mb)
            return torch.device("cpu")
    return torch.device("cuda")


def fit(
    make_model: Callable[[], nn.Module],
    train_x: torch.Tensor,
    val_x: torch.Tensor | None,
    p: TrainParams,
    checkpoints: Path,
    label: str = "",
) -> FitResult:
    """Train an autoencoder to reconstruct `model.target(x)` (a convae: x itself) from each
    batch x; fall back to the CPU on CUDA OOM."""
    device = select_device(p.device, p.min_gpu_mem_mb)
    try:
        return _fit_on(device, make_model, train_x, val_x, p, checkpoints, label)
    except torch.OutOfMemoryError:
        if device.type != "cuda":
            raise
        log.warning("CUDA out of memory: continuing on the CPU from the last checkpoint")
        torch.cuda.empty_cache()
        return _fit_on(torch.device("cpu"), make_model, train_x, val_x, p, checkpoints, label)


def _fit_on(
    device: torch.device,
    make_model: Callable[[], nn.Module],
    train_x: torch.Tensor,
    val_x: torch.Tensor | None,
    p: TrainParams,
    checkpoints: Path,
    label: str,
) -> FitResult:
    torch.manual_seed(p.seed)
    progress = _Progress(label or "training", p.epochs)
    model = make_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=p.lr)
    generator = torch.Generator().manual_seed(p.seed)
    state = {"epoch": 0, "best_loss": float("inf"), "best_epoch": 0, "bad_epochs": 0}
    state |= {"history": [], "best_state": _cpu_state(model)}
    resumed = load_checkpoint(checkpoints / "last.pth", device)
    if resumed is not None:
        model.load_state_dict(resumed.pop("model"))
        optimizer.load_state_dict(resumed.pop("optimizer"))
        generator.set_state(resumed.pop("generator"))
        state |= resumed
        log.info("resuming from epoch %d", state["epoch"])
    start = state["epoch"]
    for epoch in range(start, p.epochs):
        # Checked before training, so a run resumed after its last epoch trains no more.
        if state["bad_epochs"] >= p.patience and epoch >= p.min_epochs:
            break
        train_loss = _train_epoch(model, optimizer, train_x, p, generator, device)
        val_loss = _mean_loss(model, val_x, p.batch_size, device) if val_x is not None else None
        monitored = val_loss if val_loss is not None else train_loss
        if monitored < state["best_loss"] - p.min_delta:
            state |= {"best_loss": monitored, "best_epoch": epoch + 1, "bad_epochs": 0}
            state["best_state"] = _cpu_state(model)
            save_checkpoint(checkpoints / "best.pth", {"model": state["best_state"]})
        else:
            state["bad_epochs"] += 1
        row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss}
        stopping = state["bad_epochs"] >= p.patience and epoch + 1 >= p.min_epochs
        progress.epoch(row, stopping)
        state["history"].append(row)
        state["epoch"] = epoch + 1
        save_checkpoint(
            checkpoints / "last.pth",
            state
            | {
                "model": _cpu_state(model),
                "optimizer": _cpu_tree(optimizer.state_dict()),
                "generator": generator.get_state(),
            },
        )
    return FitResult(
        state=state["best_state"],
        epochs_run=state["epoch"],
        best_epoch=state["best_epoch"],
        best_loss=state["best_loss"],
        history=state["history"],
        device=device.type,
        resumed_from=start,
    )


class _Progress:
    """One log line per device every PROGRESS_SECONDS of training (and at its first and last
    epoch): a long training says how far it is, a fleet's does not flood the console."""

    def __init__(self, label: str, epochs: int) -> None:
        self.label, self.epochs, self.last = label, epochs, -PROGRESS_SECONDS

    def epoch(self, row: dict[str, Any], stopping: bool) -> None:
        now = time.monotonic()
        final = row["epoch"] == self.epochs or stopping
        if now - self.last < PROGRESS_SECONDS and row["epoch"] != 1 and not final:
            return
        self.last = now
        val = "" if row["val_loss"] is None else f", validation loss {row['val_loss']:.5g}"
        log.info(
            "%s: epoch %d/%d, training loss %.5g%s",
            *(self.label, row["epoch"], self.epochs, row["train_loss"], val),
        )


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    p: TrainParams,
    generator: torch.Generator,
    device: torch.device,
) -> float:
    model.train()
    total = 0.0
    for idx in torch.randperm(len(x), generator=generator).split(p.batch_size):
        batch = x[idx].to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        # bf16 autocast on CUDA; on the CPU full float32 keeps runs bitwise reproducible.
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            output = model(batch)
        loss = nn.functional.mse_loss(output.float(), model.target(batch))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
        optimizer.step()
        total += loss.item() * len(idx)
    return total / len(x)


def _mean_loss(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for batch in x.split(batch_size):
            batch = batch.to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                output = model(batch)
            target = model.target(batch)
            total += nn.functional.mse_loss(output.float(), target, reduction="sum").item()
    return total / target[0].numel() / len(x)


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
