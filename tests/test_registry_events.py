"""registry.events: the append-only log, reading it back (torn tails) and replaying aliases."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from registry import events
from registry.api import Registry
from registry.errors import CorruptStoreError
from tests.registry_helpers import FAMILY, MODEL_TYPE, NAME, SCOPE, make_artifacts


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODEL_STORE", raising=False)
    monkeypatch.delenv("REGISTRY_ACTOR", raising=False)


def _promoted(name: str, alias: str, frm: int | None, to: int) -> dict:
    return events.event(
        events.PROMOTED, name, to, "t", alias=alias, from_version=frm, to_version=to
    )


def _rolled_back(name: str, alias: str, frm: int, to: int) -> dict:
    return events.event(
        events.ROLLED_BACK, name, to, "t", alias=alias, from_version=frm, to_version=to
    )


# ------------------------------------------------------------------ records
def test_event_has_the_contract_fields() -> None:
    record = events.event(
        events.PROMOTED,
        NAME,
        3,
        "alice",
        "better",
        alias="production",
        from_version=1,
        to_version=3,
    )
    assert record["type"] == "promoted"
    assert record["actor"] == "alice"
    assert record["reason"] == "better"
    assert record["name"] == NAME
    assert record["version"] == 3
    assert (record["alias"], record["from_version"], record["to_version"]) == ("production", 1, 3)
    stamp = datetime.fromisoformat(record["time"])
    assert stamp.tzinfo is not None  # UTC, not local time


def test_event_types() -> None:
    assert (events.REGISTERED, events.PROMOTED, events.ROLLED_BACK, events.ARCHIVED) == (
        "registered",
        "promoted",
        "rolled_back",
        "archived",
    )


def test_default_actor_prefers_registry_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_ACTOR", "ci-bot")
    assert events.default_actor() == "ci-bot"
    monkeypatch.delenv("REGISTRY_ACTOR")
    assert isinstance(events.default_actor(), str) and events.default_actor()


def test_default_actor_survives_an_unknown_user(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_user() -> str:
        raise KeyError("uid not in passwd")

    monkeypatch.setattr(events.getpass, "getuser", no_user)
    assert events.default_actor() == "unknown"


# ------------------------------------------------------------------ append and read
def test_append_writes_one_sorted_json_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    first = events.event(events.REGISTERED, NAME, 1, "t")
    second = _promoted(NAME, "production", None, 1)
    events.append(path, first)
    events.append(path, second)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # newline-terminated
    assert len(lines) == 3
    assert json.loads(lines[0]) == first
    assert lines[0].decode() == json.dumps(first, sort_keys=True)
    assert events.read(path) == [first, second]


def test_read_of_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert events.read(tmp_path / "nope.jsonl") == []
    assert not (tmp_path / "nope.jsonl").exists()


def test_read_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"a": 2}\n')
    assert events.read(path) == [{"a": 1}, {"a": 2}]


def test_read_tolerates_a_torn_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = events.event(events.REGISTERED, NAME, 1, "t")
    events.append(path, good)
    with open(path, "ab") as handle:
        handle.write(b'{"type": "registered", "na')  # a writer killed mid-write
    assert events.read(path) == [good]


def test_read_refuses_a_corrupt_middle_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, broken\n{"a": 3}\n')
    with pytest.raises(CorruptStoreError, match=r"line 2 is not valid JSON"):
        events.read(path)


def test_read_refuses_a_corrupt_last_line_that_has_its_newline(tmp_path: Path) -> None:
    """A complete (newline-terminated) line was committed: garbage there is corruption."""
    path = tmp_path / "events.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, broken\n')
    with pytest.raises(CorruptStoreError, match=r"line 2"):
        events.read(path)


def test_appending_after_a_torn_tail_keeps_the_log_readable(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "store", actor="t")
    registry.register(make_artifacts(tmp_path / "a1", b"one"), FAMILY, SCOPE, MODEL_TYPE)
    with open(registry.store.events_file, "ab") as handle:
        handle.write(b'{"type": "registered", "na')  # a writer killed mid-write
    registry.register(make_artifacts(tmp_path / "a2", b"two"), FAMILY, SCOPE, MODEL_TYPE)
    records = events.read(registry.store.events_file)  # raises CorruptStoreError today
    assert [(r["type"], r["version"]) for r in records] == [("registered", 1), ("registered", 2)]


# ------------------------------------------------------------------ alias replay
def test_alias_stacks_replays_promotions_and_rollbacks() -> None:
    records = [
        events.event(events.REGISTERED, NAME, 1, "t"),
        events.event(events.REGISTERED, NAME, 2, "t"),
        events.event(events.REGISTERED, NAME, 3, "t"),
        _promoted(NAME, "production", None, 1),
        _promoted(NAME, "production", 1, 3),
        _promoted(NAME, "staging", None, 2),
        _promoted(NAME, "production", 3, 2),
        _rolled_back(NAME, "production", 2, 3),
        _promoted("other_A-1_convae", "production", None, 7),
        events.event(events.ARCHIVED, NAME, 1, "t", "gc"),
    ]
    assert events.alias_stacks(records) == {
        (NAME, "production"): [1, 3],
        (NAME, "staging"): [2],
        ("other_A-1_convae", "production"): [7],
    }


def test_alias_stacks_drops_aliases_rolled_back_to_nothing() -> None:
    records = [_promoted(NAME, "staging", None, 1), _rolled_back(NAME, "staging", 1, 0)]
    assert events.alias_stacks(records) == {}


def test_alias_stacks_of_no_events_is_empty() -> None:
    assert events.alias_stacks([]) == {}
    assert events.alias_stacks([events.event(events.REGISTERED, NAME, 1, "t")]) == {}
