"""The tabular family's stages, one job per task: its table -> a regressor (train), the
regressor's figures on the task's test rows (evaluate), a registered and gated version
(deploy). Found through its card (pipelines/tabular/card.py); the contract is
pipelines/families.py.

    models/{task}/    model.pth (the trained state: the model's and the scale's tensors),
                      split.json (each row's part), history.json (an mlp's epochs), summary
    eval/tasks/{task}/  predictions.csv (the test rows: row, actual, predicted), summary
    eval/metrics.json   the figures over the tasks, a few columns whatever their number
    eval/tasks.json     each task's figures, committed by git (`fleet compare`, `dvc plots`)

Each task's file is read with the family's checks (data.py): a bad file fails that task,
with a line naming the file, row and column, and the other tasks go on.
"""

from __future__ import annotations

import csv
import logging
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines import deploying, engine, fleet, parents
from pipelines import split as row_split
from pipelines.errors import DeviceSkipped
from pipelines.params import as_dict
from pipelines.tabular import card, data, family, metrics, models, split, training
from pipelines.tabular.errors import TaskError
from pipelines.tabular.params import TabularParams, TaskTraining
from registry.api import Registry
from registry.errors import RegistryError
from registry.naming import model_name
from registry.store import locate, sha256_file

log = logging.getLogger("stage")
MODEL, SPLIT, HISTORY, PREDICTIONS = "model.pth", "split.json", "history.json", "predictions.csv"
TASKS = Path(card.FIGURES).name  # the evaluate stage's per-task figures, in its folder
PARTS = ("train", "val", "test")
CODE = fleet.code_digest(
    data, split, row_split, models, metrics, training, engine, parents, sys.modules[__name__]
)
SCRATCH = parents.Start("scratch")


@dataclass(frozen=True)
class TaskInput:
    path: Path  # the task's file
    target: str
    settings: TaskTraining
    model: Path | None = None  # the trained task (evaluate, deploy)
    evaluation: Path | None = None  # its figures (deploy)
    store: Path | None = None
    experiment: str | None = None
    auto_promote: bool = True
    start: parents.Start | None = SCRATCH  # None: not trained in this run


def found_tasks(root: Path) -> dict[str, Path]:
    """The tasks under `root`; what is not a task's file is named in a warning."""
    tasks, skipped = data.find_tasks(root)
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    return tasks


def _jobs(
    tasks: Mapping[str, Path],
    settings: list[Any],
    p: TabularParams,
    upstream: Mapping[str, str] | None = None,
    **inputs: Any,
) -> list[fleet.Job]:
    """A job per task, fingerprinted by its file, `settings`, the family's code and the
    fingerprint of what the stage before built for it (`upstream`)."""
    return [
        fleet.Job(
            task,
            fleet.fingerprint(settings, CODE, sha256_file(path), (upstream or {}).get(task)),
            TaskInput(path, p.data.target, p.train, **{k: v(task) for k, v in inputs.items()}),
        )
        for task, path in sorted(tasks.items())
    ]


class Train:
    """A regressor per task; an mlp's curves as DVCLive plots in `live`."""

    ARGUMENTS = ("root", "out")
    OPTIONS: Mapping[str, str] = {"live": "logs/tabular/train"}

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = paths

    def work(self, p: TabularParams) -> dict[str, fleet.Outcome]:
        # `init_from` as written is in the settings, not the version it resolves to: once a
        # fine-tuning is promoted, a rerun over the same rows is not fine-tuned again
        settings = [as_dict(p.train), p.data.target, torch.__version__]
        tasks = found_tasks(self.paths["root"])
        names = {t: model_name(card.FAMILY, t, p.train.model) for t in tasks}
        where = parents.plan(p.train.init_from, names, card.FAMILY, card.SCOPE, locate)
        jobs = _jobs(tasks, settings, p, start=where.starts.get, store=lambda _: where.store)
        out = self.paths["out"]
        outcomes = fleet.run_stage(out, jobs, train_task, 1, "train")
        done = fleet.complete_devices(out)
        engine.log_curves({t: fleet.read_json(out / t / HISTORY) for t in done}, self.paths["live"])
        return outcomes


def train_task(job: fleet.Job, work: Path) -> dict[str, Any]:
    inp: TaskInput = job.inputs
    if inp.start is None:
        init_from = inp.settings.init_from
        raise DeviceSkipped(job.device, f"train.init_from ({init_from}) starts no training of it")
    parent = _parent(job.device, inp.store, inp.start.parent) if inp.start.parent else None
    if inp.start.note:
        log.info("%s: %s", job.device, inp.start.note)
    # a fine-tuning reads the columns its parent reads, in its order
    task = data.read_task(inp.path, inp.target, parent and parent.features)
    trained = training.fit_task(task, inp.settings, work / "checkpoints", parent and parent.model)
    torch.save(trained.state, work / MODEL)
    fleet.write_json(work / SPLIT, {part: getattr(trained.split, part).tolist() for part in PARTS})
    fleet.write_json(work / HISTORY, trained.history or [])
    return {
        "architecture": trained.architecture,
        "features": list(task.features),
        "target": inp.target,
        "rows": len(task.y),
        "epochs_run": trained.epochs_run,
        "resumed_from": trained.resumed_from,
        "start": inp.start.as_dict(),
    }


@dataclass(frozen=True)
class Parent:
    """What a fine-tuning takes from its parent version: the model and what it reads."""

    model: training.TrainedTask
    features: list[str]


def _parent(task: str, store: Path | None, ref: str) -> Parent:
    try:
        version = Registry(store).version(ref)
        return Parent(family.trained(version), list(version.meta["inference"]["features"]))
    except (RegistryError, ValueError, KeyError) as exc:
        raise TaskError(task, f"cannot start from {ref}: {exc}") from exc


def load_trained(model: Path) -> tuple[training.TrainedTask, dict[str, Any]]:
    """A trained task as the train stage wrote it (plain tensors only), and its summary."""
    summary = fleet.read_json(model / "summary.json")
    state = torch.load(model / MODEL, map_location="cpu", weights_only=True)
    parts = {k: np.asarray(v, dtype=np.int64) for k, v in fleet.read_json(model / SPLIT).items()}
    trained = training.TrainedTask(
        summary["architecture"], state, row_split.Split(**parts), None, 0
    )
    return trained, summary


class Evaluate:
    """Each task's figures on its test rows, beside the training mean's (metrics.py)."""

    ARGUMENTS = ("root", "models", "out")
    OPTIONS: Mapping[str, str] = {}

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = paths

    def work(self, p: TabularParams) -> dict[str, fleet.Outcome]:
        trained = fleet.complete_devices(self.paths["models"])
        tasks = {t: f for t, f in found_tasks(self.paths["root"]).items() if t in trained}
        jobs = _jobs(tasks, [], p, trained, model=lambda t: self.paths["models"] / t)
        out = self.paths["out"]
        outcomes = fleet.run_stage(out / "tasks", jobs, evaluate_task, 1, "evaluate")
        figures = {t: o.summary for t, o in outcomes.items() if o.status in ("built", "unchanged")}
        fleet.write_json(out / "metrics.json", fleet_figures(figures))
        # per task, in git with every experiment: `fleet compare`, `dvc plots diff`
        fleet.write_json(out / TASKS, [{"task": t} | f for t, f in sorted(figures.items())])
        return outcomes


def evaluate_task(job: fleet.Job, work: Path) -> dict[str, Any]:
    inp: TaskInput = job.inputs
    trained, summary = load_trained(inp.model)
    task = data.read_task(inp.path, inp.target, summary["features"])
    test = trained.split.test
    predicted = training.predict_task(trained, task.X[test])
    with (work / PREDICTIONS).open("w", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(["row", "actual", "predicted"])
        rows.writerows(zip(test.tolist(), task.y[test].tolist(), predicted.tolist(), strict=True))
    return training.evaluate(trained, task).as_dict()


def fleet_figures(figures: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A few figures over the tasks (dvc exp show's columns do not grow with them): the
    worst and mean R², and the worst RMSE as a fraction of the training mean's."""
    r2 = [f["r2"] for f in figures.values() if f.get("r2") is not None]
    skill = [f["rmse"] / f["baseline_rmse"] for f in figures.values() if f.get("baseline_rmse")]
    return {
        "tasks": len(figures),
        "r2_min": min(r2, default=None),
        "r2_mean": float(np.mean(r2)) if r2 else None,
        "rmse_vs_mean_max": max(skill, default=None),
    }


class Deploy(deploying.Reporting):
    """Register each task's candidate with its validation rows, let the store's gate judge
    it, and (in a plain run) make OUT/models hold the family's production bundles."""

    ARGUMENTS = ("models", "evaluation", "root", "out")
    OPTIONS: Mapping[str, str] = {}

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = paths
        self.production: dict[str, dict[str, Any]] = {}

    def work(self, p: TabularParams) -> dict[str, fleet.Outcome]:
        a, registry, exp = self.paths, Registry(), deploying.experiment()
        registry.ensure()  # the project's own is made by the first run; a named one must exist
        evaluated = fleet.complete_devices(a["evaluation"] / "tasks")
        tasks = {t: f for t, f in found_tasks(a["root"]).items() if t in evaluated}
        store = registry.store.root
        # the experiment's name is in the fingerprint: each one judges its candidates afresh
        settings = [as_dict(p.deploy), str(store), exp]
        where = {
            "model": lambda t: a["models"] / t,
            "evaluation": lambda t: a["evaluation"] / "tasks" / t,
            "store": lambda _: store,
            "experiment": lambda _: exp,
            "auto_promote": lambda _: p.deploy.auto_promote,
        }
        jobs = _jobs(tasks, settings, p, evaluated, **where)
        self.keep_backups = p.deploy.keep_backups
        # one writer: every registration and promotion from this process
        built = fleet.run_stage(a["out"] / "candidates", jobs, deploy_task, 1, "deploy")
        return self.deploy(a["out"], built, card.FAMILY)


def deploy_task(job: fleet.Job, work: Path) -> dict[str, Any]:
    inp: TaskInput = job.inputs
    trained, summary = load_trained(inp.model)
    registry = Registry(inp.store)
    meta = registry.register(
        registration_folder(inp, trained, summary, work / "registration"),
        card.FAMILY,
        job.device,
        trained.architecture["type"],
        metrics=fleet.read_json(inp.evaluation / "summary.json"),
        params={"train": as_dict(inp.settings), "data": {"target": inp.target}},
        extra={"inference": {k: summary[k] for k in family.INFERENCE}},
        data_fingerprint=sha256_file(inp.path),
        parent_version=deploying.parent_version(inp.model),
    )
    shutil.rmtree(work / "registration")
    name, version = meta["name"], meta["version"]
    decision = deploying.decide(registry, name, version, inp.experiment, inp.auto_promote)
    return {"name": name, "version": version, "new": not meta.get("existing")} | {
        "decision": decision
    }


def registration_folder(
    inp: TaskInput, trained: training.TrainedTask, summary: dict[str, Any], folder: Path
) -> Path:
    """The files a version holds (family.ARTIFACTS): the weights, and the validation rows
    (the test rows when there are none) on which the gate compares it with any holder."""
    folder.mkdir()
    shutil.copyfile(inp.model / MODEL, folder / family.ARTIFACTS["model"])
    task = data.read_task(inp.path, inp.target, summary["features"])
    rows = trained.split.val if len(trained.split.val) else trained.split.test
    np.save(folder / family.ARTIFACTS["eval_x"], task.X[rows])
    np.save(folder / family.ARTIFACTS["eval_y"], task.y[rows])
    return folder
