"""The fleet report: one HTML page that a person opens in a browser, with no network.

Everything is inline: a small CSS block and SVG charts drawn here, no script and no URL, so
the page renders the same on a plant's offline laptop. `gather` reads what the pipeline and
the registry hold (the I/O edge); `render` turns those records into the page; every string
that comes from outside (device codes, reasons, actors) is escaped on its way in.
"""

from __future__ import annotations

import datetime
import html
import logging
import math
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import decisions, fleet
from pipelines.errors import ParamError
from registry.api import Registry
from registry.events import previous_holder, replaced_model
from registry.naming import parse_name

# The registry events that change (or were refused the right to change) who runs on a device.
ALIAS_EVENTS = ("promoted", "rolled_back", "refused", "retired")
PRODUCTION = "production"
NO_CANDIDATE = '<span class="muted">no candidate</span>'  # a scope this run did not deploy


@dataclass(frozen=True)
class ScopeRecord:
    """What every family's page shows of a scope (a device, a task) beside its own figures:
    what the deploy stage did with it in this run and its production in the registry."""

    name: str
    action: str | None = None  # what the deploy stage did with this run's candidate
    deployed: str = ""  # the deploy stage's line for the scope; "": no candidate this run
    production: str | None = None  # NAME:vN in production now
    events: list[dict[str, Any]] = field(default_factory=list)  # the registry's, oldest first


@dataclass(frozen=True)
class DeviceRecord(ScopeRecord):
    """One device as the page shows it; what a stage did not write for it is left empty."""

    detector: str | None = None  # the model type trained in this run (models/{device})
    evaluation: dict[str, Any] | None = None  # eval/devices/{device}/summary.json
    scores: list[dict[str, Any]] = field(default_factory=list)  # one per test clip
    roc: list[dict[str, Any]] = field(default_factory=list)  # needs both kinds of clips
    history: list[dict[str, Any]] = field(default_factory=list)  # loss per epoch


@dataclass(frozen=True)
class FleetRecord:
    family: str
    devices: list[DeviceRecord]
    policy: dict[str, Any]
    error: str | None = None  # the deploy stage's line for the run (e.g. every candidate refused)
    # the deploy stage's line of each device in production but not in data.root: no section
    # of its own and no part of the fleet's figures
    not_in_data: list[str] = field(default_factory=list)


class FamilyPage:
    """A family's report stage (`python -m stages.report --family F MODELS EVALUATION
    DEPLOY_REPORT OUT_HTML`): its `page` from the earlier stages' outputs and the registry,
    written to OUT_HTML; an outcome per scope the page shows, so that the stage's report and
    log say which."""

    ARGUMENTS = ("models", "evaluation", "deploy_report", "out")
    OPTIONS: Mapping[str, str] = {}
    NOUN = "scope"  # what the family calls a scope, in the stage's log line

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = paths

    def page(
        self, models: Path, evaluation: Path, deploy_report: Path, registry: Registry, run: Run
    ) -> tuple[str, dict[str, dict[str, Any]]]:
        """The page, and what it shows of each scope (the stage's report)."""
        raise NotImplementedError

    def work(self, params: Any) -> dict[str, fleet.Outcome]:
        a = self.paths
        run = this_run(params.data.root)
        text, shown = self.page(a["models"], a["evaluation"], a["deploy_report"], Registry(), run)
        a["out"].parent.mkdir(parents=True, exist_ok=True)
        a["out"].write_text(text, encoding="utf-8")
        logging.getLogger("stage").info("report: %d %ss -> %s", len(shown), self.NOUN, a["out"])
        return {name: fleet.Outcome(name, "built", summary=s) for name, s in shown.items()}


# ------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class Run:
    """Which run a page is of, as its header says."""

    date: str  # YYYY-MM-DD, UTC
    commit: str  # the project's short HEAD hash, or why there is none
    experiment: str  # DVC's name of the experiment, or "workspace" for a plain run
    data_root: str  # the family's `data.root` param, as written

    def line(self) -> str:
        return (
            f"Date: {self.date} · Commit: {self.commit} · Experiment: {self.experiment} · "
            f"Data root: {self.data_root}"
        )


def this_run(data_root: str, env: Mapping[str, str] = os.environ, cwd: Path | None = None) -> Run:
    """The run this process is part of: its date, commit and experiment, from `env` (DVC sets
    DVC_EXP_NAME in `dvc exp run`) and the git repository at `cwd` (default: the working
    directory)."""
    experiment = env.get("DVC_EXP_NAME") or "workspace"
    return Run(run_date(env), git_commit(cwd), experiment, data_root)


def run_date(env: Mapping[str, str]) -> str:
    """SOURCE_DATE_EPOCH's day when set, else today's (UTC). Never the time of day: two
    runs of the same inputs (local and dask, or a rerun) must write the same bytes, and the
    reproducible-builds variable lets a build pin even the day."""
    given = env.get("SOURCE_DATE_EPOCH")
    if given is None:
        return datetime.datetime.now(datetime.UTC).date().isoformat()
    if not given.strip().isdigit():
        raise ParamError(f"SOURCE_DATE_EPOCH {given!r}: expected whole seconds since 1970 UTC")
    return datetime.datetime.fromtimestamp(int(given), datetime.UTC).date().isoformat()


def git_commit(cwd: Path | None = None) -> str:
    """The short hash of HEAD. No mark for uncommitted changes: mid-repro the earlier
    stages have rewritten dvc.lock, so every run that built anything would carry it."""
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        )
    except FileNotFoundError:
        return "none (git is not installed)"
    except subprocess.CalledProcessError:
        return "none (not a git repository, or no commit yet)"
    return found.stdout.strip()


@dataclass(frozen=True)
class Deployed:
    """What a family's deploy stage did in the last run and what the registry holds now:
    what every family's page says of each scope beside its own figures."""

    devices: dict[str, Any]  # scope -> the deploy stage's entry (its report's `devices`)
    lines: dict[str, str]  # scope -> its line (pipelines/decisions.py)
    held: dict[str, dict[str, Any]]  # scope -> the version in production now
    events: dict[str, list[dict[str, Any]]]  # scope -> its production events, in order
    error: str | None  # the deploy stage's line for every scope (e.g. every one refused)
    not_in_data: list[str]  # scopes in production whose data is gone (not in data.root)

    def names(self) -> set[str]:
        return (set(self.devices) | set(self.held) | set(self.events)) - set(self.not_in_data)

    def scope(self, name: str) -> dict[str, Any]:
        """A ScopeRecord's fields for the scope `name`."""
        held = self.held.get(name)
        return {
            "action": deploy_action(self.devices.get(name)),
            "deployed": self.lines[name].removeprefix(f"{name}: ") if name in self.lines else "",
            "production": f"{held['name']}:v{held['version']}" if held else None,
            "events": self.events.get(name, []),
        }


def deployed(deploy_report: Path, registry: Registry, family: str) -> Deployed:
    """The deploy stage's report and the family's production in `registry` (read only)."""
    report = fleet.read_json(deploy_report)
    gone = report.get("not_in_data", [])
    return Deployed(
        report["devices"],
        dict(decisions.describe(report)),
        {m["scope"]: m for m in registry.list(alias=PRODUCTION) if m["family"] == family},
        alias_events(registry.history(), family),
        report.get("error"),
        gone,
    )


def gather(
    eval_dir: Path, models_dir: Path, deploy_report: Path, registry: Registry, family: str
) -> FleetRecord:
    """What the last run wrote and what the registry holds now, per device."""
    done = deployed(deploy_report, registry, family)
    names = set(fleet.complete_devices(eval_dir)) | set(fleet.complete_devices(models_dir))
    devices = [
        DeviceRecord(
            name,
            detector=_detector(models_dir / name),
            evaluation=_read(eval_dir / name / "summary.json"),
            scores=_read(eval_dir / name / "scores.json") or [],
            roc=_read(eval_dir / name / "roc.json") or [],
            history=_read(models_dir / name / "history.json") or [],
            **done.scope(name),
        )
        for name in sorted(names | done.names())
    ]
    gone = [done.lines[name] for name in done.not_in_data]
    return FleetRecord(family, devices, registry.policy(family), done.error, gone)


def _read(path: Path) -> Any:
    return fleet.read_json(path) if path.is_file() else None


def _detector(model_dir: Path) -> str | None:
    summary = _read(model_dir / "summary.json")
    return summary["architecture"]["type"] if summary else None


def deploy_action(entry: dict[str, Any] | None) -> str | None:
    if entry is None:
        return None
    return entry["decision"]["action"] if entry.get("decision") else entry["status"]


def alias_events(records: list[dict[str, Any]], family: str) -> dict[str, list[dict[str, Any]]]:
    """Device -> the family's production events (promotions, rollbacks, refusals), in order."""
    found: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record["type"] not in ALIAS_EVENTS or record.get("alias") != PRODUCTION:
            continue
        models = [parse_name(n) for n in (record["name"], replaced_model(record)) if n]
        for device in {m.scope for m in models if m.family == family}:
            found.setdefault(device, []).append(record)
    return found


# ------------------------------------------------------------------------------ the page

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #222; margin: 0 auto; max-width: 1180px;
       padding: 0 16px 48px; }
h1 { font-size: 22px; margin: 20px 0 4px; }
.run { margin: 0; font-variant-numeric: tabular-nums; }
h2 { font-size: 18px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid #eee;
         vertical-align: top; }
th { color: #555; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: #666; }
.note { color: #666; font-style: italic; }
.alert { background: #fdecea; border-left: 4px solid #c62828; padding: 6px 10px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.charts > .note { flex-basis: 100%; margin: 0; }
.chart { display: inline-block; border: 1px solid #e4e4e4; border-radius: 4px; background: #fff; }
.tag { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 12px;
       background: #eee; }
.tag.promoted, .tag.rolled_back { background: #e3f2e5; }
.tag.refused, .tag.failed { background: #fdecea; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg text.title { font-size: 12px; font-weight: 600; }
svg text.muted { fill: #777; }
"""


def render(report: FleetRecord, run: Run) -> str:
    """The whole page, as one string."""
    summary = f"{len(report.devices)} devices. Gate policy: {_policy(report.policy)}"
    sections = [_fleet_section(report), *(_device_section(d) for d in report.devices)]
    return page(f"Fleet report: {report.family}", summary, sections, run)


def page(title: str, summary: str, sections: list[str], run: Run) -> str:
    """A whole page: `title`, the `run` it is of and `summary` (plain text, escaped here)
    head its `sections` (HTML, escaped by whoever made them)."""
    e = html.escape
    body = [
        "<header>",
        f"<h1>{e(title)}</h1>",
        f'<p class="run">{e(run.line())}</p>',
        f'<p class="muted">{e(summary)}</p>',
        "</header>",
        *sections,
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def _policy(policy: dict[str, Any]) -> str:
    floors = ", ".join(f"{metric} >= {floor:g}" for metric, floor in policy["floors"].items())
    text = (
        f"floors {floors or 'none'}; a candidate's error at most "
        f"x{policy['rollback_factor']:g} production's"
    )
    return text + policy_origin(policy)


def bounds_line(policy: dict[str, Any]) -> str:
    """The gate's policy in a line, its floors and ceilings (not escaped)."""
    bounds = [f"{m} >= {v:g}" for m, v in policy["floors"].items()]
    bounds += [f"{m} <= {v:g}" for m, v in policy.get("ceilings", {}).items()]
    text = (
        f"{', '.join(bounds) or 'no floor or ceiling'}; a candidate's error at most "
        f"x{policy['rollback_factor']:g} production's"
    )
    return text + policy_origin(policy)


def figure_of(evaluation: dict[str, Any] | None, key: str) -> float | None:
    """A number of a scope's evaluation; None when it was not measured."""
    value = (evaluation or {}).get(key)
    return float(value) if isinstance(value, float | int) else None


def outside(evaluation: dict[str, Any] | None, policy: dict[str, Any]) -> list[str]:
    """The gate's bounds a scope's figures of this run miss, as 'rmse 61.2 > 60'."""
    floors = [(m, v, "<") for m, v in policy["floors"].items()]
    bounds = floors + [(m, v, ">") for m, v in policy.get("ceilings", {}).items()]
    found = [(m, figure_of(evaluation, m), bound, sign) for m, bound, sign in bounds]
    return [
        f"{m} {value:.4g} {sign} {bound:g}"
        for m, value, bound, sign in found
        if value is not None and (value < bound if sign == "<" else value > bound)
    ]


def unmeasured(evaluations: list[dict[str, Any] | None], policy: dict[str, Any], noun: str) -> str:
    """The bounds no evaluated scope measures: the gate does not apply them (say so, since
    a store-wide policy may bound another family's metric)."""
    evaluated = [e for e in evaluations if e]
    names = [*policy["floors"], *policy.get("ceilings", {})]
    idle = [m for m in names if evaluated and all(figure_of(e, m) is None for e in evaluated)]
    if not idle:
        return ""
    text = f"Not measured for any {noun}, so not applied by the gate: {', '.join(idle)}."
    return f'<p class="note">{html.escape(text)}</p>'


def policy_origin(policy: dict[str, Any]) -> str:
    """Who set the gate's policy, when and why, or that it is the default (not escaped)."""
    set_by = policy.get("set")
    return (
        f" (set {set_by['time'][:16].replace('T', ' ')} by {set_by['actor']}: {set_by['reason']})"
        if set_by
        else " (the default)"
    )


def below_floors(device: DeviceRecord, floors: dict[str, float]) -> list[str]:
    """The floors this run's evaluation of the device misses, as 'auc 0.61 < 0.9'."""
    measured = {metric: _metric(device, metric) for metric in floors}
    return [
        f"{metric} {value:.3f} < {floors[metric]:g}"
        for metric, value in measured.items()
        if value is not None and value < floors[metric]
    ]


def _fleet_section(report: FleetRecord) -> str:
    e = html.escape
    floors = report.policy["floors"]
    rows = "".join(_fleet_row(d) for d in report.devices)
    below = [(d.name, below_floors(d, floors)) for d in report.devices]
    below = [(name, misses) for name, misses in below if misses]
    unjudged = [d.name for d in report.devices if floors and not _has_metrics(d, floors)]
    alert = f'<p class="alert">{e(report.error)}</p>' if report.error else ""
    return "\n".join(
        [
            '<section id="fleet">',
            "<h2>Fleet</h2>",
            alert,
            "<table><tr><th>Device</th><th>Detector</th><th>AUC</th><th>pAUC</th>"
            "<th>Test clips</th><th>Production</th><th>This run</th></tr>",
            rows,
            "</table>",
            figure(auc_chart([(d.name, _metric(d, "auc")) for d in report.devices], floors)),
            "<h3>Below the gate's floors</h3>",
            items([f"{name}: {'; '.join(misses)}" for name, misses in below], "none"),
            _not_judged(unjudged),
            "<h3>What the deploy stage did in this run</h3>",
            items([f"{d.name}: {d.deployed}" for d in report.devices if d.deployed], "nothing"),
            _not_in_data(report.not_in_data),
            "</section>",
        ]
    )


def _not_in_data(lines: list[str]) -> str:
    return f"<h3>Not in data.root</h3>{items(lines, '')}" if lines else ""


def _has_metrics(device: DeviceRecord, floors: dict[str, float]) -> bool:
    return all(_metric(device, metric) is not None for metric in floors)


def _not_judged(names: list[str]) -> str:
    if not names:
        return ""
    text = f"Not measured against every floor (no labelled test clips): {', '.join(names)}"
    return f'<p class="note">{html.escape(text)}</p>'


def _metric(device: DeviceRecord, key: str) -> float | None:
    value = (device.evaluation or {}).get(key)
    return float(value) if isinstance(value, float | int) else None


def _fleet_row(d: DeviceRecord) -> str:
    e = html.escape
    cells = [
        f'<a href="#device-{e(d.name)}">{e(d.name)}</a>',
        e(d.detector or "-"),
        _number(_metric(d, "auc")),
        _number(_metric(d, "pauc")),
        str(len(d.scores)),
        e(d.production or "none"),
        tag(d.action) if d.action else '<span class="muted">no candidate</span>',
    ]
    classes = ["", "", "num", "num", "num", "", ""]
    tds = "".join(
        f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>"
        for c, v in zip(classes, cells, strict=True)
    )
    return f"<tr>{tds}</tr>"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def tag(action: str) -> str:
    e = html.escape
    return f'<span class="tag {e(action)}">{e(action.replace("_", " "))}</span>'


def items(lines: list[str], empty: str) -> str:
    if not lines:
        return f'<p class="muted">{html.escape(empty)}</p>'
    return "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>"


def _device_section(d: DeviceRecord) -> str:
    e = html.escape
    threshold = _metric(d, "threshold")
    charts = [_roc(d), _histogram(d, threshold), _loss(d)]
    shown = "-" if threshold is None else f"{threshold:.4g}"  # small: no fixed decimals
    return "\n".join(
        [
            f'<section class="device" id="device-{e(d.name)}">',
            f"<h2>{e(d.name)}</h2>",
            f"<p>Detector: {e(d.detector or 'none trained in this run')}. "
            f"Production: {e(d.production or 'none')}. "
            f"Threshold: {shown}.</p>",
            f"<p>This run: {e(d.deployed or 'no candidate from this run')}</p>",
            '<div class="charts">',
            *charts,
            "</div>",
            "<h3>Production history</h3>",
            events_table(d.events),
            "</section>",
        ]
    )


def _roc(d: DeviceRecord) -> str:
    auc = _metric(d, "auc")
    if not d.roc or auc is None:
        why = "no test clips" if not d.scores else "test clips of one kind only"
        return no_figure(f"{d.name}: no ROC curve ({why}; it needs normal and anomalous clips).")
    points = [(p["fpr"], p["tpr"]) for p in d.roc]
    series = [
        Series("chance", [(0.0, 0.0), (1.0, 1.0)], "#9e9e9e", dashed=True),
        Series("ROC", points, "#1565c0"),
    ]
    chart = Chart(
        f"{d.name}: ROC of test clips (AUC {auc:.3f})",
        "false positive rate",
        "true positive rate",
        (0.0, 1.0),
        (0.0, 1.0),
    )
    return figure(line_chart(chart, series))


def _histogram(d: DeviceRecord, threshold: float | None) -> str:
    if not d.scores or threshold is None:
        return no_figure(f"{d.name}: no score histogram (no labelled test clips).")
    return figure(histogram_chart(d.name, d.scores, threshold))


def _loss(d: DeviceRecord) -> str:
    if not d.history:
        why = (
            f"the {d.detector} detector has no training loop (it is fitted in one pass)"
            if d.detector
            else "no model was trained in this run"
        )
        return no_figure(f"{d.name}: no loss per epoch: {why}.")
    return loss_chart(d.name, d.history, "loss (reconstruction MSE)")


def loss_chart(name: str, history: list[dict[str, Any]], y_label: str) -> str:
    """The training and validation loss per epoch of the engine's history rows, a figure."""
    series = [Series("train", [(r["epoch"], r["train_loss"]) for r in history], "#1565c0")]
    val = [(r["epoch"], r["val_loss"]) for r in history if r.get("val_loss") is not None]
    if val:
        series.append(Series("validation", val, "#e65100", dashed=True))
    ys = [y for s in series for _, y in s.points]
    title = f"{name}: loss per epoch" + ("" if val else " (no validation split)")
    return epoch_chart(title, y_label, series, padded(min(ys), max(ys)))


def epoch_chart(title: str, y_label: str, series: list[Series], y: tuple[float, float]) -> str:
    """Curves over the epochs, as a figure; short ones get a dot per epoch."""
    epochs = {x for s in series for x, _ in s.points}
    chart = Chart(title, "epoch", y_label, (min(epochs) - 0.5, max(epochs) + 0.5), y)
    return figure(line_chart(chart, series, markers=len(epochs) <= MARKED))


def events_table(records: list[dict[str, Any]]) -> str:
    if not records:
        return '<p class="muted">No production events in the registry.</p>'
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(r['time'][:19].replace('T', ' '))}</td><td>{tag(r['type'])}</td>"
        f"<td>{e(_versions(r))}</td><td>{e(r.get('actor') or '')}</td>"
        f"<td>{e(_why(r))}</td></tr>"
        for r in records
    )
    return (
        "<table><tr><th>Time (UTC)</th><th>Event</th><th>Version</th><th>By</th>"
        f"<th>Reason</th></tr>{rows}</table>"
    )


def _versions(r: dict[str, Any]) -> str:
    to = f"{r['name']}:v{r.get('to_version') or r['version']}"
    held = previous_holder(r)
    return f"{held} -> {to}" if held and r["type"] != "retired" else to


def _why(r: dict[str, Any]) -> str:
    gate = r.get("gate") or {}
    refused = "; ".join(gate.get("reasons") or []) if r["type"] == "refused" else ""
    forced = "forced" if r.get("forced") else ""
    return "; ".join(part for part in (r.get("reason") or "", refused, forced) if part)


def figure(svg: str) -> str:
    return f'<div class="chart">{svg}</div>'


def no_figure(text: str) -> str:
    """Why a chart is missing, in one line of its own: a chart-sized box around a sentence
    left a third of the page's width empty."""
    return f'<p class="note">{html.escape(text)}</p>'


# ------------------------------------------------------------------------------ SVG charts

WIDTH, HEIGHT = 360, 240
MARKED = 20  # curves of at most this many epochs get a dot per epoch: one epoch is a dot
LEFT, RIGHT, TOP, BOTTOM = 56, 14, 44, 42


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]
    color: str
    dashed: bool = False


@dataclass(frozen=True)
class Chart:
    """A chart's words and ranges; the plot area maps `x` x `y` onto WIDTH x HEIGHT less margins."""

    title: str
    x_label: str
    y_label: str
    x: tuple[float, float]
    y: tuple[float, float]
    log_x: bool = False  # x positive, each power of ten as wide as the next

    def px(self, value: float) -> float:
        lo, hi = (math.log10(v) for v in self.x) if self.log_x else self.x
        at = math.log10(value) if self.log_x else value
        return LEFT + (at - lo) / ((hi - lo) or 1.0) * (WIDTH - LEFT - RIGHT)

    def py(self, value: float) -> float:
        lo, hi = self.y
        return HEIGHT - BOTTOM - (value - lo) / ((hi - lo) or 1.0) * (HEIGHT - TOP - BOTTOM)


def line_chart(chart: Chart, series: list[Series], markers: bool = False) -> str:
    """Lines (and dots, for short curves) over axes, with a legend."""
    body = []
    for s in series:
        body.append(_polyline(chart, s))
        if markers:
            body += [
                f'<circle cx="{chart.px(x):.1f}" cy="{chart.py(y):.1f}" r="2.5" fill="{s.color}"/>'
                for x, y in s.points
            ]
    legend = _legend([(s.label, s.color, s.dashed) for s in series])
    return _svg(WIDTH, HEIGHT, chart.title, _axes(chart) + body + legend)


def scatter_chart(chart: Chart, dots: Series, guides: list[Series]) -> str:
    """A dot per point over axes, under them the guides' lines (y = x, zero), with a legend.
    The dots are translucent, so that where they pile up reads darker."""
    body = [_polyline(chart, g, width=1.5) for g in guides]
    body += [
        f'<circle cx="{chart.px(x):.1f}" cy="{chart.py(y):.1f}" r="2.5" fill="{dots.color}" '
        'fill-opacity="0.6"/>'
        for x, y in dots.points
    ]
    legend = [
        f'<circle cx="{LEFT + 9}" cy="29" r="3" fill="{dots.color}"/>',
        _text(LEFT + 22, 33, dots.label),
    ]
    guides_at = LEFT + 40 + 6.5 * len(dots.label)
    legend += _legend([(g.label, g.color, g.dashed) for g in guides], guides_at)
    return _svg(WIDTH, HEIGHT, chart.title, _axes(chart) + body + legend)


def _polyline(chart: Chart, s: Series, width: float = 2) -> str:
    coords = " ".join(f"{chart.px(x):.1f},{chart.py(y):.1f}" for x, y in s.points)
    return (
        f'<polyline points="{coords}" fill="none" stroke="{s.color}" '
        f'stroke-width="{width:g}"{_dash(s.dashed)}/>'
    )


NORMAL, ANOMALY, LOW = "#1565c0", "#e65100", "#c62828"


def histogram_chart(
    device: str, clips: list[dict[str, Any]], threshold: float, bins: int = 20
) -> str:
    """Normal and anomalous test clips per score bin, side by side, and the threshold's line,
    on a log axis: anomalies score tens to hundreds of times the normal, which on a linear
    axis puts every normal clip and the threshold in the first bar. A log axis has no 0: a
    clip that scored 0 is counted in the first bin, and the axis's label says how many."""
    scores = np.array([c["score"] for c in clips], dtype=float)
    anomalous = np.array([c["label"] == 1 for c in clips])
    lo, hi = log_span(np.append(scores, threshold))
    edges = np.geomspace(lo, hi, bins + 1)
    placed = np.clip(scores, lo, hi)
    counts = [np.histogram(placed[anomalous == kind], edges)[0] for kind in (False, True)]
    zeros = int((scores <= 0).sum())
    chart = Chart(
        f"{device}: test clip scores",
        "clip score (mean of its windows), log scale"
        + (f"; {zeros} scored 0, in the first bin" if zeros else ""),
        "test clips",
        (lo, hi),
        (0.0, float(max(max(c.max() for c in counts), 1))),
        log_x=True,
    )
    middles = np.sqrt(edges[:-1] * edges[1:])  # halfway across each bin on the log axis
    body = []
    for n, color, lefts, rights in (
        (counts[0], NORMAL, edges[:-1], middles),
        (counts[1], ANOMALY, middles, edges[1:]),
    ):
        for left, right, count in zip(lefts, rights, n, strict=True):
            if count:
                x0, x1, y = chart.px(left), chart.px(right), chart.py(count)
                body.append(
                    f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 0.5, 0.5):.1f}" '
                    f'height="{chart.py(0) - y:.1f}" fill="{color}"/>'
                )
    x = chart.px(max(threshold, lo))
    right_half = x > (LEFT + WIDTH - RIGHT) / 2
    body += [
        _line(x, TOP, x, HEIGHT - BOTTOM, "#212121", dashed=True, cls="threshold"),
        _text(
            x - 3 if right_half else x + 3,
            TOP + 12,
            f"threshold {threshold:.4g}",
            "end" if right_half else "start",
        ),
    ]
    legend = _legend([("normal", NORMAL, False), ("anomalous", ANOMALY, False)])
    return _svg(WIDTH, HEIGHT, chart.title, _axes(chart, integer_y=True) + body + legend)


def log_span(values: np.ndarray) -> tuple[float, float]:
    """A log axis's ends about the positive `values`, padded as `padded` pads a linear one;
    a decade each side of 1 when none is positive."""
    positive = values[values > 0]
    if not positive.size:
        return 0.1, 10.0
    lo, hi = padded(math.log10(positive.min()), math.log10(positive.max()))
    return 10**lo, 10**hi


def auc_chart(values: list[tuple[str, float | None]], floors: dict[str, float]) -> str:
    """AUC per device as horizontal bars on 0..1, the gate's AUC floor as a line."""
    row, title = 20, "AUC per device"
    height = TOP + BOTTOM + row * max(len(values), 1)
    left = 16 + 7 * max((len(name) for name, _ in values), default=4)
    plot = 2 * WIDTH - left - RIGHT - 40
    body = [_text(WIDTH, 16, title, "middle", "title")]
    for i, (name, auc) in enumerate(values):
        y = TOP + i * row
        body.append(_text(left - 6, y + 14, name, "end"))
        if auc is None:
            body.append(_text(left + 4, y + 14, "no AUC (no labelled test clips)", cls="muted"))
            continue
        low = "auc" in floors and auc < floors["auc"]
        body += [
            f'<rect x="{left}" y="{y + 3}" width="{auc * plot:.1f}" height="{row - 6}" '
            f'fill="{LOW if low else NORMAL}"/>',
            _text(left + auc * plot + 4, y + 14, f"{auc:.3f}"),
        ]
    bottom = height - BOTTOM
    body += [_text(left + t * plot, bottom + 14, f"{t:g}", "middle") for t in _ticks(0.0, 1.0)]
    body.append(_text(left + plot / 2, height - 8, "AUC of the test clips", "middle"))
    if "auc" in floors:
        x = left + floors["auc"] * plot
        body += [
            _line(x, TOP - 2, x, bottom, LOW, dashed=True, cls="floor"),
            _text(x + 3, TOP - 4, f"gate floor {floors['auc']:g}"),
        ]
    return _svg(2 * WIDTH, height, title, body)


def _svg(width: float, height: float, title: str, body: list[str]) -> str:
    title = html.escape(title)
    return (
        f'<svg width="{width}" height="{height}" '
        f'role="img" aria-label="{title}"><title>{title}</title>' + "".join(body) + "</svg>"
    )


def _axes(chart: Chart, integer_y: bool = False) -> list[str]:
    """Title, frame, grid, tick labels and axis labels."""
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    out = [
        _text(WIDTH / 2, 16, chart.title, "middle", "title"),
        f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" '
        'fill="none" stroke="#bbb"/>',
    ]
    x_ticks = _log_ticks(*chart.x) if chart.log_x else _ticks(*chart.x)
    out += [_text(chart.px(t), bottom + 14, f"{t:.3g}", "middle") for t in x_ticks]
    for tick in _ticks(*chart.y, integer=integer_y):
        y = chart.py(tick)
        out += [_line(LEFT, y, right, y, "#eee"), _text(LEFT - 4, y + 4, f"{tick:.3g}", "end")]
    out += [
        _text((LEFT + right) / 2, HEIGHT - 8, chart.x_label, "middle"),
        _text(
            0,
            0,
            chart.y_label,
            "middle",
            transform=f"translate(14 {(TOP + bottom) / 2}) rotate(-90)",
        ),
    ]
    return out


def _legend(entries: list[tuple[str, str, bool]], start: float = LEFT) -> list[str]:
    """One row between the title and the plot, where it can hide no data."""
    out, x = [], float(start)
    for label, color, dashed in entries:
        out += [_line(x, 29, x + 18, 29, color, dashed, width=2), _text(x + 22, 33, label)]
        x += 40 + 6.5 * len(label)
    return out


def _text(
    x: float, y: float, content: str, anchor: str = "start", cls: str = "", transform: str = ""
) -> str:
    where = f'transform="{transform}"' if transform else f'x="{x:.1f}" y="{y:.1f}"'
    attrs = f' text-anchor="{anchor}"' + (f' class="{cls}"' if cls else "")
    return f"<text {where}{attrs}>{html.escape(content)}</text>"


def _line(
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    color: str,
    dashed: bool = False,
    cls: str = "",
    width: float = 1.5,
) -> str:
    attrs = f' class="{cls}"' if cls else ""
    return (
        f'<line{attrs} x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
        f'stroke="{color}" stroke-width="{width}"{_dash(dashed)}/>'
    )


def _dash(dashed: bool) -> str:
    return ' stroke-dasharray="5 3"' if dashed else ""


def _ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round numbers between lo and hi, about `count` of them."""
    raw = ((hi - lo) or 1.0) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(step, 1.0) if integer else step
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _log_ticks(lo: float, hi: float, most: int = 7) -> list[float]:
    """Round numbers between lo and hi on a log axis: 1-2-5 or 1-3 times the powers of ten,
    the finer when they are at most `most`, else the powers alone."""
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    for steps in ((1, 2, 5), (1, 3), (1,)):
        ticks = [m * 10.0**k for k in decades for m in steps if lo <= m * 10.0**k <= hi]
        if len(ticks) <= most:
            break
    return ticks


def padded(lo: float, hi: float) -> tuple[float, float]:
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
    return lo - pad, hi + pad
