"""Checking a store against itself (`verify`), and rebuilding what can be rebuilt (`reindex`).

The truth is events.jsonl: which versions exist (registered, not archived), who holds each
alias, and each version's metadata digest, recorded in its `registered` event where editing
the metadata file cannot forge it. Metadata files and artifacts are checked against their
digests. versions.json and index.sqlite are derived from the log: `reindex` rebuilds them,
`verify` compares them with it. Files no version owns (left by an interrupted write) and temp
files are swept by `reindex` and `gc`; they are never counted as versions.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
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
RESTORE = "restore it from a backup of the store"
BY_HAND = "fix or remove that line of events.jsonl by hand, then run `registry reindex`"


def live_versions(records: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """(name, version) -> its `registered` event, for every version not archived."""
    live = {(e["name"], e["version"]): e for e in records if e["type"] == events.REGISTERED}
    for record in records:
        if record["type"] == events.ARCHIVED:
            live.pop((record["name"], record["version"]), None)
    return live


def load_metadata(store: Store, key: Key, registered: dict[str, Any]) -> dict[str, Any]:
    """A version's metadata file, checked against the digest in its registered event."""
    path = store.metadata(*key)
    if path.is_symlink() or not path.is_file():
        raise CorruptStoreError(f"{path}: the metadata of {key[0]}:v{key[1]} is missing")
    meta = read_json(path, "metadata")
    if not isinstance(meta, dict) or (meta.get("name"), meta.get("version")) != key:
        raise CorruptStoreError(f"{path}: is not the metadata of {key[0]}:v{key[1]}")
    recorded = registered.get("metadata_sha256")
    if recorded is not None and canonical_sha256(meta) != recorded:
        raise CorruptStoreError(
            f"{path}: does not match the digest recorded when {key[0]}:v{key[1]} was registered"
        )
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


def reindex(store: Store) -> dict[str, int]:
    """Rebuild versions.json and the index from the log and the metadata files, after checking
    all of them; a problem is reported and the store left as it was."""
    if not store.root.is_dir():
        raise NotFoundError(f"{store.root}: no model store here; nothing changed")
    with store.locked():
        records, end = events.load(store.events_file)
        live = live_versions(records)
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
        holders = {key: stack[-1] for key, stack in events.alias_stacks(records).items()}
        latest = highest(store, records)
        if end.torn:  # the last write never finished: it is not part of the store
            os.truncate(store.events_file, end.size)
        write_json(store.versions_file, latest)
        _settle_journals(store.index_file)
        index_mod.build(store.index_file, metadata, holders, (end.size, end.tail))
        fsync_dir(store.root)
        sweep(store, set(live))
    return latest


def sweep(store: Store, live: set[Key]) -> list[Path]:
    """Delete temp files and files of versions that are not live (call it holding the lock)."""
    gone = [path for path in store.files() if stray(path, live)]
    for path in gone:
        path.unlink()
    return gone


def stray(path: Path, live: set[Key] | dict[Key, Any]) -> bool:
    """A temp file, or a file of a version that is not live: left by an interrupted write."""
    return is_temp(path) or ((key := owner(path)) is not None and key not in live)


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
    """Every disagreement in the store, each with the command (or the step) that repairs it."""
    if not store.root.is_dir():
        raise NotFoundError(f"{store.root}: no model store here")
    try:
        store.check_regular()
        records, end = events.load(store.events_file)
    except CorruptStoreError as exc:
        return [_problem(store.root, str(exc), BY_HAND)]
    problems = []
    if end.torn:
        problems.append(_problem(store.events_file, "ends with an unfinished line", REINDEX))
    live = live_versions(records)
    metas = {}
    for key, registered in live.items():
        if name not in (None, key[0]):
            continue
        try:
            metas[key] = load_metadata(store, key, registered)
        except CorruptStoreError as exc:
            problems.append(_problem(store.metadata(*key), str(exc), RESTORE, key, "metadata"))
            continue
        problems += _artifact_problems(store, metas[key])
    problems += _index_problems(store, records, end, live, metas)
    problems += _versions_problems(store, records)
    problems += [
        _problem(p, "belongs to no version (left by an interrupted write)", "registry gc")
        for p in store.files()
        if stray(p, live)
    ]
    return problems


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
