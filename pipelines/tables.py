"""What `fleet table` shows of one family: its own columns, a row per scope, a summary line,
and the record `--json` prints.

Each family's card names the function that reads it from the family's pipeline outputs
(`TABLE`, pipelines/families.py), so that the command knows no family's columns; only JSON
is read, never a model, so that a table costs none of the models' libraries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import DataError
from pipelines.fleet import complete_devices
from pipelines.status import Sources
from registry.tables import cell


class MissingOutputs(DataError):
    """What a family's view needs is not there, or not as its stage writes it: the family's
    pipeline has not run here (or must run again)."""


@dataclass(frozen=True)
class Column:
    key: str  # in each row's figures
    title: str
    fmt: str = "{}"


@dataclass(frozen=True)
class FamilyTable:
    header: list[str]
    rows: list[list[str]]
    summary: str | None  # the line under the table
    record: dict[str, Any]  # for --json, the figures unrounded


def build(
    columns: Iterable[Column],
    figures: Iterable[Mapping[str, Any]],
    summary: str | None,
    record: dict[str, Any],
) -> FamilyTable:
    """A table of `figures` (one mapping per row) in `columns`; a missing figure shows as '-'."""
    columns = list(columns)
    rows = [[cell(c.fmt, row.get(c.key)) for c in columns] for row in figures]
    return FamilyTable([c.title for c in columns], rows, summary, record)


def read_record(path: Path) -> dict[str, Any]:
    """A JSON object a stage wrote; MissingOutputs naming the file otherwise."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise MissingOutputs(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise MissingOutputs(f"{path}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise MissingOutputs(f"{path}: expected a JSON object, not {type(data).__name__}")
    return data


def required(path: Path) -> Path:
    """`path`, when it is a file; MissingOutputs otherwise (the family is not set up here)."""
    if not path.is_file():
        raise MissingOutputs(f"{path}: no such file")
    return path


def evaluated(scopes: Path) -> dict[str, dict[str, Any]]:
    """Scope -> its figures in the last evaluation, each in `scopes`/{scope}/summary.json (an
    evaluate stage's, pipelines/fleet.py); none for a scope whose record is unreadable (status
    still shows its versions and bundle)."""
    found = {}
    for scope in complete_devices(scopes):
        try:
            found[scope] = read_record(scopes / scope / "summary.json")
        except MissingOutputs:
            continue
    return found


def scope_table(
    columns: Iterable[Column],
    folder: Path,
    evaluation: Path,
    kind: str,
    row: Callable[[Path, Path], dict[str, Any]],
    summary: Callable[[dict[str, Any]], str | None],
) -> FamilyTable:
    """A family's table as its evaluate stage left it in `evaluation` (eval/metrics.json and
    eval/{kind}/{scope}/): a `row(models/{scope}, eval/{kind}/{scope})` per scope it
    finished, its `summary` of metrics.json under them; --json gives both unrounded."""
    over = read_record(evaluation / "metrics.json")
    rows = {
        scope: row(folder / "models" / scope, evaluation / kind / scope)
        for scope in complete_devices(evaluation / kind)
    }
    return build(columns, rows.values(), summary(over), {"fleet": over, kind: rows})


def scope_sources(family: Any, folder: Path, scopes: Iterable[str], kind: str) -> Sources:
    """What `fleet status` reads of a family whose pipeline is in `folder` (its card
    `family`): the `scopes` its data holds, the figures of its last evaluation (eval/{kind}/),
    its deploy/models and its reports."""
    return Sources(
        family.FAMILY,
        family.SCOPE,
        frozenset(scopes),
        evaluated(folder / "eval" / kind),
        folder / "deploy" / "models",
        folder / "reports",
        tuple(family.STAGES),
    )
