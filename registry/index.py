"""index.sqlite: fast lookups by name, alias, device and experiment, rebuildable from the store.

Tables `versions` (one row per live version, its metadata as JSON), `aliases` (who holds each
alias now) and `log` (where events.jsonl ended when the index last changed: its size and the
sha256 of its last line).
A writer changes the index only in one transaction with the events it appends, so the index
always says how much of the log it has seen: a log that is longer or different from that
means an interrupted or foreign write, and writers refuse until `registry reindex`.

The index uses a rollback journal, not WAL: `reindex` builds a whole new file beside it and
renames it into place, and a reader that has the old file open keeps reading it. (WAL's
-wal and -shm files belong to a name, not to a file, and would be mixed up by the rename.)
Readers open it read-only; nothing but `build` ever creates one. sqlite-utils (which imports
numpy) builds it; lookups and the small transactional writes use the connection directly.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from registry.errors import CorruptStoreError

BUSY_TIMEOUT_MS = 10_000
COLUMNS = {
    "versions": {"name", "version", "family", "scope", "model_type", "created"}
    | {"content_sha256", "metadata"},
    "aliases": {"name", "alias", "version"},
    "log": {"key", "value"},
}


class Index:
    def __init__(self, path: Path, write: bool = False) -> None:
        self.path = path
        if not path.is_file() or path.is_symlink():
            raise CorruptStoreError(
                f"{path}: the index is missing (or not a regular file); run `registry reindex`"
            )
        uri = f"{path.resolve().as_uri()}?mode={'rw' if write else 'ro'}"
        try:
            self.conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise _unreadable(path, exc) from exc
        self.conn.isolation_level = None  # transactions are explicit: see `transaction`
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _check_schema(self.conn)
        except (sqlite3.Error, ValueError) as exc:
            self.conn.close()
            raise _unreadable(path, exc) from exc

    def close(self) -> None:
        self.conn.close()

    # ----------------------------------------------------------------- writing
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All of it or none of it: what the block changes is committed at its end."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def add(self, metadata: dict[str, Any]) -> None:
        row = _row(metadata)
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.conn.execute(
            f"insert or replace into versions ({columns}) values ({marks})", list(row.values())
        )

    def remove(self, name: str, version: int) -> None:
        self.conn.execute("delete from versions where name = ? and version = ?", [name, version])

    def set_alias(self, name: str, alias: str, version: int | None) -> None:
        if version is None:
            self.conn.execute("delete from aliases where name = ? and alias = ?", [name, alias])
        else:
            self.conn.execute(
                "insert or replace into aliases (name, alias, version) values (?, ?, ?)",
                [name, alias, version],
            )

    def set_log(self, size: int, tail: str) -> None:
        self.conn.executemany(
            "insert or replace into log (key, value) values (?, ?)",
            [("size", str(size)), ("tail", tail)],
        )

    # ----------------------------------------------------------------- reading
    def log(self) -> tuple[int, str]:
        """(size, sha256 of the last line) of events.jsonl as this index reflects it."""
        found = dict(self._rows("select key, value from log", []))
        return int(found.get("size", -1)), found.get("tail", "")

    def get(self, name: str, version: int) -> dict[str, Any] | None:
        rows = self._query(
            "select metadata from versions where name = ? and version = ?", [name, version]
        )
        return rows[0] if rows else None

    def find_content(self, name: str, content_sha256: str) -> dict[str, Any] | None:
        rows = self._query(
            "select metadata from versions where name = ? and content_sha256 = ? order by version",
            [name, content_sha256],
        )
        return rows[0] if rows else None

    def alias(self, name: str, alias: str) -> int | None:
        rows = self._rows("select version from aliases where name = ? and alias = ?", [name, alias])
        return rows[0][0] if rows else None

    def aliases_of(self, name: str) -> dict[str, int]:
        return dict(self._rows("select alias, version from aliases where name = ?", [name]))

    def all_aliases(self) -> dict[tuple[str, str], int]:
        return {(n, a): v for n, a, v in self._rows("select name, alias, version from aliases", [])}

    def names(self) -> list[str]:
        return [row[0] for row in self._rows("select distinct name from versions", [])]

    def latest(self, name: str) -> int | None:
        return self._rows("select max(version) from versions where name = ?", [name])[0][0]

    def search(
        self,
        name: str | None = None,
        scope: str | None = None,
        alias: str | None = None,
        experiment: str | None = None,
    ) -> list[dict[str, Any]]:
        where, args = [], []
        for column, value in (
            ("v.name", name),
            ("v.scope", scope),
            ("a.alias", alias),
            ("json_extract(v.metadata, '$.lineage.dvc_experiment')", experiment),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        join = "join aliases a on a.name = v.name and a.version = v.version" if alias else ""
        sql = f"select distinct v.metadata from versions v {join}"
        sql += (" where " + " and ".join(where) if where else "") + " order by v.name, v.version"
        return self._query(sql, args)

    def _query(self, sql: str, args: list[Any]) -> list[dict[str, Any]]:
        try:
            return [json.loads(row[0]) for row in self._rows(sql, args)]
        except ValueError as exc:
            raise _unreadable(self.path, exc) from exc

    def _rows(self, sql: str, args: list[Any]) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _unreadable(self.path, exc) from exc


def build(
    path: Path,
    metadata: Iterable[dict[str, Any]],
    aliases: dict[tuple[str, str], int],
    log: tuple[int, str],
) -> None:
    """Write a whole index to a temp file beside `path` and rename it into place: a reader
    finds the old index or the new one, never a part of either."""
    import sqlite_utils

    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    for stale in (temp, Path(f"{temp}-journal")):  # a killed build's, by the same pid
        stale.unlink(missing_ok=True)
    conn = sqlite3.connect(temp)
    try:
        db = sqlite_utils.Database(conn)
        db.execute("PRAGMA journal_mode = DELETE")
        _create_tables(db)
        db["versions"].insert_all(_row(m) for m in metadata)
        db["aliases"].insert_all(
            {"name": n, "alias": a, "version": v} for (n, a), v in aliases.items()
        )
        db["log"].insert_all(
            [{"key": "size", "value": str(log[0])}, {"key": "tail", "value": log[1]}]
        )
        conn.commit()
    finally:
        conn.close()
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, path)


def _create_tables(db: Any) -> None:
    db["versions"].create(
        {
            "name": str,
            "version": int,
            "family": str,
            "scope": str,
            "model_type": str,
            "created": str,
            "content_sha256": str,
            "metadata": str,
        },
        pk=("name", "version"),
    )
    db["versions"].create_index(["scope"])
    db["versions"].create_index(["name", "content_sha256"])
    db["aliases"].create({"name": str, "alias": str, "version": int}, pk=("name", "alias"))
    db["aliases"].create_index(["alias"])
    db["log"].create({"key": str, "value": str}, pk="key")


def _check_schema(conn: sqlite3.Connection) -> None:
    for table, columns in COLUMNS.items():
        found = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if not columns <= found:
            missing = ", ".join(sorted(columns - found))
            raise ValueError(f"table {table} lacks {missing}: not this registry's index")


def _unreadable(path: Path, exc: Exception) -> CorruptStoreError:
    return CorruptStoreError(f"{path}: the index is unreadable ({exc}); run `registry reindex`")


def _row(metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": metadata["name"],
        "version": metadata["version"],
        "family": metadata["family"],
        "scope": metadata["scope"],
        "model_type": metadata["model_type"],
        "created": metadata["created"],
        "content_sha256": metadata["content_sha256"],
        "metadata": json.dumps(metadata, sort_keys=True),
    }
