"""events.jsonl: the append-only record every other view of the store is rebuilt from.

One JSON object per line: `type`, `time`, `actor`, `reason`, `name`, `version`, and for
alias changes `alias`, `from_version`, `to_version`. The types:
  registered   a new version
  promoted     an alias moved to a version (`gate` holds the figures, `forced` is recorded)
  rolled_back  an alias went back to its previous holder
  retired      an alias was taken off a model (a device leaves the fleet)
  refused      the pipeline's promotion of a candidate was refused by the gate
  checked      what the gate would decide, recorded by an experiment (no alias moves)
  archived     `gc` deleted a version's files
  policy_set   the store's promotion policy changed (`policy`; name and version are empty)
Written under the store's lock, one `write` and an fsync per event.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from registry.errors import CorruptStoreError

REGISTERED, PROMOTED, ROLLED_BACK, ARCHIVED = "registered", "promoted", "rolled_back", "archived"
RETIRED, REFUSED, CHECKED, POLICY_SET = "retired", "refused", "checked", "policy_set"


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


def append(path: Path, record: dict[str, Any]) -> None:
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    _cut_torn_tail(path)
    with open(path, "ab") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline: a write that never finished (caller holds the lock)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "r+b") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return
        handle.truncate(data.rfind(b"\n") + 1)


def read(path: Path) -> list[dict[str, Any]]:
    """Every committed event; a torn last line (a writer killed mid-write) is not one."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as exc:
            if number == len(lines):  # no newline after it: the write never finished
                break
            raise CorruptStoreError(f"{path}: line {number} is not valid JSON ({exc})") from exc
    return records


def alias_stacks(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[int]]:
    """(name, alias) -> versions that held it, oldest first; the last one holds it now.
    A retired alias starts afresh: there is nothing to roll back to."""
    stacks: dict[tuple[str, str], list[int]] = {}
    for record in records:
        key = (record["name"], record.get("alias", ""))
        if record["type"] == PROMOTED:
            stacks.setdefault(key, []).append(record["to_version"])
        elif record["type"] == ROLLED_BACK:
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


def last_policy(records: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest `policy_set` event, or None when the store never had a policy set."""
    found = None
    for record in records:
        if record["type"] == POLICY_SET:
            found = record
    return found
