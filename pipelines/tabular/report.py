"""The tabular family's report: one HTML page over its tasks, opened with no network.

    python -m stages.report --family tabular MODELS EVALUATION DEPLOY_REPORT OUT_HTML

A summary of the tasks (model, R², RMSE, MAE, MAPE beside the training mean's RMSE and R²,
what the deploy stage did, the version in production), then a section per task: predicted
against actual on its test rows with the y = x line, the residuals against the prediction
with the zero line, an mlp's loss and learning rate per epoch, and its production history
from the registry's events. `gather` reads the pipeline's outputs and the registry (it
changes nothing in the store); `render` draws the page with the acoustic report's charts
and CSS (pipelines/report.py), escaping every string that comes from outside.
"""

from __future__ import annotations

import csv
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines import fleet
from pipelines import report as shared
from pipelines.errors import DataError
from pipelines.report import Chart, Run, ScopeRecord, Series
from pipelines.tabular.card import FAMILY
from registry.api import Registry

# Beyond this many test rows a scatter shows an even sample of them: a dot each for a
# hundred thousand rows would make a page of megabytes that shows no more.
MAX_DOTS = 2000
DOTS, GUIDE, LR = "#1565c0", "#9e9e9e", "#6a1b9a"


@dataclass(frozen=True)
class TaskRecord(ScopeRecord):
    """One task as the page shows it; what a stage did not write for it is left empty."""

    model: str | None = None  # the model type trained in this run (models/{task})
    epochs_run: int | None = None
    evaluation: dict[str, Any] | None = None  # eval/tasks/{task}/summary.json
    predictions: list[tuple[float, float]] = field(default_factory=list)  # (actual, predicted)
    history: list[dict[str, Any]] = field(default_factory=list)  # an mlp's rows per epoch


@dataclass(frozen=True)
class TabularRecord:
    tasks: list[TaskRecord]
    policy: dict[str, Any]
    error: str | None = None  # the deploy stage's line for every task (all refused)


# ------------------------------------------------------------------------------ the stage


class Report(shared.FamilyPage):
    """The page, from the outputs tabular/dvc.yaml's earlier stages wrote."""

    NOUN = "task"

    def page(
        self, models: Path, evaluation: Path, deploy_report: Path, registry: Registry, run: Run
    ) -> tuple[str, dict[str, dict[str, Any]]]:
        record = gather(models, evaluation, deploy_report, registry)
        return render(record, run), {t.name: _shown(t) for t in record.tasks}


def _shown(t: TaskRecord) -> dict[str, Any]:
    return {"model": t.model, "test_rows": len(t.predictions), "epochs": len(t.history)}


# ------------------------------------------------------------------------------ reading


def gather(
    models: Path, evaluation: Path, deploy_report: Path, registry: Registry
) -> TabularRecord:
    """What the last run wrote and what the registry holds now, per task."""
    if not deploy_report.is_file():
        raise DataError(f"{deploy_report}: no deploy report (the deploy stage writes it)")
    done = shared.deployed(deploy_report, registry, FAMILY)
    tasks = evaluation / "tasks"
    names = set(fleet.complete_devices(models)) | set(fleet.complete_devices(tasks))
    found = [
        TaskRecord(
            name,
            **_trained(models / name),
            evaluation=_read(tasks / name / "summary.json"),
            predictions=_predictions(tasks / name / "predictions.csv"),
            **done.scope(name),
        )
        for name in sorted(names | done.names())
    ]
    return TabularRecord(found, registry.policy(FAMILY), done.error)


def _read(path: Path) -> Any:
    return fleet.read_json(path) if path.is_file() else None


def _trained(model: Path) -> dict[str, Any]:
    """The model type, epochs and history of the task's model, as the train stage wrote it."""
    summary = _read(model / "summary.json")
    if summary is None:
        return {}
    return {
        "model": summary["architecture"]["type"],
        "epochs_run": summary.get("epochs_run"),
        "history": _read(model / "history.json") or [],
    }


def _predictions(path: Path) -> list[tuple[float, float]]:
    if not path.is_file():
        return []
    with path.open(newline="") as rows:
        return [(float(r["actual"]), float(r["predicted"])) for r in csv.DictReader(rows)]


# ------------------------------------------------------------------------------ the page


def render(record: TabularRecord, run: Run) -> str:
    """The whole page, as one string."""
    summary = f"{len(record.tasks)} tasks. Gate policy: {shared.bounds_line(record.policy)}"
    sections = [_summary_section(record), *(_task_section(t) for t in record.tasks)]
    return shared.page(f"Report: the {FAMILY} family", summary, sections, run)


COLUMNS = ("Task", "Model", "R²", "RMSE", "MAE", "MAPE", "Mean's RMSE", "Mean's R²")
COLUMNS += ("Test rows", "Production", "This run")


def _summary_section(record: TabularRecord) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    alert = f'<p class="alert">{e(record.error)}</p>' if record.error else ""
    misses = [(t.name, shared.outside(t.evaluation, record.policy)) for t in record.tasks]
    return "\n".join(
        [
            '<section id="tasks">',
            "<h2>Tasks</h2>",
            alert,
            f"<table><tr>{head}</tr>",
            *(_summary_row(t) for t in record.tasks),
            "</table>",
            '<p class="note">The mean\'s figures are those of always predicting the training '
            "rows' mean target: a model is only as good as its margin over them.</p>",
            "<h3>Outside the gate's bounds</h3>",
            shared.items([f"{name}: {'; '.join(m)}" for name, m in misses if m], "none"),
            shared.unmeasured([t.evaluation for t in record.tasks], record.policy, "task"),
            "<h3>What the deploy stage did in this run</h3>",
            shared.items(
                [f"{t.name}: {t.deployed}" for t in record.tasks if t.deployed], "nothing"
            ),
            "</section>",
        ]
    )


def _summary_row(t: TaskRecord) -> str:
    e = html.escape
    figures = [_cell(t, m) for m in ("r2", "rmse", "mae", "mape", "baseline_rmse", "baseline_r2")]
    cells = [
        f'<td><a href="#task-{e(t.name)}">{e(t.name)}</a></td>',
        f"<td>{e(t.model or '-')}</td>",
        *(f'<td class="num">{v}</td>' for v in figures),
        f'<td class="num">{len(t.predictions)}</td>',
        f"<td>{e(t.production or 'none')}</td>",
        f"<td>{shared.tag(t.action) if t.action else shared.NO_CANDIDATE}</td>",
    ]
    return f"<tr>{''.join(cells)}</tr>"


def _cell(t: TaskRecord, key: str) -> str:
    """A figure as the table shows it: R² to 3 decimals, MAPE in per cent, errors to 4
    significant digits, trailing zeros kept (a task's target may be in any unit)."""
    value = shared.figure_of(t.evaluation, key)
    if value is None:
        return "-"
    if key.endswith("r2"):
        return f"{value:.3f}"
    return f"{100 * value:.1f} %" if key.endswith("mape") else f"{value:#.4g}"


def _task_section(t: TaskRecord) -> str:
    e = html.escape
    return "\n".join(
        [
            f'<section class="task" id="task-{e(t.name)}">',
            f"<h2>{e(t.name)}</h2>",
            f"<p>Model: {e(_model_line(t))}. Production: {e(t.production or 'none')}. "
            f"Test rows: {len(t.predictions)}.</p>",
            f"<p>This run: {e(t.deployed or 'no candidate from this run')}</p>",
            '<div class="charts">',
            _predicted_vs_actual(t),
            _residuals(t),
            *_curves(t),
            "</div>",
            "<h3>Production history</h3>",
            shared.events_table(t.events),
            "</section>",
        ]
    )


def _model_line(t: TaskRecord) -> str:
    if t.model is None:
        return "none trained in this run"
    return t.model + (f", {t.epochs_run} epochs" if t.history else ", fitted at once")


def _shown_rows(t: TaskRecord) -> tuple[list[tuple[float, float]], str]:
    """The test rows a scatter draws (every k-th beyond MAX_DOTS) and what its title says."""
    rows = t.predictions
    if len(rows) <= MAX_DOTS:
        return rows, f"{len(rows)} test rows"
    shown = rows[:: -(-len(rows) // MAX_DOTS)]  # a step rounded up: at most MAX_DOTS
    return shown, f"{len(shown)} of {len(rows)} test rows"


def _predicted_vs_actual(t: TaskRecord) -> str:
    if not t.predictions:
        return shared.no_figure(f"{t.name}: no predictions (the task was not evaluated).")
    rows, shown = _shown_rows(t)
    lo, hi = shared.padded(min(min(r) for r in rows), max(max(r) for r in rows))
    r2 = shared.figure_of(t.evaluation, "r2")
    chart = Chart(
        f"{t.name}: predicted against actual" + (f" (R² {r2:.3f})" if r2 is not None else ""),
        "actual",
        "predicted",
        (lo, hi),
        (lo, hi),
    )
    dots = Series(shown, rows, DOTS)
    return shared.figure(
        shared.scatter_chart(chart, dots, [Series("y = x", [(lo, lo), (hi, hi)], GUIDE, True)])
    )


def _residuals(t: TaskRecord) -> str:
    """Residual (actual - predicted) against the prediction: a pattern (a slope, a funnel)
    is what the model missed; no pattern about the zero line is what a good fit leaves."""
    if not t.predictions:
        return shared.no_figure(f"{t.name}: no residuals (the task was not evaluated).")
    rows, shown = _shown_rows(t)
    points = [(predicted, actual - predicted) for actual, predicted in rows]
    xs = [x for x, _ in points]
    reach = max(abs(y) for _, y in points) * 1.1 or 1.0  # symmetric: over and under alike
    x = shared.padded(min(xs), max(xs))
    chart = Chart(f"{t.name}: residuals", "predicted", "actual - predicted", x, (-reach, reach))
    zero = Series("zero", [(x[0], 0.0), (x[1], 0.0)], GUIDE, True)
    return shared.figure(shared.scatter_chart(chart, Series(shown, points, DOTS), [zero]))


def _curves(t: TaskRecord) -> list[str]:
    """An mlp's loss and learning rate per epoch; a model fitted at once has neither."""
    if not t.history:
        why = f"the {t.model} model is fitted at once" if t.model else "no model in this run"
        return [shared.no_figure(f"{t.name}: {why}: no loss or learning-rate curves.")]
    loss = shared.loss_chart(t.name, t.history, "loss (MSE of the standardised target)")
    rates = [(r["epoch"], r["lr"]) for r in t.history if r.get("lr") is not None]
    if not rates:
        return [loss]
    top = max(lr for _, lr in rates) * 1.1  # from zero, so that a drop reads as its size
    series = [Series("learning rate", rates, LR)]
    return [
        loss,
        shared.epoch_chart(
            f"{t.name}: learning rate per epoch", "learning rate", series, (0.0, top)
        ),
    ]
