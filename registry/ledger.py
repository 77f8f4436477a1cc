"""The store's log and index, written in lockstep: how every change that an event records is made.

`create` makes an empty store. `open_ledger` takes the store's lock and checks, before
anything is written, that the store can be trusted: its files are regular files inside it, its
log does not end in a torn line, its index exists, and the index, versions.json and the log
agree (the index records where the log ends: its size and the sha256 of its last line, so the
check reads the end of the log only; a log that no longer holds that end lost events). A
write that needs the events reads them all, and refuses on any line that is not a valid event.
Otherwise the write is refused, with the command that repairs it.

`Ledger.commit` then makes a change in one SQLite transaction: it changes the index, appends
the events to events.jsonl (fsynced), records the log's new end in the index, and commits.
A kill at any moment leaves the index as it was: with the log as it was (the store is as
before), or with the log longer than the index knows, which the next writer sees and
`registry reindex` replays (the store is as after).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from registry import events
from registry import index as index_mod
from registry.errors import CorruptStoreError
from registry.index import Index
from registry.integrity import RECOVER
from registry.store import Store, fsync_dir, open_new, read_json, write_json

REPAIR = "run `registry reindex` (`registry verify` shows what disagrees)"


@dataclass
class Ledger:
    store: Store
    index: Index
    end: events.Position  # where the log ends, as the index records it
    versions: dict[str, int]  # versions.json: the highest number handed out per name
    _records: list[dict[str, Any]] | None = None

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every event, read (and checked, line by line) only by the writes that need them."""
        if self._records is None:
            self._records = events.read(self.store.events_file)
        return self._records

    def commit(
        self, records: list[dict[str, Any]], change: Callable[[Index], None] | None = None
    ) -> None:
        """Change the index and append `records` to the log, all of it or none of it."""
        with self.index.transaction():
            if change is not None:
                change(self.index)
            lines = [events.append(self.store.events_file, record) for record in records]
            end = self.end.after(lines)
            self.index.set_log(end.size, end.tail)
        self.end = end
        if self._records is not None:
            self._records += records


@contextmanager
def open_ledger(store: Store) -> Iterator[Ledger]:
    """Hold the store's lock with its log and index checked to agree."""
    with store.locked():
        end = events.position(store.events_file)
        if end.torn:
            raise CorruptStoreError(
                f"{store.events_file}: ends with an unfinished line (a write was interrupted); "
                f"{REPAIR}; nothing was changed"
            )
        index = Index(store.index_file, write=True)
        try:
            seen = index.log()
            if seen != (end.size, end.tail):
                raise CorruptStoreError(_disagreement(store, seen, end.size))
            yield Ledger(store, index, end, _versions(store, index))
        finally:
            index.close()


def _disagreement(store: Store, seen: tuple[int, str], size: int) -> str:
    """Why the index's record of the log's end (`seen`) is not the log's end (`size`)."""
    if size < seen[0]:
        return (
            f"{store.events_file}: shorter than {store.index_file} saw it: events were lost; "
            f"{RECOVER}; nothing was changed"
        )
    return (
        f"{store.index_file}: does not reflect {store.events_file} as it is now "
        f"(an interrupted or outside write); {REPAIR}; nothing was changed"
    )


def create(store: Store) -> bool:
    """Make an empty store (its log, index and versions.json) in a new or empty folder; False
    when a store is there already. A folder holding anything else is refused."""
    with store.locked():
        if store.exists():
            return False
        other = sorted(p.name for p in store.root.iterdir() if p != store.lock_file)
        if other:
            raise CorruptStoreError(
                f"{store.root}: holds {', '.join(other[:3])}, not a model store; a store is "
                "made in a new or empty folder; nothing was changed"
            )
        index_mod.build(store.index_file, [], {}, (0, ""))
        write_json(store.versions_file, {})
        with open_new(store.events_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL):
            pass
        fsync_dir(store.root)
    return True


def _versions(store: Store, index: Index) -> dict[str, int]:
    """versions.json, refused unless it covers every version the index holds."""
    latest = dict(index.conn.execute("select name, max(version) from versions group by name"))
    if not store.versions_file.exists():
        if latest:
            raise CorruptStoreError(f"{store.versions_file}: missing; {REPAIR}")
        return {}
    data = read_json(store.versions_file, "versions.json")
    if not isinstance(data, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in data.values()
    ):
        raise CorruptStoreError(
            f"{store.versions_file}: expected a mapping of name -> latest version; {REPAIR}"
        )
    behind = sorted(name for name, version in latest.items() if data.get(name, 0) < version)
    if behind:
        raise CorruptStoreError(
            f"{store.versions_file}: behind the index for {', '.join(behind)}; {REPAIR}"
        )
    return data
