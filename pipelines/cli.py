"""`fleet`: look at a pipeline run and use what it deployed.

fleet table [--family F] [--json]               each family's results of its last run
fleet compare RUN_A RUN_B [--family F] [--json]  a family's per-scope figures of two runs
fleet status [--family F] [--json]              what runs where, and every disagreement
fleet score BUNDLE INPUT... [--json|--csv]      score new input with a deployed bundle
fleet daily [--day YYYYMMDD | --days-ago N]     the daily job: fine-tune, gate, promote
fleet daily --reset                             params.yaml back to a full training
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from registry.tables import cell, render

if TYPE_CHECKING:
    from pipelines.status import FamilyStatus
    from pipelines.tables import FamilyTable

View = TypeVar("View")  # what a family's card gives a command to show of it

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
def table(
    family: Annotated[
        str | None, typer.Option(help="one family (default: every one whose pipeline has run)")
    ] = None,
    evaluation: Annotated[
        Path | None,
        typer.Option(help="the evaluate stage's folder of one family (--family, else acoustic)"),
    ] = None,
    project: Annotated[Path, typer.Option(help="the project's root")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Each family's figures of its last run, a row per scope, in its own columns: acoustic
    per device windows, epochs, validation loss, threshold, AUC, pAUC, F1; tabular per task
    its model, rows, epochs, RMSE, MAE, R², MAPE and the training mean's RMSE and R²."""
    from pipelines import families

    if evaluation is not None and family is None:
        family = families.DEFAULT
    found = _each_family(
        family, project, lambda card, folder: families.resolve(card.TABLE)(folder, evaluation)
    )
    _show(found, family is not None, as_json, lambda t: t.record, _table_text)


def _table_text(table: FamilyTable) -> str:
    text = render(table.header, table.rows)
    return f"{text}\n\n{table.summary}" if table.summary else text


@app.command()
def compare(
    first: Annotated[str, typer.Argument(help="an experiment, a git revision or `workspace`")],
    second: Annotated[str, typer.Argument(help="the same, to compare with FIRST")],
    family: Annotated[str, typer.Option(help="the family whose runs to compare")] = "acoustic",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Per scope, each of the family's metrics in two runs side by side, with the change,
    the worst change of its first metric first: acoustic per device AUC and pAUC, tabular
    per task RMSE, MAE, R² and MAPE.

    Example: `fleet compare workspace urban-dean` (names from `dvc exp show`),
    `fleet compare HEAD tab-a --family tabular`"""
    from pipelines import compare as runs
    from pipelines import families
    from pipelines.errors import DataError, ParamError

    try:
        card = families.load(family)
        figures = Path(card.FOLDER) / card.FIGURES
        found = [runs.per_scope(run, figures, card.SCOPE) for run in (first, second)]
    except ParamError as exc:
        typer.echo(f"error: --family: {exc}", err=True)
        raise typer.Exit(2) from exc
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    rows = runs.compare(*found, card.METRICS, card.SCOPE)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    columns = [
        (f"{k}_{s}", f"{card.TITLES.get(k, k)} {t}")
        for k in card.METRICS
        for s, t in (("a", first), ("b", second), ("change", "change"))
    ]
    table = [
        [
            r[card.SCOPE],
            *(cell("{:+.3f}" if k.endswith("change") else "{:.3f}", r[k]) for k, _ in columns),
        ]
        for r in rows
    ]
    typer.echo(render([card.SCOPE, *(title for _, title in columns)], table))


@app.command()
def status(
    family: Annotated[
        str | None, typer.Option(help="one family (default: every one found here)")
    ] = None,
    project: Annotated[Path, typer.Option(help="the project's root")] = Path("."),
    store: Annotated[Path | None, typer.Option(help="the model store folder")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Per scope of each family: production version and since when, the deployed bundle,
    the latest candidate and the gate's verdict on it, the family's headline metric in the
    last evaluation (acoustic AUC, tabular RMSE), and every disagreement."""
    from pipelines import families
    from pipelines.status import fleet_status
    from pipelines.tables import MissingOutputs
    from registry.api import Registry
    from registry.store import locate

    registry = Registry(store or locate(cwd=project))  # the project's, as its stages find it

    def of(card: Any, folder: Path) -> FamilyStatus:
        found = fleet_status(
            registry, families.resolve(card.STATUS)(folder), next(iter(card.METRICS))
        )
        if not found.rows:
            raise MissingOutputs(f"nothing registered, no {found.noun} in its data in {folder}/")
        return found

    _show(
        _each_family(family, project, of),
        family is not None,
        as_json,
        lambda found: found.records(),
        _status_text,
    )


def _status_text(found: FamilyStatus) -> str:
    header = ["production", "since", "bundle", "candidate", "gate", found.headline.upper()]
    rows = [
        [
            s.scope,
            s.production,
            (s.since or "-")[:16],
            s.bundle,
            s.candidate,
            s.gate,
            cell("{:.3f}", s.figure),
            "; ".join(s.flags) or "ok",
        ]
        for s in found.rows
    ]
    return render([found.noun, *header, "flags"], rows)


def _each_family(
    family: str | None, project: Path, view: Callable[[Any, Path], View]
) -> list[tuple[str, View]]:
    """(name, its view) of the family asked for, else of every installed one (acoustic
    first) whose pipeline has run in `project`, with a note for each that has not."""
    from pipelines import families
    from pipelines.errors import DataError, ParamError
    from pipelines.tables import MissingOutputs
    from registry.errors import RegistryError

    try:
        cards = [families.load(family)] if family else _every_family()
    except ParamError as exc:
        _fail(2, f"--family: {exc}")
    found = []
    for card in cards:
        name, folder = card.FAMILY, project / card.FOLDER
        try:
            found.append((name, view(card, folder)))
        except MissingOutputs as exc:
            if family is not None:
                _fail(1, f"{name}: {exc}; {_to_do(card.FOLDER, folder)}")
            typer.echo(f"note: {name} skipped: {exc}; {_to_do(card.FOLDER, folder)}", err=True)
        except (ParamError, DataError, RegistryError) as exc:
            _fail(1, f"{name}: {exc}")
    if not found:
        _fail(1, f"{project}: no family's pipeline has run here")
    return found


def _show(
    found: list[tuple[str, View]],
    one: bool,
    as_json: bool,
    record: Callable[[View], Any],
    text: Callable[[View], str],
) -> None:
    """The family asked for as it is (its own JSON), else each under a line naming it (JSON:
    family -> its own)."""
    if as_json:
        data = record(found[0][1]) if one else {name: record(view) for name, view in found}
        typer.echo(json.dumps(data, indent=2))
        return
    for i, (name, view) in enumerate(found):
        if not one:
            typer.echo(("\n" if i else "") + f"== {name} ==")
        typer.echo(text(view))


def _every_family() -> list[Any]:
    """Every installed family's card, the default one first."""
    from pipelines import families

    names = sorted(families.installed(), key=lambda name: (name != families.DEFAULT, name))
    return [families.load(name) for name in names]


def _to_do(relative: str, folder: Path) -> str:
    """What makes a family's outputs: the command that runs its pipeline from the project's
    root, when the pipeline is there."""
    pipeline = Path(relative) / "dvc.yaml"
    if not (folder / "dvc.yaml").is_file():
        return f"no {folder / 'dvc.yaml'}: its pipeline is not in this project"
    return "run `dvc repro`" if Path(relative) == Path(".") else f"run `dvc repro {pipeline}`"


def _fail(code: int, line: str) -> NoReturn:
    typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code)


@app.command()
def score(
    bundle_dir: Annotated[
        Path,
        typer.Argument(help="a deployed bundle: deploy/models/DEV, tabular/deploy/models/TASK"),
    ],
    inputs: Annotated[
        list[Path],
        typer.Argument(help="what to score: audio clips, a task's CSV or .npz, or captchas"),
    ],
    store: Annotated[
        Path | None, typer.Option(help="the model store, whose devices name device folders")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="print CSV (one row per record)")] = False,
    draw: Annotated[
        Path | None,
        typer.Option(help="a folder for a copy of each input with its answer drawn (images)"),
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="exit 1 when a warning says an answer may not hold (scripts)")
    ] = False,
) -> None:
    """Score new input with a deployed bundle of any family, which its manifest names.

    An acoustic device's bundle: clip -> score, threshold, verdict; it warns about a clip
    unlike the ones the model was trained on (sample rate, channels, duration) or under the
    folder of another device the model store knows (it reads the store, and changes nothing
    in it). A tabular task's bundle: each row of a CSV (the model's feature columns, in any
    order) or an .npz (X) -> its prediction, beside the actual value when the file has the
    target. A keypoint site's bundle: each PNG or JPEG captcha -> the gap's and the slider's
    centre in its pixels; `--draw DIR` writes a copy of each with the two points drawn.
    Exit 1 when an input could not be scored, and with --strict when a warning was given.
    Example: `fleet score tabular/deploy/models/Q1 new_rows.csv --csv > predicted.csv`"""
    from pipelines import errors, families
    from registry import errors as registry_errors

    refused = (errors.IntegrityError, registry_errors.RegistryError, KeyError, OSError)
    drawing = {} if draw is None else {"draw_to": draw}
    if not bundle_dir.is_dir():
        _fail(2, f"{bundle_dir}: no such bundle{_close_folder(bundle_dir)}")
    try:
        family = _family_of(bundle_dir)
        if draw is not None and not getattr(family, "DRAWS", False):
            _fail(2, f"--draw: a {family.FAMILY} bundle's answers are not drawn on its input")
        scored = families.resolve(family.SCORE)(bundle_dir, inputs, store, **drawing)
    except (*refused, errors.ParamError) as exc:
        typer.echo(f"error: {bundle_dir}: cannot load the bundle: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(scored.records, indent=2))
    elif as_csv:
        typer.echo(_csv(scored.records), nl=False)
    else:
        typer.echo(scored.title, err=True)
        typer.echo(render(scored.header, scored.rows))
    for warning in scored.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if scored.failed or (strict and scored.warnings):
        raise typer.Exit(1)


def _close_folder(path: Path) -> str:
    """A hint for a mistyped folder: its closest sibling, as model names get theirs."""
    import difflib

    parent = path.parent
    found = parent.iterdir() if parent.is_dir() else ()
    siblings = [p.name for p in found if p.is_dir() and not p.name.startswith(".")]
    close = difflib.get_close_matches(path.name, siblings, n=1, cutoff=0.6)
    return f"; did you mean {parent / close[0]}?" if close else ""


def _family_of(bundle_dir: Path) -> Any:
    """The family whose bundle `bundle_dir` is: the first part of the model its manifest
    names; a candidate's bundle (the acoustic deploy stage's, which names no model yet) is
    the default family's."""
    from pipelines import families
    from registry.export import read_bundle
    from registry.naming import parse_name, parse_ref

    model = read_bundle(bundle_dir).manifest.get("model") or ""
    return families.load(parse_name(parse_ref(model).name).family if model else families.DEFAULT)


def _csv(records: list[dict[str, Any]]) -> str:
    """Records as CSV, their keys the header; a list of values (warnings) joined by '; '."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]) if records else [])
    writer.writeheader()
    for record in records:
        writer.writerow(
            {k: "; ".join(v) if isinstance(v, list | tuple) else v for k, v in record.items()}
        )
    return out.getvalue()


@app.command()
def daily(
    ctx: typer.Context,
    day: Annotated[str | None, typer.Option(help="the date folder to train on, YYYYMMDD")] = None,
    days_ago: Annotated[
        int, typer.Option(min=0, help="else the day this many days before today")
    ] = 1,
    init_from: Annotated[
        str, typer.Option(help="scratch | production | NAME:vN,... (see train.init_from)")
    ] = "production",
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="run nothing: put params.yaml back to a full training (day all, scratch)",
        ),
    ] = False,
    project: Annotated[Path, typer.Option(help="the project (holds params.yaml)")] = Path("."),
) -> None:
    """The daily job: every device fine-tuned from production on the day's audio, gated,
    promoted or kept. Exit status 0 done, 1 a stage or device failed, 3 fleet-wide
    degradation (daily.degraded_min, daily.degraded_fraction), 4 nothing to learn from (no
    device had a candidate). The day and init_from stay in params.yaml: --reset."""
    from datetime import date

    from pipelines import daily as job
    from pipelines.errors import ParamError

    # given on the command line, even with the default's value
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("day", "days_ago", "init_from")
        if (source := ctx.get_parameter_source(name)) and source.name != "DEFAULT"
    ]
    if reset and given:
        _fail(2, f"--reset runs nothing: it takes no {', '.join(given)}")
    if day is not None and not (len(day) == 8 and day.isdigit()):
        raise typer.BadParameter(f"--day {day!r}: expected a date YYYYMMDD")
    when = job.day_of(day, days_ago, date.today())
    try:
        if reset:
            typer.echo(job.reset(project))
            return
        outcome = job.run(project, when, init_from)
    except (ParamError, OSError) as exc:
        _fail(1, str(exc))
    typer.echo(f"daily {when}: " + ("ran" if outcome.ran else "already done, nothing to run"))
    for line in (*outcome.lines, outcome.verdict):
        typer.echo(line)
    if outcome.ran:
        typer.echo(
            f"commit the day: git add {' '.join(job.RECORD)} && git commit -m 'daily {when}'"
        )
    typer.echo(job.left_in_params(when, init_from))
    raise typer.Exit(outcome.status)
