"""events.jsonl: the append-only record every other view of the store is rebuilt from.

One JSON object per line: `type`, `time`, `actor`, `reason`, `name`, `version`, and for
alias changes `alias`, `from_version`, `to_version`. The types:
  registered   a new version
  promoted     an alias moved to a version (`gate` holds the figures, `forced` is recorded;
               `replaced`: NAME:vN of another model's version that held it for the device
               and loses it by this event; `rollback`: a rollback to the version it replaced)
  rolled_back  an alias went back to its previous holder
  retired      an alias was taken off a model (a device leaves the fleet)
  refused      the pipeline's promotion of a candidate was refused by the gate
  checked      what the gate would decide, recorded by an experiment (no alias moves)
  archived     `gc` deleted a version's files
  policy_set   a promotion policy changed (`policy`; `family` when it is one family's, else
               the store's, which applies to a family without its own; no name or version)
  recovered    `registry reindex --recover` rebuilt lost events (`versions`, `aliases`; name
               and version are empty); each rebuilt event is marked `recovered`
Written under the store's lock, one `write` and an fsync per event.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from registry.errors import CorruptStoreError
from registry.store import open_new

REGISTERED, PROMOTED, ROLLED_BACK, ARCHIVED = "registered", "promoted", "rolled_back", "archived"
RETIRED, REFUSED, CHECKED, POLICY_SET = "retired", "refused", "checked", "policy_set"
RECOVERED = "recovered"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def default_actor() -> str:
    try:
        return os.environ.get("REGISTRY_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def event(
    kind: str, name: str | None, version: int | None, actor: str, reason: str = "", **extra: Any
) -> dict:
    base = {"type": kind, "time": now(), "actor": actor, "reason": reason, "name": name}
    return base | {"version": version} | extra


def line_of(record: dict[str, Any]) -> bytes:
    """The bytes one event takes in the log."""
    return (json.dumps(record, sort_keys=True) + "\n").encode()


def append(path: Path, record: dict[str, Any]) -> bytes:
    """Append one event (the caller holds the store's lock and has checked the log); returns
    the bytes written, for the caller's running digest of the log."""
    line = line_of(record)
    with open_new(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT) as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    return line


@dataclass(frozen=True)
class Position:
    """Where the log ends: what the index records, and what a writer checks before it writes."""

    size: int  # bytes up to the end of the last complete line
    tail: str  # sha256 of that last line ("" for an empty log)
    torn: bool = False  # bytes after it: a write that never finished

    def after(self, lines: list[bytes]) -> Position:
        if not lines:
            return self
        return Position(self.size + sum(map(len, lines)), hashlib.sha256(lines[-1]).hexdigest())


def position(path: Path, chunk: int = 1 << 16, upto: int | None = None) -> Position:
    """The log's Position, from its last bytes only (the log may be long); with `upto`, the
    Position of its first `upto` bytes."""
    if not path.exists():
        return Position(0, "")
    with open(path, "rb") as handle:
        length = handle.seek(0, os.SEEK_END)
        length = length if upto is None else min(upto, length)
        data, start = b"", length
        while start > 0 and data.count(b"\n") < 2:  # the last complete line and the one before
            start = max(0, start - chunk)
            handle.seek(start)
            data = handle.read(length - start)
    complete = data[: data.rfind(b"\n") + 1]
    size = start + len(complete)
    last = complete[complete.rfind(b"\n", 0, len(complete) - 1) + 1 :]
    return Position(size, hashlib.sha256(last).hexdigest() if last else "", size < length)


def holds(path: Path, seen: tuple[int, str]) -> bool:
    """Does the log still hold all that a reader who saw it end at `seen` (size, sha256 of the
    last line) saw: at least as long, with that line ending there? No: events were lost."""
    size, tail = seen
    return position(path, upto=size) == Position(size, tail)


def load(path: Path) -> tuple[list[dict[str, Any]], Position]:
    """Every event, each checked against its type's fields, and where the log ends;
    CorruptStoreError names the first line that is not a valid event, or that repeats an
    earlier one (a line copied twice, a version registered twice). A last line without its
    newline is not an event."""
    data = path.read_bytes() if path.exists() else b""
    complete = data[: data.rfind(b"\n") + 1]
    records, last, seen = [], b"", _Seen()
    for number, line in enumerate(complete.split(b"\n")[:-1], start=1):
        last = line + b"\n"
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise CorruptStoreError(f"{path}: line {number} is not valid JSON ({exc})") from exc
        problem = invalid(record) or seen.repeats(number, line, record)
        if problem:
            raise CorruptStoreError(f"{path}: line {number} is not a valid event: {problem}")
        records.append(record)
    tail = hashlib.sha256(last).hexdigest() if last else ""
    return records, Position(len(complete), tail, torn=len(complete) < len(data))


class _Seen:
    """The lines and registrations read so far, to find one that comes twice."""

    def __init__(self) -> None:
        self.lines: dict[bytes, int] = {}
        self.registered: dict[tuple[str, int], int] = {}

    def repeats(self, number: int, line: bytes, record: dict[str, Any]) -> str | None:
        digest = hashlib.blake2b(line, digest_size=16).digest()
        if digest in self.lines:
            return f"it repeats line {self.lines[digest]} (an event is written once)"
        self.lines[digest] = number
        if record["type"] != REGISTERED:
            return None
        key = (record["name"], record["version"])
        if key in self.registered:
            return f"{key[0]}:v{key[1]} was registered at line {self.registered[key]} already"
        self.registered[key] = number
        return None


def read(path: Path) -> list[dict[str, Any]]:
    """Every committed event (see `load`)."""
    return load(path)[0]


# Fields each type of event must have, beyond type/time/actor/reason/name/version.
_INT, _OPT_INT, _STR, _DICT, _NONE = (int,), (int, type(None)), (str,), (dict,), (type(None),)
_LIST = (list,)
_COMMON = {"time": _STR, "actor": _STR, "reason": _STR}
_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    REGISTERED: {},
    PROMOTED: {"alias": _STR, "from_version": _OPT_INT, "to_version": _INT},
    ROLLED_BACK: {"alias": _STR, "from_version": _INT, "to_version": _INT},
    RETIRED: {"alias": _STR, "from_version": _INT},
    REFUSED: {"alias": _STR, "from_version": _OPT_INT, "to_version": _INT, "gate": _DICT},
    CHECKED: {"alias": _STR, "from_version": _OPT_INT, "to_version": _INT, "gate": _DICT},
    ARCHIVED: {},
    POLICY_SET: {"policy": _DICT},
    RECOVERED: {"versions": _LIST, "aliases": _LIST},
}


def invalid(record: Any) -> str | None:
    """What makes `record` not a valid event, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    fields = _FIELDS.get(record.get("type"))  # type: ignore[arg-type]
    if fields is None:
        return f"unknown type {record.get('type')!r}"
    if record["type"] in (POLICY_SET, RECOVERED):  # about the store, not one model
        ident = {"name": _NONE, "version": _NONE}
    else:
        ident = {"name": _STR, "version": _INT}
    for key, types in (_COMMON | ident | fields).items():
        value = record.get(key, _MISSING)
        if value is _MISSING:
            return f"{record['type']} event without {key!r}"
        if not isinstance(value, types) or isinstance(value, bool):
            return f"{key} = {value!r} is not what a {record['type']} event holds"
    if not isinstance(record.get("family", ""), str):
        return f"family = {record['family']!r} is not a family's name"
    replaced = record.get("replaced")
    if replaced is not None and not (isinstance(replaced, str) and ":v" in replaced):
        return f"replaced = {replaced!r} is not a NAME:vN"
    return None


_MISSING = object()


def alias_stacks(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[int]]:
    """(name, alias) -> versions that held it, oldest first; the last one holds it now.
    A retired alias starts afresh: there is nothing to roll back to."""
    return {key: [r["to_version"] for r in pushes] for key, pushes in _pushes(records).items()}


def replaced(records: Iterable[dict[str, Any]], name: str, alias: str) -> str | None:
    """NAME:vN of the other model's version that `name` took `alias` from when its current
    holding began; None when it began otherwise (or by a rollback: no going round in circles)."""
    pushes = _pushes(records).get((name, alias))
    first = pushes[0] if pushes else {}
    return None if first.get("rollback") else first.get("replaced")


def previous_holder(record: dict[str, Any]) -> str:
    """Who held the alias before an alias event or a gate decision moved it: another model's
    NAME:vN, vN of the same model, or "" for nobody."""
    if record.get("replaced"):
        return record["replaced"]
    return f"v{record['from_version']}" if record.get("from_version") else ""


def replaced_model(record: dict[str, Any]) -> str | None:
    """The model whose holding an alias event ended by taking its place, if any."""
    ref = record.get("replaced")
    return ref.rsplit(":v", 1)[0] if isinstance(ref, str) else None


def _pushes(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(name, alias) -> the promotions behind each version of its stack (see alias_stacks)."""
    stacks: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        key = (record["name"], record.get("alias", ""))
        if record["type"] == PROMOTED:
            stacks.setdefault(key, []).append(record)
            if record.get("replaced"):  # that model's holding ends, as by a retirement
                stacks[(replaced_model(record), key[1])] = []
        elif record["type"] == ROLLED_BACK:
            if not stacks.get(key):
                raise CorruptStoreError(f"{key[0]}@{key[1]}: a rollback with no earlier holder")
            stacks[key].pop()
        elif record["type"] == RETIRED:
            stacks[key] = []
    return {key: stack for key, stack in stacks.items() if stack}


def ever_held(records: Iterable[dict[str, Any]]) -> set[tuple[str, str, int]]:
    """(name, alias, version) of every version that has ever held an alias."""
    return {
        (record["name"], record["alias"], record["to_version"])
        for record in records
        if record["type"] in (PROMOTED, ROLLED_BACK)
    }


def last_policy(
    records: Iterable[dict[str, Any]], family: str | None = None
) -> dict[str, Any] | None:
    """The policy that applies to `family`: the latest `policy_set` event of that family, else
    the latest of the store's own (one without a family); None when neither was ever set."""
    own = shared = None
    for record in records:
        if record["type"] == POLICY_SET:
            if record.get("family") is None:
                shared = record
            elif record["family"] == family:
                own = record
    return own or shared
