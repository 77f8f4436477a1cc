"""The keypoint family's report: one HTML page over its sites, opened with no network.

    python -m stages.report --family keypoint MODELS EVALUATION DEPLOY_REPORT OUT_HTML

A summary of the sites (network and its parameters, seed 002's figures on the held-out
captchas, what the deploy stage did, the version in production), then a section per site: a
few held-out captchas with the true points (green rings) and the predicted ones (red
crosses), the loss and learning rate per epoch, the validation MAE and hit rates per epoch,
and its production history from the registry's events. `gather` reads the pipeline's
outputs and the registry (it changes nothing in the store); `render` draws the page with the
other families' charts and CSS (pipelines/report.py), the images inline as PNG data.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines import fleet
from pipelines import report as shared
from pipelines.errors import DataError
from pipelines.keypoint.card import FAMILY, METRICS, TITLES
from pipelines.report import Run, ScopeRecord, Series
from registry.api import Registry

LR = "#6a1b9a"
HITS = {"val_hit_le_1px": "#c62828", "val_hit_le_2px": "#ef6c00", "val_hit_le_5px": "#2e7d32"}
SHOWN = ("hit_le_5px", "hit_le_2px", "hit_le_1px", "mae_px", "rmse_px", "gap_mae", "slider_mae")


@dataclass(frozen=True)
class SiteRecord(ScopeRecord):
    """One site as the page shows it; what a stage did not write for it is left empty."""

    model: str | None = None  # the network trained in this run (models/{site})
    parameters: int | None = None
    epochs_run: int | None = None
    evaluation: dict[str, Any] | None = None  # eval/sites/{site}/summary.json
    history: list[dict[str, Any]] = field(default_factory=list)  # the engine's rows
    examples: list[bytes] = field(default_factory=list)  # held-out captchas drawn on, PNG


@dataclass(frozen=True)
class KeypointRecord:
    sites: list[SiteRecord]
    policy: dict[str, Any]
    error: str | None = None  # the deploy stage's line for every site (all refused)


class Report(shared.FamilyPage):
    """The page, from the outputs keypoint/dvc.yaml's earlier stages wrote."""

    NOUN = "site"

    def page(
        self, models: Path, evaluation: Path, deploy_report: Path, registry: Registry, run: Run
    ) -> tuple[str, dict[str, dict[str, Any]]]:
        record = gather(models, evaluation, deploy_report, registry)
        return render(record, run), {s.name: {"examples": len(s.examples)} for s in record.sites}


def gather(
    models: Path, evaluation: Path, deploy_report: Path, registry: Registry
) -> KeypointRecord:
    """What the last run wrote and what the registry holds now, per site."""
    if not deploy_report.is_file():
        raise DataError(f"{deploy_report}: no deploy report (the deploy stage writes it)")
    done = shared.deployed(deploy_report, registry, FAMILY)
    sites = evaluation / "sites"
    names = set(fleet.complete_devices(models)) | set(fleet.complete_devices(sites))
    found = [
        SiteRecord(
            name,
            **_trained(models / name),
            evaluation=_read(sites / name / "summary.json"),
            examples=[p.read_bytes() for p in sorted((sites / name / "examples").glob("*.png"))],
            **done.scope(name),
        )
        for name in sorted(names | done.names())
    ]
    return KeypointRecord(found, registry.policy(FAMILY), done.error)


def _read(path: Path) -> Any:
    return fleet.read_json(path) if path.is_file() else None


def _trained(model: Path) -> dict[str, Any]:
    summary = _read(model / "summary.json")
    if summary is None:
        return {}
    return {
        "model": summary["architecture"]["type"],
        "parameters": summary.get("parameters"),
        "epochs_run": summary.get("epochs_run"),
        "history": _read(model / "history.json") or [],
    }


# ------------------------------------------------------------------------------ the page


def render(record: KeypointRecord, run: Run) -> str:
    """The whole page, as one string."""
    summary = f"{len(record.sites)} sites. Gate policy: {shared.bounds_line(record.policy)}"
    sections = [_summary_section(record), *(_site_section(s) for s in record.sites)]
    return shared.page(f"Report: the {FAMILY} family", summary, sections, run)


def _summary_section(record: KeypointRecord) -> str:
    e = html.escape
    columns = ["Site", "Model", "Parameters", *(TITLES[m] for m in SHOWN), "Held out"]
    head = "".join(f"<th>{e(c)}</th>" for c in [*columns, "Production", "This run"])
    alert = f'<p class="alert">{e(record.error)}</p>' if record.error else ""
    misses = [(s.name, shared.outside(s.evaluation, record.policy)) for s in record.sites]
    return "\n".join(
        [
            '<section id="sites">',
            "<h2>Sites</h2>",
            alert,
            f"<table><tr>{head}</tr>",
            *(_summary_row(s) for s in record.sites),
            "</table>",
            "<p class=\"note\">Seed 002's figures on each site's held-out captchas, in the "
            "captcha's pixels: a point's error is the mean of its x and y errors; hit@k is "
            "the share of captchas whose gap and slider errors average at most k px.</p>",
            "<h3>Outside the gate's bounds</h3>",
            shared.items([f"{name}: {'; '.join(m)}" for name, m in misses if m], "none"),
            shared.unmeasured([s.evaluation for s in record.sites], record.policy, "site"),
            "<h3>What the deploy stage did in this run</h3>",
            shared.items(
                [f"{s.name}: {s.deployed}" for s in record.sites if s.deployed], "nothing"
            ),
            "</section>",
        ]
    )


def _summary_row(s: SiteRecord) -> str:
    e = html.escape
    figures = [_cell(s, m) for m in SHOWN]
    held_out = (s.evaluation or {}).get("samples", "-")
    cells = [
        f'<td><a href="#site-{e(s.name)}">{e(s.name)}</a></td>',
        f"<td>{e(s.model or '-')}</td>",
        f'<td class="num">{f"{s.parameters:,}" if s.parameters else "-"}</td>',
        *(f'<td class="num">{v}</td>' for v in figures),
        f'<td class="num">{e(str(held_out))}</td>',
        f"<td>{e(s.production or 'none')}</td>",
        f"<td>{shared.tag(s.action) if s.action else shared.NO_CANDIDATE}</td>",
    ]
    return f"<tr>{''.join(cells)}</tr>"


def _cell(s: SiteRecord, key: str) -> str:
    """Hit rates in per cent to 1 decimal, errors in pixels to 2."""
    value = shared.figure_of(s.evaluation, key)
    if value is None:
        return "-"
    return f"{value:.1f} %" if METRICS[key] == "higher" else f"{value:.2f}"


def _site_section(s: SiteRecord) -> str:
    e = html.escape
    return "\n".join(
        [
            f'<section class="task" id="site-{e(s.name)}">',
            f"<h2>{e(s.name)}</h2>",
            f"<p>Network: {e(_model_line(s))}. Production: {e(s.production or 'none')}.</p>",
            f"<p>This run: {e(s.deployed or 'no candidate from this run')}</p>",
            _examples(s),
            '<div class="charts">',
            *_curves(s),
            "</div>",
            "<h3>Production history</h3>",
            shared.events_table(s.events),
            "</section>",
        ]
    )


def _model_line(s: SiteRecord) -> str:
    if s.model is None:
        return "none trained in this run"
    size = f", {s.parameters:,} parameters" if s.parameters else ""
    return f"{s.model}{size}, {s.epochs_run} epochs"


def _examples(s: SiteRecord) -> str:
    if not s.examples:
        return shared.no_figure(f"{s.name}: no held-out captchas drawn (not evaluated).")
    images = "".join(
        f'<img alt="{html.escape(s.name)}: held-out captcha {i + 1}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        for i, png in enumerate(s.examples)
    )
    return (
        '<h3>Held-out captchas</h3><p class="note">True points: green rings; predicted: red '
        f'crosses.</p><div class="charts">{images}</div>'
    )


def _curves(s: SiteRecord) -> list[str]:
    if not s.history:
        return [shared.no_figure(f"{s.name}: no training curves in this run.")]
    h = s.history
    charts = [shared.loss_chart(s.name, h, "loss (focal + offset)")]
    rates = [(r["epoch"], r["lr"]) for r in h if r.get("lr") is not None]
    if rates:
        top = max(lr for _, lr in rates) * 1.1
        title = f"{s.name}: learning rate per epoch"
        charts.append(
            shared.epoch_chart(title, "learning rate", [Series("lr", rates, LR)], (0, top))
        )
    mae = [(r["epoch"], r["val_mae_px"]) for r in h if r.get("val_mae_px") is not None]
    if mae:
        ys = [y for _, y in mae]
        series = [Series("validation MAE", mae, "#1565c0")]
        title = f"{s.name}: validation MAE per epoch"
        charts.append(shared.epoch_chart(title, "px", series, shared.padded(0, max(ys))))
    hits = [
        Series(key.removeprefix("val_").replace("_le_", "@").removesuffix("px"), points, color)
        for key, color in HITS.items()
        if (points := [(r["epoch"], r[key]) for r in h if r.get(key) is not None])
    ]
    if hits:
        title = f"{s.name}: validation hit rates per epoch"
        charts.append(shared.epoch_chart(title, "% of captchas", hits, (0.0, 100.0)))
    return charts
