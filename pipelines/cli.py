"""`fleet`: look at a pipeline run and use what it deployed.

fleet table [--evaluation eval] [--json]        per-device results of the last run
fleet compare RUN_A RUN_B [--json]              per-device AUC and pAUC of two runs
fleet status [--json]                           what runs where, and every disagreement
fleet score BUNDLE_DIR CLIP... [--json]         score audio with a deployed bundle
fleet daily [--day YYYYMMDD | --days-ago N]     the daily job: fine-tune, gate, promote
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from registry.tables import render

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

COLUMNS = (
    ("device", "device", "{}"),
    ("windows", "windows", "{}"),
    ("epochs", "epochs", "{}"),
    ("val_loss", "val loss", "{:.5f}"),
    ("threshold", "threshold", "{:.5f}"),
    ("auc", "AUC", "{:.3f}"),
    ("pauc", "pAUC", "{:.3f}"),
    ("f1", "F1", "{:.3f}"),
)


@app.command()
def table(
    evaluation: Annotated[Path, typer.Option(help="the evaluate stage's folder")] = Path("eval"),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Per-device table: windows, epochs run, validation loss, threshold, AUC, pAUC, F1."""
    from pipelines.acoustic.figures import read_devices

    try:
        devices = read_devices(evaluation / "plots")
        figures = json.loads((evaluation / "metrics.json").read_text())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(
            f"{evaluation}: cannot read metrics ({exc}); run `dvc repro`"
        ) from exc
    if as_json:
        typer.echo(json.dumps({"fleet": figures, "devices": devices}, indent=2))
        return
    rows = [[_cell(fmt, m.get(key)) for key, _, fmt in COLUMNS] for m in devices.values()]
    typer.echo(render([title for _, title, _ in COLUMNS], rows))
    if figures.get("auc_mean") is not None:
        typer.echo(
            f"\n{figures['devices']} devices, mean AUC {figures['auc_mean']:.3f}, "
            f"min AUC {figures['auc_min']:.3f}"
        )


@app.command()
def compare(
    first: Annotated[str, typer.Argument(help="an experiment, a git revision or `workspace`")],
    second: Annotated[str, typer.Argument(help="the same, to compare with FIRST")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Per-device AUC and pAUC of two runs side by side, with the change, worst first.

    Example: `fleet compare workspace urban-dean` (names from `dvc exp show`)"""
    from pipelines import compare as runs
    from pipelines.errors import DataError

    try:
        rows = runs.compare(runs.per_device(first), runs.per_device(second))
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    rows.sort(key=lambda r: (r["auc_change"] is None, r["auc_change"] or 0.0))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    columns = [
        (f"{k}_{s}", f"{name} {t}")
        for k, name in (("auc", "AUC"), ("pauc", "pAUC"))
        for s, t in (("a", first), ("b", second), ("change", "change"))
    ]
    table = [
        [
            r["device"],
            *(_cell("{:+.3f}" if k.endswith("change") else "{:.3f}", r[k]) for k, _ in columns),
        ]
        for r in rows
    ]
    typer.echo(render(["device", *(title for _, title in columns)], table))


@app.command()
def status(
    params: Annotated[Path, typer.Option(help="the pipeline's params file")] = Path("params.yaml"),
    deploy: Annotated[Path, typer.Option(help="the deploy folder")] = Path("deploy/models"),
    devices: Annotated[Path, typer.Option(help="per-device figures of the last evaluation")] = Path(
        "eval/plots/devices.json"
    ),
    reports: Annotated[Path, typer.Option(help="the stages' reports")] = Path("reports"),
    store: Annotated[Path | None, typer.Option(help="the model store folder")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Per device: production version and since when, the deployed bundle, the latest
    candidate and the gate's verdict on it, the last AUC, and every disagreement."""
    from pipelines.errors import ParamError
    from pipelines.params import load_params
    from pipelines.status import Sources, fleet_status
    from registry.api import Registry
    from registry.errors import RegistryError

    try:
        p = load_params(params)
        found = fleet_status(
            Sources(Registry(store), p.deploy.family, Path(p.data.root), deploy, devices, reports)
        )
    except (ParamError, RegistryError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps([s.as_dict() for s in found], indent=2))
        return
    rows = [
        [
            s.device,
            s.production,
            (s.since or "-")[:16],
            s.bundle,
            s.candidate,
            s.gate,
            _cell("{:.3f}", s.auc),
            "; ".join(s.flags) or "ok",
        ]
        for s in found
    ]
    header = ["device", "production", "since", "bundle", "candidate", "gate", "AUC", "flags"]
    typer.echo(render(header, rows))


@app.command()
def score(
    bundle_dir: Annotated[Path, typer.Argument(help="a deployed device folder, deploy/models/DEV")],
    clips: Annotated[list[Path], typer.Argument(help="audio files to score")],
    store: Annotated[
        Path | None, typer.Option(help="the model store, whose devices name device folders")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Score clips with a deployed bundle: clip -> score, threshold, verdict.

    Says which device and model the bundle is, and warns about a clip unlike the ones the
    model was trained on (sample rate, channels, duration) or under the folder of another
    device the model store knows (it reads the store, and changes nothing in it)."""
    from pipelines.acoustic.bundle import load_bundle, score_file
    from pipelines.errors import IntegrityError

    try:
        bundle = load_bundle(bundle_dir)
    except (IntegrityError, KeyError, OSError) as exc:
        typer.echo(f"error: {bundle_dir}: cannot load the bundle: {exc}", err=True)
        raise typer.Exit(2) from exc
    devices = _known_devices(store)  # of its family: another family's scopes are no folders
    verdicts = [score_file(bundle, clip, devices) for clip in clips]
    model = bundle.model or "a candidate bundle (not exported by the registry)"
    if as_json:
        found = [asdict(v) | {"device": bundle.device, "model": bundle.model} for v in verdicts]
        typer.echo(json.dumps(found, indent=2))
    else:
        typer.echo(f"device {bundle.device}: {model}", err=True)
        rows = [
            [
                v.file,
                _cell("{:.5f}", v.score),
                f"{v.threshold:.5f}",
                _verdict(v.anomalous, v.error),
                "; ".join(v.warnings),
            ]
            for v in verdicts
        ]
        typer.echo(render(["clip", "score", "threshold", "verdict", "warning"], rows))
    for v in verdicts:
        for warning in v.warnings:
            typer.echo(f"warning: {v.file}: {warning}", err=True)
    if any(v.error for v in verdicts):
        raise typer.Exit(1)


@app.command()
def daily(
    day: Annotated[str | None, typer.Option(help="the date folder to train on, YYYYMMDD")] = None,
    days_ago: Annotated[
        int, typer.Option(min=0, help="else the day this many days before today")
    ] = 1,
    init_from: Annotated[
        str, typer.Option(help="scratch | production | NAME:vN,... (see train.init_from)")
    ] = "production",
    project: Annotated[Path, typer.Option(help="the project (holds params.yaml)")] = Path("."),
) -> None:
    """The daily job: every device fine-tuned from production on the day's audio, gated,
    promoted or kept. Exit status 0 done, 1 a failure, 3 every candidate refused."""
    from datetime import date

    from pipelines import daily as job
    from pipelines import deploying
    from pipelines.errors import ParamError

    if day is not None and not (len(day) == 8 and day.isdigit()):
        raise typer.BadParameter(f"--day {day!r}: expected a date YYYYMMDD")
    when = job.day_of(day, days_ago, date.today())
    try:
        outcome = job.run(project, when, init_from)
    except (ParamError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"daily {when}: " + ("ran" if outcome.ran else "already done, nothing to run"))
    for line in outcome.lines:
        typer.echo(line)
    if outcome.status == job.DEGRADED:
        typer.echo(f"ERROR {deploying.DEGRADED}")
    if outcome.ran:
        typer.echo(
            f"commit the day: git add {' '.join(job.RECORD)} && git commit -m 'daily {when}'"
        )
    raise typer.Exit(outcome.status)


def _known_devices(store: Path | None) -> frozenset[str]:
    """The devices the model store has acoustic versions of; none, said in a warning, when
    it cannot be read (the clips are scored all the same)."""
    from pipelines.acoustic import FAMILY
    from registry.api import Registry
    from registry.errors import RegistryError

    try:
        return frozenset(m["scope"] for m in Registry(store).list() if m["family"] == FAMILY)
    except RegistryError as exc:
        typer.echo(f"warning: {exc}; clips not checked against device folders", err=True)
        return frozenset()


def _verdict(anomalous: bool | None, error: str) -> str:
    if error:
        return f"skipped: {error}"
    return "ANOMALY" if anomalous else "normal"


def _cell(fmt: str, value: object) -> str:
    return "-" if value is None else fmt.format(value)
