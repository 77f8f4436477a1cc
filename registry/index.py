"""index.sqlite: fast lookups by name, alias and device, rebuildable from the store.

Tables `versions` (one row per registered version, its metadata as JSON) and `aliases`
(who holds each alias now). WAL mode and a busy timeout let many readers and one writer
work at once; the store's lock already serialises writers. sqlite-utils (which imports
numpy) is loaded only to write; lookups use the same connection directly, so a read-only
command starts fast.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

from registry.errors import CorruptStoreError

BUSY_TIMEOUT_MS = 10_000


class Index:
    def __init__(self, path: Path, create: bool = False) -> None:
        self.path = path
        if create and not path.exists():
            _create_file(path)
        try:
            self.conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            tables = {row[0] for row in self.conn.execute("select name from sqlite_master")}
            if not {"versions", "aliases"} <= tables:
                if not create:
                    raise sqlite3.DatabaseError("the versions and aliases tables are missing")
                _create_tables(self.conn)
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise CorruptStoreError(
                f"{path}: the index is unreadable ({exc}); run `registry reindex`"
            ) from exc

    def close(self) -> None:
        self.conn.close()

    @cached_property
    def db(self):
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    def add(self, metadata: dict[str, Any]) -> None:
        self.db["versions"].insert(_row(metadata), replace=True)

    def remove(self, name: str, version: int) -> None:
        self.db["versions"].delete_where("name = ? and version = ?", [name, version])

    def set_alias(self, name: str, alias: str, version: int | None) -> None:
        if version is None:
            self.db["aliases"].delete_where("name = ? and alias = ?", [name, alias])
        else:
            self.db["aliases"].insert(
                {"name": name, "alias": alias, "version": version}, replace=True
            )

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
        row = self.conn.execute(
            "select version from aliases where name = ? and alias = ?", [name, alias]
        ).fetchone()
        return row[0] if row else None

    def aliases_of(self, name: str) -> dict[str, int]:
        rows = self.conn.execute("select alias, version from aliases where name = ?", [name])
        return dict(rows.fetchall())

    def latest(self, name: str) -> int | None:
        row = self.conn.execute(
            "select max(version) from versions where name = ?", [name]
        ).fetchone()
        return row[0]

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

    def rebuild(
        self, metadata: Iterable[dict[str, Any]], aliases: dict[tuple[str, str], int]
    ) -> None:
        with self.conn:
            self.conn.execute("delete from versions")
            self.conn.execute("delete from aliases")
            self.db["versions"].insert_all((_row(m) for m in metadata), replace=True)
            self.db["aliases"].insert_all(
                {"name": n, "alias": a, "version": v} for (n, a), v in aliases.items()
            )

    def _query(self, sql: str, args: list[Any]) -> list[dict[str, Any]]:
        try:
            return [json.loads(row[0]) for row in self.conn.execute(sql, args).fetchall()]
        except sqlite3.DatabaseError as exc:
            raise CorruptStoreError(
                f"{self.path}: the index is unreadable ({exc}); run `registry reindex`"
            ) from exc


def _create_tables(conn: sqlite3.Connection) -> None:
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    db.enable_wal()
    if "versions" not in db.table_names():
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
    if "aliases" not in db.table_names():
        db["aliases"].create({"name": str, "alias": str, "version": int}, pk=("name", "alias"))
        db["aliases"].create_index(["alias"])


def _create_file(path: Path) -> None:
    """Make the tables in a temp file, then rename it into place: a reader that opens the
    index while a first writer creates it finds a whole index or none, never an empty file."""
    temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temp.unlink(missing_ok=True)
    conn = sqlite3.connect(temp)
    try:
        _create_tables(conn)
    finally:
        conn.close()  # the last connection: sqlite folds the WAL back into the file
    os.replace(temp, path)


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
