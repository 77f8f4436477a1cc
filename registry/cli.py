"""`registry`: the command line over registry.api, one command per API call.

Every command takes --store (default ./model_store, or $MODEL_STORE). Read commands print a
table, or JSON with --json. A refused operation prints one line naming what is wrong, exits
non-zero and leaves the store as it was.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from registry.api import Registry
from registry.errors import RegistryError
from registry.tables import render

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

Store = Annotated[
    Path | None, typer.Option("--store", envvar="MODEL_STORE", help="the model store folder")
]
Json = Annotated[bool, typer.Option("--json", help="print JSON")]
Alias = Annotated[str, typer.Option(help="the alias")]
Reason = Annotated[str, typer.Option(help="why, recorded in the event")]


def _registry(store: Path | None) -> Registry:
    return Registry(store or "model_store")


def _out(data: Any, as_json: bool, header: list[str], rows: list[list[Any]]) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else render(header, rows))


def _version_rows(metas: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            m["name"],
            m["version"],
            ",".join(m.get("aliases", [])),
            m["created"][:19],
            m.get("metrics", {}).get("auc"),
        ]
        for m in metas
    ]


VERSION_HEADER = ["name", "version", "aliases", "created", "auc"]


@app.command()
def register(
    folder: Annotated[Path, typer.Argument(help="folder with model.pth and its artifacts")],
    family: Annotated[str, typer.Option(help="model family, e.g. acoustic")],
    scope: Annotated[str, typer.Option(help="scope, e.g. the device code")],
    model_type: Annotated[str, typer.Option(help="model type, e.g. convae")],
    metrics: Annotated[Path | None, typer.Option(help="JSON file of metrics")] = None,
    params: Annotated[Path | None, typer.Option(help="JSON or YAML file of params")] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Register the artifacts in FOLDER as the next version (same bytes: same version)."""
    meta = _registry(store).register(
        folder, family, scope, model_type, metrics=_load(metrics), params=_load(params)
    )
    word = "already registered as" if meta.get("existing") else "registered"
    _out(meta, as_json, ["", "name", "version"], [[word, meta["name"], meta["version"]]])


@app.command("list")
def list_(
    name: Annotated[str | None, typer.Option(help="only this model")] = None,
    scope: Annotated[str | None, typer.Option(help="only this scope (device)")] = None,
    alias: Annotated[str | None, typer.Option(help="only versions holding this alias")] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """List versions, filtered by name, scope or alias."""
    metas = _registry(store).list(name=name, scope=scope, alias=alias)
    _out(metas, as_json, VERSION_HEADER, _version_rows(metas))


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:vN or NAME@alias")],
    store: Store = None,
    as_json: Json = False,
) -> None:
    """One version: its artifacts, metrics, params and lineage."""
    meta = _registry(store).get(ref)
    rows = [[key, json.dumps(meta[key], sort_keys=True)] for key in sorted(meta)]
    _out(meta, as_json, ["field", "value"], rows)


@app.command()
def promote(
    name: str,
    version: int,
    alias: Alias = "production",
    reason: Reason = "",
    force: Annotated[bool, typer.Option(help="override a failing gate (recorded)")] = False,
    gate_params: Annotated[
        Path, typer.Option(help="params file whose deploy.gate sets floors and rollback_factor")
    ] = Path("params.yaml"),
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Point ALIAS at VERSION; to production only if the gate passes (or --force)."""
    floors, factor = _gate(gate_params)
    record = _registry(store).promote(
        name, version, alias, reason, force, floors=floors, rollback_factor=factor
    )
    rows = [
        [
            record["name"],
            record.get("alias"),
            record.get("from_version"),
            record.get("to_version", version),
        ]
    ]
    _out(record, as_json, ["name", "alias", "from", "to"], rows)


@app.command()
def rollback(
    name: str,
    alias: Alias = "production",
    reason: Reason = "",
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Return ALIAS to the version that held it before (by history)."""
    record = _registry(store).rollback(name, alias, reason)
    rows = [[record["name"], record["alias"], record["from_version"], record["to_version"]]]
    _out(record, as_json, ["name", "alias", "from", "to"], rows)


@app.command()
def history(name: str, store: Store = None, as_json: Json = False) -> None:
    """Every event of a model, oldest first."""
    records = _registry(store).history(name)
    rows = [
        [
            r["time"][:19],
            r["type"],
            r["version"],
            r.get("alias"),
            r.get("from_version"),
            r["actor"],
            r["reason"],
        ]
        for r in records
    ]
    _out(records, as_json, ["time", "event", "version", "alias", "from", "actor", "reason"], rows)


@app.command()
def diff(name: str, v1: int, v2: int, store: Store = None, as_json: Json = False) -> None:
    """Params and metrics of two versions side by side."""
    result = _registry(store).diff(name, v1, v2)
    rows = [
        [section, key, a, b, "" if a == b else "*"]
        for section, values in result.items()
        for key, (a, b) in values.items()
    ]
    _out(result, as_json, ["section", "key", f"v{v1}", f"v{v2}", "differs"], rows)


@app.command()
def verify(
    name: Annotated[str | None, typer.Argument()] = None, store: Store = None, as_json: Json = False
) -> None:
    """Recompute every sha256; list what does not match; exit 1 if anything does not."""
    problems = _registry(store).verify(name)
    if as_json:
        typer.echo(json.dumps(problems, indent=2))
    elif problems:
        typer.echo(
            render(
                ["name", "version", "file", "problem"],
                [[p["name"], p["version"], p["file"], p["problem"]] for p in problems],
            )
        )
    else:
        typer.echo("all artifacts match their recorded sha256")
    if problems:
        raise typer.Exit(1)


@app.command()
def export(
    name: str,
    to: Annotated[Path, typer.Option(help="target folder of the inference layout")],
    alias: Alias = "production",
    keep_backups: Annotated[int, typer.Option(min=0, help="earlier bundles to keep")] = 3,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Write the inference layout of NAME@ALIAS to TO/{device}/, atomically."""
    target = _registry(store).export(f"{name}@{alias}", to, keep_backups)
    typer.echo(json.dumps({"exported": str(target)}) if as_json else str(target))


@app.command()
def reindex(store: Store = None, as_json: Json = False) -> None:
    """Rebuild versions.json and the index from the store and events.jsonl."""
    latest = _registry(store).reindex()
    typer.echo(json.dumps(latest, sort_keys=True) if as_json else f"reindexed {len(latest)} models")


@app.command()
def gc(
    keep: Annotated[int, typer.Option(min=1, help="newest versions to keep per model")],
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Delete old versions that hold no alias and are not among the newest KEEP."""
    removed = _registry(store).gc(keep)
    if as_json:
        typer.echo(json.dumps(removed))
    else:
        typer.echo("\n".join(removed) if removed else "nothing to remove")


def _load(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    import yaml  # JSON is YAML too

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise typer.BadParameter(f"{path}: cannot read ({exc})") from exc
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path}: expected a mapping")
    return data


def _gate(path: Path) -> tuple[dict[str, float], float | None]:
    if not path.is_file():
        return {}, None
    gate = ((_load(path) or {}).get("deploy") or {}).get("gate") or {}
    return dict(gate.get("floors") or {}), gate.get("rollback_factor")


def main() -> None:
    """Entry point: a RegistryError becomes one line on stderr and exit status 1."""
    try:
        app()
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
