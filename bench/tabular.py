"""Benchmark: the tabular family's mlp beside ridge, gradient boosting and the mean predictor.

Run by hand from the repository root (not in CI, not in tests):

    .venv/bin/python -m bench.tabular [--subjects 400] [--tasks diabetes Q1 ...]
                                      [--epochs N] [--json OUT]

Writes scikit-learn's diabetes study (442 patients, 10 features) and the synthetic tasks
Q1..Q5 (`--subjects` rows each) into a temp folder and fits every model type on each task
with the default `TaskTraining`, on its one held-out split (the settings' val and test
fractions and seed); `--epochs` caps the mlp's epochs (for a quick run). Reported per task,
on the test rows: R², RMSE and MAE of

    mlp    ours: the network, trained by the shared engine with early stopping
    ridge  the reference: a linear model in closed form
    gbr    scikit-learn's gradient boosting
    mean   the training rows' mean, whatever the features: the skill floor

with the seconds each fit took, and the mlp's R² minus ridge's. The targets: on diabetes
the mlp's R² within 0.03 of ridge's or better; on every synthetic task the mlp's R² >= 0.8.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipelines.tabular import diabetes, synth
from pipelines.tabular.data import Task, read_task
from pipelines.tabular.models import MODEL_TYPES
from pipelines.tabular.training import TaskTraining, evaluate, fit_task

TASKS = (diabetes.TASK, *synth.TASKS)
MEAN = "mean"
DIABETES_MARGIN = 0.03  # the mlp's R² may be this far below ridge's on diabetes
SYNTH_R2 = 0.8  # the mlp's least R² on a synthetic task


def write_tasks(root: Path, subjects: int) -> dict[str, Path]:
    return {diabetes.TASK: diabetes.write_diabetes(root)} | synth.generate(root, subjects)


def measure(task: Task, settings: TaskTraining, work: Path) -> dict[str, dict[str, Any]]:
    """Test-row figures of each model type, and of the training mean (the same split)."""
    figures = {}
    for kind in MODEL_TYPES:
        started = time.perf_counter()
        trained = fit_task(task, dataclasses.replace(settings, model=kind), work / kind)
        seconds = time.perf_counter() - started
        m = evaluate(trained, task)
        figures[kind] = {"r2": m.r2, "rmse": m.rmse, "mae": m.mae, "seconds": seconds}
        figures[kind]["epochs"] = trained.epochs_run
    figures[MEAN] = {"r2": m.baseline_r2, "rmse": m.baseline_rmse, "mae": m.baseline_mae}
    return figures


def targets(results: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[str, float, bool]]:
    """(what, figure, met) for each task measured."""
    out = []
    for name, figures in results.items():
        mlp = figures["mlp"]["r2"]
        if name == diabetes.TASK:
            gap = mlp - figures["ridge"]["r2"]
            what = f"{name}: mlp R2 - ridge R2 >= -{DIABETES_MARGIN}"
            out.append((what, gap, gap >= -DIABETES_MARGIN))
        else:
            out.append((f"{name}: mlp R2 >= {SYNTH_R2}", mlp, mlp >= SYNTH_R2))
    return out


def _cell(value: float | None, width: int, places: int) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:{width}.{places}f}"


def report(results: dict[str, dict[str, dict[str, Any]]], rows: dict[str, int]) -> None:
    print(f"{'task':9} {'rows':>5} {'model':6} {'R2':>7} {'RMSE':>9} {'MAE':>9} {'s':>6} epochs")
    for name, figures in results.items():
        for i, (kind, f) in enumerate(figures.items()):
            lead = f"{name:9} {rows[name]:5}" if i == 0 else " " * 15
            tail = f" {f['seconds']:6.2f} {f['epochs']:6}" if "seconds" in f else ""
            print(
                f"{lead} {kind:6} {_cell(f['r2'], 7, 3)} {_cell(f['rmse'], 9, 3)} "
                f"{_cell(f['mae'], 9, 3)}{tail}"
            )
        print(f"{'':15} mlp - ridge R2: {figures['mlp']['r2'] - figures['ridge']['r2']:+.3f}")
    for what, figure, met in targets(results):
        print(f"target {what}: {figure:.3f}, {'met' if met else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=synth.DEFAULT_SUBJECTS)
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--epochs", type=int, help="cap the mlp's epochs (default: settings')")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    settings = TaskTraining()
    if args.epochs is not None:
        settings = dataclasses.replace(settings, epochs=args.epochs)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-tabular-") as temp:
        work = Path(temp)
        paths = write_tasks(work / "data", args.subjects)
        tasks = {name: read_task(paths[name], target="y") for name in args.tasks}
        results = {
            name: measure(task, settings, work / "checkpoints" / name)
            for name, task in tasks.items()
        }
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    report(results, {name: len(task.y) for name, task in tasks.items()})
    if args.json:
        payload = {"settings": dataclasses.asdict(settings), "tasks": results}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
