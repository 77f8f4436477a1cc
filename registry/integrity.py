"""Checking a store against itself (`verify`), rebuilding what can be rebuilt (`reindex`), and
rebuilding what a lost log still shows elsewhere (`reindex --recover`).

The truth is events.jsonl: which versions exist (registered, not archived), who holds each
alias, and each version's metadata digest, recorded in its `registered` event where editing
the metadata file cannot forge it. Metadata files and artifacts are checked against their
digests. versions.json and index.sqlite are derived from the log: `reindex` rebuilds them,
`verify` compares them with it. Neither ever deletes a file: what an interrupted write left is
swept by `gc` (see `strays`).

A log can also lose events (cut short, deleted, restored from an older copy). The index says
so: it records where the log ended when it last changed, so a log that no longer holds that
end lost what came after it; and a version whose metadata file is in the store but whose
registration is in no log is lost too, unless an index that agrees with the log shows that its
registration never finished. Such a store is never rebuilt from the log alone (that would drop
the lost versions and move their aliases back): `reindex` refuses, naming what is missing, and
`recover` rebuilds it from the metadata files and the index, as events marked `recovered`.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry import events
from registry import index as index_mod
from registry.errors import CorruptStoreError, NotFoundError
from registry.index import Index
from registry.store import (
    Store,
    canonical_sha256,
    fsync_dir,
    is_temp,
    owner,
    read_json,
    sha256_file,
    write_json,
)

Key = tuple[str, int]
REINDEX = "registry reindex"
GC = "registry gc"
RESTORE = "restore it from a backup of the store"
BY_HAND = "fix or remove that line of events.jsonl by hand, then run `registry reindex`"
RECOVER = (
    "restore events.jsonl from a backup of the store (`registry backup`), or rebuild what the "
    "index and the metadata files still show with `registry reindex --recover --reason TEXT`"
)


def live_versions(records: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """(name, version) -> its `registered` event, for every version not archived."""
    live = {(e["name"], e["version"]): e for e in records if e["type"] == events.REGISTERED}
    for record in records:
        if record["type"] == events.ARCHIVED:
            live.pop((record["name"], record["version"]), None)
    return live


def load_metadata(store: Store, key: Key, registered: dict[str, Any]) -> dict[str, Any]:
    """A version's metadata file, checked against the digest in its registered event."""
    meta = _metadata_file(store, key)
    recorded = registered.get("metadata_sha256")
    if recorded is not None and canonical_sha256(meta) != recorded:
        raise CorruptStoreError(
            f"{store.metadata(*key)}: does not match the digest recorded when "
            f"{key[0]}:v{key[1]} was registered"
        )
    return meta


def _metadata_file(store: Store, key: Key) -> dict[str, Any]:
    path = store.metadata(*key)
    if path.is_symlink() or not path.is_file():
        raise CorruptStoreError(f"{path}: the metadata of {key[0]}:v{key[1]} is missing")
    meta = read_json(path, "metadata", RESTORE)
    if not isinstance(meta, dict) or (meta.get("name"), meta.get("version")) != key:
        raise CorruptStoreError(f"{path}: is not the metadata of {key[0]}:v{key[1]}")
    return meta


def used(store: Store, records: list[dict[str, Any]]) -> dict[str, int]:
    """The highest number the log or a file on disk uses, per name."""
    found = [(e["name"], e["version"]) for e in records if e["type"] == events.REGISTERED]
    found += [key for path in store.files() if (key := owner(path))]
    return _highest(found)


def highest(store: Store, records: list[dict[str, Any]]) -> dict[str, int]:
    """`used`, and what versions.json says where it says more: no number handed out is ever
    handed out again."""
    try:
        recorded = read_json(store.versions_file, "versions.json")
    except (OSError, CorruptStoreError):
        recorded = {}  # missing or damaged: rebuilt from the rest
    pairs = list(recorded.items()) if isinstance(recorded, dict) else []
    return _highest([*used(store, records).items(), *pairs])


def _highest(pairs: list[tuple[str, Any]]) -> dict[str, int]:
    latest: dict[str, int] = {}
    for name, version in pairs:
        if isinstance(version, int) and not isinstance(version, bool):
            latest[name] = max(latest.get(name, 0), version)
    return latest


# ----------------------------------------------------------------------- lost events
@dataclass(frozen=True)
class Gap:
    """What the index and the store's files still show that the log does not."""

    ended: str = ""  # how the log's end differs from where the index saw it end
    versions: dict[Key, str] = field(default_factory=dict)  # -> where it is still shown
    # (name, alias) -> (its holder in the index, in the log)
    aliases: dict[tuple[str, str], tuple[int | None, int | None]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.ended or self.versions or self.aliases)

    def describe(self) -> str:
        parts = [self.ended] if self.ended else []
        if self.versions:
            shown = (f"{n}:v{v} ({where})" for (n, v), where in sorted(self.versions.items()))
            parts.append("the log does not register " + ", ".join(shown))
        parts += [
            f"{n}@{a} is {_held(mine)} in the index, {_held(logged)} in the log"
            for (n, a), (mine, logged) in sorted(self.aliases.items())
        ]
        return "events.jsonl lost events: " + "; ".join(parts)


def _held(version: int | None) -> str:
    return "held by nobody" if version is None else f"v{version}"


@dataclass(frozen=True)
class Survey:
    gap: Gap
    unfinished: set[Key]  # registrations that never committed: no log nor index has them
    indexed: dict[Key, dict[str, Any]]  # the index's metadata of each version in the gap


def survey(store: Store, records: list[dict[str, Any]]) -> Survey:
    """Compare the log with what else the store holds (see the module's docstring)."""
    registered = {(e["name"], e["version"]) for e in records if e["type"] == events.REGISTERED}
    described = {key for path in store.files() if (key := _described(store, path))}
    described -= registered
    evidence = _evidence(store)
    if evidence is None:  # no index to say they never finished: they are lost until shown
        return Survey(Gap(versions=dict.fromkeys(described, "its metadata file")), set(), {})
    rows, aliases, seen = evidence
    lost = {key: "the index" for key in set(rows) - registered}
    if events.holds(store.events_file, seen):  # the log goes on from what the index saw
        return Survey(Gap(versions=lost), described - set(rows), _pick(rows, lost))
    lost |= {key: "its metadata file" for key in described - set(rows)}
    holders = {key: stack[-1] for key, stack in events.alias_stacks(records).items()}
    moved = {
        key: (aliases.get(key), holders.get(key))
        for key in set(aliases) | set(holders)
        if aliases.get(key) != holders.get(key)
    }
    return Survey(Gap(_ended(store, seen[0]), lost, moved), set(), _pick(rows, lost))


def _described(store: Store, path: Path) -> Key | None:
    """The version whose metadata file `path` is, if it is one."""
    key = owner(path)
    return key if key is not None and path == store.metadata(*key) else None


def _evidence(
    store: Store,
) -> tuple[dict[Key, dict[str, Any]], dict[tuple[str, str], int], tuple[int, str]] | None:
    """The index's versions, alias holders and where it saw the log end; None without a
    readable index that says where."""
    try:
        index = Index(store.index_file)
    except CorruptStoreError:
        return None
    with closing(index.conn):
        try:
            seen = index.log()
            rows = {(m["name"], m["version"]): m for m in index.search()}
            aliases = index.all_aliases()
        except CorruptStoreError:
            return None
    return None if seen[0] < 0 else (rows, aliases, seen)


def _pick(rows: dict[Key, dict[str, Any]], keys: dict[Key, str]) -> dict[Key, dict[str, Any]]:
    return {key: rows[key] for key in keys if key in rows}


def _ended(store: Store, seen: int) -> str:
    if not store.events_file.exists():
        return f"{store.events_file} is missing; the index saw it end at byte {seen}"
    size = events.position(store.events_file).size
    if size < seen:
        return f"{store.events_file} ends at byte {size}; the index saw it end at byte {seen}"
    return f"{store.events_file} is not the log the index saw (no line of it ends at byte {seen})"


# ----------------------------------------------------------------------- reindex, recover
def reindex(store: Store) -> dict[str, int]:
    """Rebuild versions.json and the index from the log and the metadata files, after checking
    all of them; a problem, or a log that lost events, is reported and the store left as it
    was. Returns the latest version per name."""
    return _rebuild(store, None, "")[0]


def recover(store: Store, reason: str, actor: str) -> dict[str, Any] | None:
    """`reindex`, after rebuilding what a log lost from the metadata files and the index:
    a `registered` event for each version they show and the log does not, the alias holders
    the index knew, each marked `recovered`, and a `recovered` event with `reason`. Returns
    that event, or None when the log lost nothing (the store is then reindexed)."""
    return _rebuild(store, reason, actor)[1]


def _rebuild(
    store: Store, reason: str | None, actor: str
) -> tuple[dict[str, int], dict[str, Any] | None]:
    if not store.exists():
        raise NotFoundError(f"{store.root}: no model store here; nothing changed")
    with store.locked():
        records, end = events.load(store.events_file)
        found = survey(store, records)
        if found.gap and reason is None:
            raise CorruptStoreError(
                f"cannot reindex: {found.gap.describe()}; {RECOVER}; nothing was changed"
            )
        rebuilt = _rebuilt(store, records, found, reason or "", actor) if found.gap else []
        records = records + rebuilt
        metadata = _checked_metadata(store, live_versions(records))
        holders = {key: stack[-1] for key, stack in events.alias_stacks(records).items()}
        latest = highest(store, records)
        if end.torn:  # the last write never finished: it is not part of the store
            os.truncate(store.events_file, end.size)
        end = end.after([events.append(store.events_file, record) for record in rebuilt])
        write_json(store.versions_file, latest)
        _settle_journals(store.index_file)
        index_mod.build(store.index_file, metadata, holders, (end.size, end.tail))
        fsync_dir(store.root)
    return latest, rebuilt[-1] if rebuilt else None


def _checked_metadata(store: Store, live: dict[Key, dict[str, Any]]) -> list[dict[str, Any]]:
    metadata, problems = [], []
    for key, registered in sorted(live.items()):
        try:
            metadata.append(load_metadata(store, key, registered))
        except CorruptStoreError as exc:
            problems.append(str(exc))
    if problems:
        raise CorruptStoreError(
            f"cannot reindex: {'; '.join(problems)}; {RESTORE}; nothing was changed"
        )
    return metadata


def _rebuilt(
    store: Store, records: list[dict[str, Any]], found: Survey, reason: str, actor: str
) -> list[dict[str, Any]]:
    """The events that make the log say again what the gap shows, each checked first."""
    out = []
    for key in sorted(found.gap.versions):
        meta = _recoverable(store, key, found.indexed.get(key))
        out.append(
            events.event(
                events.REGISTERED,
                *key,
                actor,
                reason,
                metadata_sha256=canonical_sha256(meta),
                recovered=True,
            )
        )
    live = live_versions(records + out)
    moves = sorted(found.gap.aliases.items(), key=lambda item: item[1][0] is not None)
    for (name, alias), (mine, logged) in moves:  # an alias taken away before one given
        if mine is None:
            fields = {"alias": alias, "from_version": logged, "recovered": True}
            out.append(events.event(events.RETIRED, name, logged, actor, reason, **fields))
            continue
        if (name, mine) not in live:
            raise CorruptStoreError(
                f"cannot recover: the index says {name}@{alias} is v{mine}, which neither the "
                f"log nor a metadata file shows; {RESTORE}; nothing was changed"
            )
        fields = {"alias": alias, "from_version": logged, "to_version": mine, "recovered": True}
        out.append(events.event(events.PROMOTED, name, mine, actor, reason, **fields))
    summary = {
        "versions": [f"{n}:v{v}" for n, v in sorted(found.gap.versions)],
        "aliases": [f"{n}@{a}: {_held(mine)}" for (n, a), (mine, _) in moves],
        "lost": found.gap.ended,
    }
    return [*out, events.event(events.RECOVERED, None, None, actor, reason, **summary)]


def _recoverable(store: Store, key: Key, indexed: dict[str, Any] | None) -> dict[str, Any]:
    """The metadata of a version the log lost, whole: its file agrees with the index's copy
    and every artifact with its digest; CorruptStoreError otherwise."""
    try:
        meta = _metadata_file(store, key)
    except CorruptStoreError as exc:
        raise CorruptStoreError(f"cannot recover: {exc}; {RESTORE}; nothing was changed") from exc
    damaged = [f"{p['file']} ({p['problem']})" for p in _artifact_problems(store, meta)]
    if indexed is not None and indexed != meta:
        damaged.insert(0, f"{store.metadata(*key)} (differs from the index's copy)")
    if damaged:
        raise CorruptStoreError(
            f"cannot recover {key[0]}:v{key[1]}: {', '.join(damaged)}; {RESTORE}; "
            "nothing was changed"
        )
    return meta


def strays(store: Store, records: list[dict[str, Any]], unfinished: set[Key]) -> list[Path]:
    """Files an interrupted write left, which no live version owns: temp files, and files of
    a version the log archived, of a registration that never finished (`survey`), or with no
    metadata file. A version the log lost is not among them: its files are kept."""
    live = live_versions(records)
    registered = {(e["name"], e["version"]) for e in records if e["type"] == events.REGISTERED}

    def stray(path: Path) -> bool:
        if is_temp(path):
            return True
        key = owner(path)
        if key is None or key in live:
            return False
        return key in registered or key in unfinished or not store.metadata(*key).exists()

    return [path for path in store.files() if stray(path)]


def leftovers(store: Store, records: list[dict[str, Any]]) -> list[Path]:
    """The `strays` of a store whose index agrees with its log, as a writer holding the lock
    sees it."""
    return strays(store, records, survey(store, records).unfinished)


def sweep(store: Store, records: list[dict[str, Any]]) -> list[Path]:
    """Delete the `leftovers`."""
    gone = leftovers(store, records)
    for path in gone:
        path.unlink()
    return gone


def _settle_journals(path: Path) -> None:
    """Before a new index takes the name: SQLite finds a journal by the database's name, so a
    hot journal left by a killed writer (or the WAL of an index an earlier version of the
    registry made) would be applied to the new file. Let SQLite settle it, then drop it."""
    leftovers = [Path(f"{path}{suffix}") for suffix in ("-journal", "-wal", "-shm")]
    if not any(p.exists() for p in leftovers):
        return
    try:
        with closing(sqlite3.connect(path, timeout=10)) as conn:
            conn.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.Error:
        pass  # unreadable: what it held is rebuilt from the log anyway
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)


# ----------------------------------------------------------------------- verify
def verify(store: Store, name: str | None = None) -> list[dict[str, Any]]:
    """Every disagreement in the store, each with the command (or the step) that repairs it.
    Taken under the store's lock: what it sees is no write's half-way state."""
    if not store.root.is_dir():
        raise NotFoundError(f"{store.root}: no model store here")
    try:
        store.check_regular()
        with store.reading():
            return _verified(store, name)
    except CorruptStoreError as exc:
        return [_problem(store.root, str(exc), BY_HAND)]


def _verified(store: Store, name: str | None) -> list[dict[str, Any]]:
    records, end = events.load(store.events_file)
    found = survey(store, records)
    problems = []
    if end.torn:
        problems.append(_problem(store.events_file, "ends with an unfinished line", REINDEX))
    live = live_versions(records)
    metas = {}
    for key, registered in live.items():
        if name in (None, key[0]):
            meta, found_here = check_version(store, key, registered)
            problems += found_here
            if meta is not None:
                metas[key] = meta
    if found.gap:  # the index's disagreements are the gap's: repaired by recovering
        problems += _gap_problems(store, found.gap)
    else:
        problems += _index_problems(store, records, end, live, metas)
    problems += _versions_problems(store, records)
    problems += [
        _problem(p, "belongs to no version (left by an interrupted write)", GC)
        for p in strays(store, records, found.unfinished)
    ]
    return problems


def check_version(
    store: Store, key: Key, registered: dict[str, Any]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """A version's metadata (None when it cannot be trusted) and the problems of its files."""
    try:
        meta = load_metadata(store, key, registered)
    except CorruptStoreError as exc:
        return None, [_problem(store.metadata(*key), str(exc), RESTORE, key, "metadata")]
    return meta, _artifact_problems(store, meta)


def _artifact_problems(store: Store, meta: dict[str, Any]) -> list[dict[str, Any]]:
    key = (meta["name"], meta["version"])
    found = []
    for kind, entry in meta["artifacts"].items():
        path = store.root / entry["file"]
        if path.is_symlink():
            problem = "a symlink, not a file of the store"
        elif not path.is_file():
            problem = "missing"
        elif sha256_file(path) != entry["sha256"]:
            problem = "sha256 mismatch"
        else:
            continue
        found.append(_problem(path, problem, RESTORE, key, kind))
    return found


def _gap_problems(store: Store, gap: Gap) -> list[dict[str, Any]]:
    lost = f"{gap.ended}: events were lost"
    found = [_problem(store.events_file, lost, RECOVER)] if gap.ended else []
    for key, where in sorted(gap.versions.items()):
        text = f"{key[0]}:v{key[1]} is in {where}, not in the log"
        found.append(_problem(store.metadata(*key), text, RECOVER, key))
    for (n, a), (mine, logged) in sorted(gap.aliases.items()):
        text = f"says {n}@{a} is {_held(mine)}, the log says {_held(logged)}"
        found.append(_problem(store.index_file, text, RECOVER))
    return found


def _index_problems(
    store: Store,
    records: list[dict[str, Any]],
    end: events.Position,
    live: dict[Key, dict[str, Any]],
    metas: dict[Key, dict[str, Any]],
) -> list[dict[str, Any]]:
    path = store.index_file
    if not path.exists() and not records:
        return []
    try:
        index = Index(path)
    except CorruptStoreError as exc:
        return [_problem(path, str(exc), REINDEX)]
    with closing(index.conn):
        rows = {(m["name"], m["version"]): m for m in index.search()}
        aliases = index.all_aliases()
        behind = index.log() != (end.size, end.tail)
    found = ["reflects another state of the log"] if behind else []
    found += [f"lacks {n}:v{v}, which the log registers" for n, v in sorted(set(live) - set(rows))]
    found += [f"holds {n}:v{v}, which the log does not" for n, v in sorted(set(rows) - set(live))]
    found += [
        f"holds other metadata for {n}:v{v} than its file"
        for (n, v), meta in sorted(metas.items())
        if (n, v) in rows and rows[(n, v)] != meta
    ]
    holders = {key: stack[-1] for key, stack in events.alias_stacks(records).items()}
    found += [
        f"says {n}@{a} is v{aliases.get((n, a))}, the log says v{holders.get((n, a))}"
        for n, a in sorted(set(aliases) | set(holders))
        if aliases.get((n, a)) != holders.get((n, a))
    ]
    return [_problem(path, text, REINDEX) for text in found]


def _versions_problems(store: Store, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    path, needed = store.versions_file, used(store, records)
    if not needed:
        return []
    try:
        data = read_json(path, "versions.json")
    except OSError:
        return [_problem(path, "missing", REINDEX)]
    except CorruptStoreError as exc:
        return [_problem(path, str(exc), REINDEX)]
    behind = sorted(
        name
        for name, version in needed.items()
        if not isinstance(data, dict) or not isinstance(data.get(name), int) or data[name] < version
    )
    if not behind:
        return []
    return [_problem(path, f"is behind the log or the files for {', '.join(behind)}", REINDEX)]


def _problem(
    path: Path, problem: str, repair: str, key: Key | None = None, kind: str | None = None
) -> dict[str, Any]:
    name, version = key if key else (None, None)
    return {
        "name": name,
        "version": version,
        "kind": kind,
        "file": str(path),
        "problem": problem,
        "repair": repair,
    }
