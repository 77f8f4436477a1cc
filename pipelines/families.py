"""What the stages ask of a model family, found through an entry point, never imported by name.

The twin of `registry.families`: a family (a package `pipelines/<family>/`) is found by its
name through the entry point group `pipelines.families` (pyproject.toml). The module it
points at is a card of names, so that finding a family imports none of its work:
- `FAMILY`: its name, the first component of its registered names;
- `METRICS`: each metric it reports -> "higher" or "lower" (which way is better); the first
  is its headline, the one `fleet status` shows;
- `PARAMS`: "module:function", `load_params(path)`: its params, typed and checked;
- `GENERATE`: "module:function", `generate(out, params) -> {scope: what was written}`;
- `STAGES`: stage name -> "module:Class", the class that does the stage's work per scope.
  It declares the stage's `ARGUMENTS` (positional paths) and `OPTIONS` (option -> default
  path), is made from those paths, and gives `work(params) -> {scope: fleet.Outcome}`;
  `describe(report)` (a line per scope) and `extra(report)` (what the stage adds to its
  report) are optional.
- `SCORE`: "module:function", `score(bundle, inputs, store) -> Scored`: new input (files)
  scored with one of its bundles, as `fleet score` prints it; a bundle that cannot be
  loaded raises an IntegrityError (pipelines.errors or registry.errors), a bad input is
  that input's failure and the others go on.
- `FOLDER`: its pipeline's folder (dvc.yaml, params.yaml, its outputs), from the project's
  root: `fleet table` and `fleet status` look there;
- `TABLE`: "module:function", `table(folder, evaluation=None) -> pipelines.tables.FamilyTable`:
  a row per scope of its last run in its own columns and a summary line, from its outputs
  in `folder` (its evaluate stage's in `evaluation` when given); `tables.MissingOutputs`
  when they are not there;
- `STATUS`: "module:function", `status(folder) -> pipelines.status.Sources`: its registered
  name, the scopes its data holds, their last figures, its deploy folder and its reports;
  `tables.MissingOutputs` when its params file is not there;
- `SCOPE`: what one of its models is for ("device", "task"), the key of its rows;
- `FIGURES`: in `FOLDER`, the file of each scope's figures of a run, which git keeps with
  every experiment: `fleet compare` reads it at two revisions;
- `TITLES`: metric -> its column title (`fleet compare`);
- `DRAWS` (optional, False when absent): its `score` also takes `draw_to`, a folder for a
  copy of each input with its answer drawn (`fleet score --draw`).
`stages/` runs whichever family it is given (`--family`, the acoustic one by default) and
knows none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from pipelines.errors import ParamError

GROUP = "pipelines.families"
DEFAULT = "acoustic"  # the family a stage runs when none is named (the project's first)


class Stage(Protocol):
    ARGUMENTS: tuple[str, ...]
    OPTIONS: Mapping[str, str]

    def __init__(self, paths: Mapping[str, Path]) -> None: ...

    def work(self, params: Any) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Scored:
    """What a family's `score` gave, in the family's own columns: `rows` for the table
    (`header`'s cells), `records` for --json and --csv (one per row, the values unrounded)."""

    title: str  # which scope and model the bundle is
    header: tuple[str, ...]
    rows: list[list[Any]]
    records: list[dict[str, Any]]
    warnings: list[str]  # "FILE: what", each printed as a warning
    failed: bool  # some input could not be scored


class Family(Protocol):
    FAMILY: str
    METRICS: Mapping[str, str]
    PARAMS: str
    GENERATE: str
    STAGES: Mapping[str, str]
    SCORE: str
    FOLDER: str
    TABLE: str
    STATUS: str
    SCOPE: str
    FIGURES: str
    TITLES: Mapping[str, str]


def installed() -> dict[str, Callable[[], Any]]:
    """Family name -> a loader of its module, for every installed family."""
    return {point.name: point.load for point in entry_points(group=GROUP)}


def load(name: str) -> Family:
    """The family called `name`; ParamError naming the installed ones otherwise."""
    found = installed()
    if name not in found:
        raise ParamError(
            f"family {name!r} is not installed (installed: {', '.join(sorted(found)) or 'none'})"
        )
    return found[name]()


def stage(family: Family, name: str) -> type[Stage]:
    if name not in family.STAGES:
        raise ParamError(
            f"family {family.FAMILY} has no {name} stage (it has: {', '.join(family.STAGES)})"
        )
    return resolve(family.STAGES[name])


def resolve(ref: str) -> Any:
    """The object a card names as "module:attribute"."""
    module, _, attribute = ref.partition(":")
    return getattr(import_module(module), attribute)
