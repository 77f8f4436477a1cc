"""The `registry` command: one command per method of registry.api (as sqlite-utils does).

Errors: one line on stderr naming what is wrong, exit status 1 (2 for a usage error); with
--json, that line is JSON: {"error": {"type": ..., "message": ..., "status": ...}}.

No `from __future__ import annotations` here: typer reads every command's annotations at each
start, and compiling them from strings first more than doubles the time it takes to do so.
"""

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.exceptions import TyperException

from registry import card
from registry.api import Registry
from registry.errors import ExportError, NotFoundError, RegistryError, UsageError
from registry.naming import parse_name
from registry.tables import render

HELP = (
    "The model registry: every version of every device's model, its lineage, the aliases "
    "that say what runs (production), and the gate that guards production.\n\n"
    "Every pipeline run registers its candidates; `promote` moves production through the "
    "store's gate (`policy`, `set-policy`); `rollback` and `retire` undo; `export` ships "
    "production to a deploy folder. Every command takes --store (default: $MODEL_STORE, else "
    "model_store/ at the project root) and --json.\n\n"
    "Examples: `registry list --alias production`, "
    "`registry show acoustic_LT-2_convae@production`, `registry history acoustic_LT-2_convae`"
)
app = typer.Typer(add_completion=False, no_args_is_help=True, help=HELP)

Store = Annotated[Path | None, typer.Option("--store", help="the model store folder")]
Json = Annotated[bool, typer.Option("--json", help="print JSON")]
Alias = Annotated[str, typer.Option(help="the alias")]
Reason = Annotated[str, typer.Option(help="why, recorded in the event")]
Force = Annotated[
    bool, typer.Option(help="promote even though the gate refuses (needs --reason; recorded)")
]
KeepBackups = Annotated[int, typer.Option(min=1, help="earlier bundles to keep per device")]


def _existing(store: Path | None) -> Registry:
    """The registry of a store that exists: a read command on a missing store says so."""
    registry = Registry(store)
    if not registry.store.exists():
        raise NotFoundError(f"{registry.store.root}: no model store here (see --store)")
    return registry


def _out(data: Any, as_json: bool, header: list[str], rows: list[list[Any]]) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else render(header, rows))


def _version_rows(registry: Registry, metas: list[dict[str, Any]]) -> list[list[Any]]:
    gated = _gated(registry)
    return [
        [
            m["name"],
            m["version"],
            ",".join(m.get("aliases", [])),
            m["created"][:19],
            gated(m),
            (m.get("lineage") or {}).get("dvc_experiment"),
        ]
        for m in metas
    ]


def _gated(registry: Registry) -> Callable[[dict[str, Any]], str]:
    """A version's figures on the metrics its family's gate bounds (`auc 0.95`, `rmse 3.1`):
    what it is judged on, whichever family it is."""
    bounded: dict[str, list[str]] = {}

    def figures(meta: dict[str, Any]) -> str:
        family = meta["family"]
        if family not in bounded:
            policy = registry.policy(family)
            bounded[family] = [*policy["floors"], *policy.get("ceilings", {})]
        metrics = meta.get("metrics") or {}
        found = [
            (m, metrics[m]) for m in bounded[family] if isinstance(metrics.get(m), float | int)
        ]
        return " ".join(f"{metric} {value:.4g}" for metric, value in found)

    return figures


def _figure(value: Any) -> Any:
    """A gate figure as the tables show one: a float to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else value


VERSION_HEADER = ["name", "version", "aliases", "created", "gated metrics", "experiment"]
MOVE_HEADER = ["name", "alias", "from", "to", "gate"]


def _move_row(record: dict[str, Any]) -> list[Any]:
    gate = record.get("gate")
    verdict = "-" if gate is None else "passed" if gate["passed"] else "refused"
    if record.get("forced"):
        verdict += ", forced"
    return [
        record["name"],
        record.get("alias"),
        _from(record),
        record.get("to_version", record.get("version")),
        verdict,
    ]


def _from(record: dict[str, Any]) -> str | None:
    """The version an alias moved from, as NAME:vN: of the same model, or another's."""
    if record.get("replaced"):
        return record["replaced"]
    version = record.get("from_version")
    return None if version is None else f"{record['name']}:v{version}"


@app.command()
def register(
    folder: Annotated[
        Path,
        typer.Argument(
            help="folder of the version's files: model.* and the others its family declares"
        ),
    ],
    family: Annotated[str, typer.Option(help="model family, e.g. acoustic")],
    scope: Annotated[str, typer.Option(help="scope, e.g. the device code")],
    model_type: Annotated[str, typer.Option(help="model type, e.g. convae")],
    metrics: Annotated[Path | None, typer.Option(help="JSON file of metrics")] = None,
    params: Annotated[Path | None, typer.Option(help="JSON or YAML file of params")] = None,
    extra: Annotated[
        Path | None,
        typer.Option(help="JSON or YAML file of further metadata, e.g. a family's `inference`"),
    ] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Register the artifacts in FOLDER as the next version (same bytes: same version).

    Example: `registry register out/ --family acoustic --scope LT-2 --model-type convae`"""
    meta = Registry(store).register(
        folder,
        family,
        scope,
        model_type,
        metrics=_load(metrics),
        params=_load(params),
        extra=_load(extra),
    )
    word = "already registered as" if meta.get("existing") else "registered"
    _out(meta, as_json, ["", "name", "version"], [[word, meta["name"], meta["version"]]])


@app.command("list")
def list_(
    name: Annotated[str | None, typer.Option(help="only this model")] = None,
    scope: Annotated[str | None, typer.Option(help="only this scope (device)")] = None,
    alias: Annotated[str | None, typer.Option(help="only versions holding this alias")] = None,
    experiment: Annotated[
        str | None, typer.Option(help="only versions this DVC experiment registered")
    ] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """List versions, filtered by name, scope, alias or experiment.

    Example: `registry list --alias production` (what runs, per device)"""
    registry = _existing(store)
    metas = registry.list(name=name, scope=scope, alias=alias, experiment=experiment)
    _out(metas, as_json, VERSION_HEADER, _version_rows(registry, metas))


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:vN or NAME@alias")],
    verify: Annotated[
        bool, typer.Option(help="check its files against their recorded sha256; exit 1 if not")
    ] = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """One version as a model card: aliases, lineage, metrics, params, files.

    The params shown are those that differ from its parent (all of them without one); files
    with their size and the first digits of their sha256, and whether they were verified.

    Example: `registry show acoustic_LT-2_convae:v2 --verify` (or NAME@production, or NAME:
    the latest)"""
    registry = _existing(store)
    chain = registry.lineage(ref)
    ref = f"{chain[0]['name']}:v{chain[0]['version']}"
    problems = registry.verify_version(ref) if verify else None
    if as_json:
        checked = {"checked": verify} | ({"problems": problems} if verify else {})
        typer.echo(json.dumps(chain[0] | {"verification": checked}, indent=2, sort_keys=True))
    else:
        parent = chain[1] if len(chain) > 1 and not chain[1].get("missing") else None
        typer.echo(card.model_card(chain[0], parent, problems))
    if problems:
        raise typer.Exit(1)


@app.command()
def lineage(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:vN or NAME@alias")],
    store: Store = None,
    as_json: Json = False,
) -> None:
    """A version's ancestry: each version it was fine-tuned from, back to a full training.

    Example: `registry lineage acoustic_LT-2_convae@production`"""
    registry = _existing(store)
    chain = registry.lineage(ref)
    gated = _gated(registry)
    rows = [_lineage_row(m, gated) for m in chain]
    header = ["version", "started from", "day", "created", "gated metrics", "aliases"]
    _out(chain, as_json, header, rows)


def _lineage_row(meta: dict[str, Any], gated: Callable[[dict[str, Any]], str]) -> list[Any]:
    if meta.get("missing"):
        return [f"v{meta['version']}", "(no longer in the store)", "", "", "", ""]
    parent = meta["lineage"].get("parent_version")
    day = ((meta.get("params") or {}).get("data") or {}).get("day")
    return [
        f"v{meta['version']}",
        "scratch" if parent is None else f"fine-tuned from v{parent}",
        day,
        meta["created"][:19],
        gated(meta),
        ",".join(meta.get("aliases", [])),
    ]


@app.command()
def check(
    name: str, version: int, alias: Alias = "production", store: Store = None, as_json: Json = False
) -> None:
    """What the gate would decide on promoting VERSION now; exit 1 if it would refuse.

    Changes nothing. Example: `registry check acoustic_LT-2_convae 3`"""
    result = _existing(store).check(name, version, alias)
    rows = [["passed" if result.passed else "refused", r] for r in result.texts() or ["-"]]
    rows += [["figure", f"{key} = {_figure(value)}"] for key, value in result.figures.items()]
    rows += [["note", note] for note in result.notes]
    _out(result.as_dict(), as_json, ["verdict", "detail"], rows)
    if not result.passed:
        raise typer.Exit(1)


@app.command()
def promote(
    name: str,
    version: int,
    alias: Alias = "production",
    reason: Reason = "",
    force: Force = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Point ALIAS at VERSION; to production only through the store's gate (or --force).

    Example: `registry promote acoustic_LT-2_convae 3 --reason "checked by hand"`"""
    record = Registry(store).promote(name, version, alias, reason, force)
    _out(record, as_json, MOVE_HEADER, [_move_row(record)])


@app.command("promote-experiment")
def promote_experiment(
    experiment: Annotated[str, typer.Argument(help="the experiment's name in `dvc exp show`")],
    alias: Alias = "production",
    reason: Reason = "",
    force: Force = False,
    scope: Annotated[str | None, typer.Option(help="only this scope (device)")] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Promote every model a DVC experiment registered, each through the gate.

    If the gate refuses any, none moves. Example: `registry promote-experiment urban-dean`
    (the name `dvc exp show` gives)"""
    records = Registry(store).promote_experiment(experiment, alias, reason, force, scope)
    _out(records, as_json, MOVE_HEADER, [_move_row(r) for r in records])


@app.command()
def rollback(
    name: str,
    alias: Alias = "production",
    reason: Reason = "",
    export: Annotated[
        Path | None, typer.Option(help="also ship the version it returns to, to this deploy folder")
    ] = None,
    keep_backups: KeepBackups = 3,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Return ALIAS to the version that held it before (by history); with --export, ship it.

    Example: `registry rollback acoustic_LT-2_convae --reason "misses bearing clicks"
    --export deploy/models`"""
    registry = Registry(store)
    record = registry.rollback(name, alias, reason)
    shipped = f"not exported: `registry export --to DEPLOY_FOLDER {name}` ships it"
    if export is not None:
        try:
            record["exported"] = str(registry.export(f"{name}@{alias}", export, keep_backups))
        except RegistryError as exc:  # the alias has moved: say so beside why nothing shipped
            back = f"{name}@{alias} is back on v{record['to_version']} but not exported"
            raise ExportError(f"{back}: {exc}") from exc
        shipped = f"exported to {record['exported']}"
    _out(record, as_json, MOVE_HEADER, [_move_row(record)])
    if not as_json:  # a rollback moves the alias, not what a deploy folder serves
        typer.echo(f"{name}@{alias} {shipped}", err=True)


@app.command()
def retire(
    name: str,
    alias: Alias = "production",
    reason: Reason = "",
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Take ALIAS off NAME (its device leaves the fleet); its versions stay in the store.

    Example: `registry retire acoustic_LT-2_convae --reason "machine scrapped"`"""
    record = Registry(store).retire(name, alias, reason)
    _out(record, as_json, ["name", "alias", "retired"], [[name, alias, record["from_version"]]])


@app.command()
def history(name: str, store: Store = None, as_json: Json = False) -> None:
    """Every event of a model, oldest first, with the gate's verdicts.

    Events: registered, promoted (forced), refused, checked, rolled back, retired, archived;
    those of another model (a type that replaced it or was checked against it) name their
    version NAME:vN. Example: `registry history acoustic_LT-2_convae`"""
    records = _existing(store).history(name)
    own = str(parse_name(name))
    rows = [
        [
            r["time"][:19],
            r["type"] + (" (forced)" if r.get("forced") else ""),
            # another model's event: its candidate took (or would take) this one's alias
            r["version"] if r["name"] == own else f"{r['name']}:v{r['version']}",
            r.get("alias"),
            _from(r),
            r["actor"],
            _detail(r),
        ]
        for r in records
    ]
    header = ["time", "event", "version", "alias", "from", "actor", "detail"]
    _out(records, as_json, header, rows)


def _detail(record: dict[str, Any]) -> str:
    parts = [record["reason"]] if record.get("reason") else []
    if record.get("experiment"):
        parts.append(f"experiment {record['experiment']}")
    gate = record.get("gate")
    if gate and record["type"] == "checked":
        parts.append("the gate would " + ("pass it" if gate["passed"] else "refuse it"))
    if gate and not gate["passed"]:
        parts += gate["reasons"]
    return "; ".join(parts)


@app.command()
def diff(name: str, v1: int, v2: int, store: Store = None, as_json: Json = False) -> None:
    """The params and metrics that differ between two versions, one row per key.

    Example: `registry diff acoustic_LT-2_convae 1 2`"""
    result = _existing(store).diff(name, v1, v2)
    rows = [[key, card.shown(a), card.shown(b)] for key, (a, b) in result.items()]
    if as_json or rows:
        _out(result, as_json, ["key", f"v{v1}", f"v{v2}"], rows)
    else:
        typer.echo(f"v{v1} and v{v2} have the same params and metrics")


@app.command()
def verify(
    name: Annotated[str | None, typer.Argument()] = None, store: Store = None, as_json: Json = False
) -> None:
    """Check everything the store holds; list each disagreement and what repairs it.

    Artifacts and metadata against their digests, the index and versions.json against the
    event log, stray files; exit 1 if anything disagrees. Example: `registry verify`"""
    problems = Registry(store).verify(name)
    if as_json:
        typer.echo(json.dumps(problems, indent=2))
    else:
        _problems(problems, f"the store agrees with itself: {CLEAN}")
    if problems:
        raise typer.Exit(1)


CLEAN = "every file, digest, index row and alias"


def _problems(problems: list[dict[str, Any]], clean: str) -> None:
    if not problems:
        typer.echo(clean)
        return
    rows = [[p["file"], p["problem"], p["repair"]] for p in problems]
    typer.echo(render(["file", "problem", "repair"], rows))


PolicyFamily = Annotated[
    str | None,
    typer.Option("--family", help="one family's own policy (without: the store's, for the others)"),
]


@app.command()
def policy(family: PolicyFamily = None, store: Store = None, as_json: Json = False) -> None:
    """The promotion gate that applies: floors, ceilings, rollback factor, who set them.

    Without --family, the store's own, which applies to every family without one; where
    neither was ever set, a family's versions meet the default their family declares.
    Example: `registry policy --family tabular`"""
    found = Registry(store).policy(family)  # a missing store: the default it would start with
    rows = _policy_rows(found)
    if family and "family" not in found:
        origin = "the default it declares" if found.get("declared_by") else "the store's"
        rows.insert(0, ["family", f"{family} has none of its own: {origin} applies"])
    setter = found["set"]
    rows.append(["set", "never: the default applies" if setter is None else _setter(setter)])
    _out(found, as_json, ["rule", "value"], rows)


def _setter(setter: dict[str, Any]) -> str:
    text = f"{setter['time'][:19]} by {setter['actor']}"
    return text + (f": {setter['reason']}" if setter["reason"] else "")


@app.command("set-policy")
def set_policy(
    floor: Annotated[
        list[str] | None, typer.Option(help="METRIC=VALUE: a floor to set or change (repeat)")
    ] = None,
    drop_floor: Annotated[
        list[str] | None, typer.Option(help="METRIC: a floor to remove (repeat)")
    ] = None,
    ceiling: Annotated[
        list[str] | None,
        typer.Option(help="METRIC=VALUE: a ceiling (lower is better) to set or change (repeat)"),
    ] = None,
    drop_ceiling: Annotated[
        list[str] | None, typer.Option(help="METRIC: a ceiling to remove (repeat)")
    ] = None,
    rollback_factor: Annotated[
        float | None,
        typer.Option(help="refuse when candidate error > holder error x this"),
    ] = None,
    family: PolicyFamily = None,
    reason: Reason = "",
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Change the promotion gate; what is not named stays. Recorded in the events.

    With --family, that family's own gate, which starts from the one that applied to it.

    Example: `registry set-policy --floor auc=0.92 --reason "after the bearing incident"`,
    `registry set-policy --family tabular --ceiling rmse=4.5`"""
    record = Registry(store).set_policy(
        _bounds(floor or []),
        drop_floor or [],
        rollback_factor,
        reason,
        _bounds(ceiling or []),
        drop_ceiling or [],
        family,
    )
    policy = record["policy"] | ({"family": family} if family else {})
    _out(record, as_json, ["rule", "value"], _policy_rows(policy))


def _policy_rows(policy: dict[str, Any]) -> list[list[Any]]:
    rows = [["family", policy["family"]]] if policy.get("family") else []
    rows += [[f"floor {metric}", value] for metric, value in policy["floors"].items()]
    rows += [[f"ceiling {metric}", value] for metric, value in policy.get("ceilings", {}).items()]
    return [*rows, ["rollback factor", policy["rollback_factor"]]]


def _bounds(items: list[str]) -> dict[str, float]:
    bounds = {}
    for item in items:
        metric, _, value = item.partition("=")
        try:
            bounds[metric.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(f"{item!r}: expected METRIC=NUMBER, e.g. auc=0.9") from None
    return bounds


@app.command()
def export(
    to: Annotated[Path, typer.Option(help="the deploy folder, e.g. deploy/models")],
    name: Annotated[
        str | None, typer.Argument(help="one model; without it, every holder of ALIAS")
    ] = None,
    alias: Alias = "production",
    family: Annotated[str | None, typer.Option(help="only models of this family")] = None,
    keep_backups: KeepBackups = 3,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Ship NAME@ALIAS (or every holder of ALIAS) to TO/{device}/, each in one atomic swap.

    Without NAME, bundles of devices that no longer hold ALIAS are taken out of service. Only
    what the exporter wrote is ever replaced. Example: `registry export --to deploy/models`"""
    registry = _existing(store)
    if name is not None:
        target = registry.export(f"{name}@{alias}", to, keep_backups)
        typer.echo(json.dumps({"exported": str(target)}) if as_json else str(target))
        return
    done = registry.export_all(to, alias, family, keep_backups)
    rows = [[s, d["model"], d["status"], d.get("error", "")] for s, d in done.items()]
    _out(done, as_json, ["scope", "model", "status", "error"], rows)
    if any(d["status"] == "failed" for d in done.values()):
        raise typer.Exit(1)


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="a new or empty folder")], as_json: Json = False
) -> None:
    """Make an empty model store in PATH.

    A store named by --store or $MODEL_STORE must exist before anything is written to it (a
    mistyped path is refused instead of starting again at v1); only the project's own
    model_store/ is made by its first write. Example: `registry init /srv/models`"""
    made = Registry(path).init()
    word = "made an empty model store in" if made else "already a model store:"
    typer.echo(json.dumps({"store": str(path), "made": made}) if as_json else f"{word} {path}")


@app.command()
def backup(
    to: Annotated[Path, typer.Argument(help="a new or empty folder outside the store")],
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Copy the store whole to TO, under its lock, and verify the copy.

    No write is half-way through the copy. To restore it, copy it back into a new folder
    (README, "The model registry"). Example: `registry backup /backups/models-2026-12-03`"""
    done = Registry(store).backup(to)
    if as_json:
        typer.echo(json.dumps(done, indent=2))
    else:
        typer.echo(f"copied {done['files']} files to {to}")
        _problems(done["problems"], f"the copy verifies: {CLEAN}")
    if done["problems"]:
        raise typer.Exit(1)


@app.command()
def reindex(
    recover: Annotated[
        bool,
        typer.Option(
            help="first rebuild what a lost events.jsonl still shows in the metadata files and "
            "the index (needs --reason; recorded)"
        ),
    ] = False,
    reason: Reason = "",
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Rebuild versions.json and the index from events.jsonl and the metadata files.

    Deletes nothing. A log that lost events (shorter than the index saw it, or missing a
    version whose metadata is in the store) is refused, naming what is missing: restore it
    from a backup, or rebuild with --recover. Example: `registry reindex` (what `registry
    verify` says repairs an interrupted write)"""
    registry = Registry(store)
    if not recover:
        latest = registry.reindex()
        typer.echo(
            json.dumps(latest, sort_keys=True) if as_json else f"reindexed {len(latest)} models"
        )
        return
    record = registry.recover(reason)
    if as_json:
        typer.echo(json.dumps(record, indent=2, sort_keys=True))
    elif record is None:
        typer.echo("the log lost nothing: reindexed")
    else:
        rows = [["version", v] for v in record["versions"]]
        rows += [["alias", a] for a in record["aliases"]]
        typer.echo(render(["recovered", ""], rows or [["nothing", "the index is rebuilt"]]))


@app.command()
def gc(
    keep: Annotated[
        int | None, typer.Option(min=1, help="also delete all but the newest KEEP of each model")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="list what would be deleted; delete nothing")
    ] = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Delete what interrupted writes left and, with --keep, the files of old versions.

    Never a version that an alias holds or ever held, nor the parent of a version that is
    kept, nor a version the log lost. Example: `registry gc --keep 5 --dry-run`"""
    removed = Registry(store).gc(keep, dry_run)
    if as_json:
        typer.echo(json.dumps(removed))
    elif not removed:
        typer.echo("nothing to remove")
    else:
        typer.echo(("would remove:\n" if dry_run else "") + "\n".join(removed))


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


def main() -> None:
    """Entry point: an error becomes one line on stderr (JSON with --json), exit status 1
    (2 for usage)."""
    as_json = "--json" in sys.argv[1:]
    try:  # with --json, typer's own usage errors come back here, to be shown as JSON
        status = app(standalone_mode=not as_json)
    except TyperException as exc:  # a missing argument, a bad option value
        _fail("UsageError", exc.format_message(), exc.exit_code, as_json)
    except RegistryError as exc:
        _fail(type(exc).__name__, str(exc), 2 if isinstance(exc, UsageError) else 1, as_json)
    except OSError as exc:  # a read-only store, a full disk, a folder where a file should be
        where = f"{exc.filename}: " if exc.filename else ""
        _fail("OSError", f"{where}{exc.strerror or exc}", 1, as_json)
    sys.exit(status or 0)


def _fail(kind: str, message: str, status: int, as_json: bool) -> None:
    """One line on stderr: `error: MESSAGE`, or with --json a JSON object of stable shape."""
    if as_json:
        error = {"type": kind, "message": message, "status": status}
        typer.echo(json.dumps({"error": error}), err=True)
    else:
        typer.echo(f"error: {message}", err=True)
    sys.exit(status)
