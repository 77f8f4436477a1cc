"""registry.events: the append-only log, reading it back (torn tails), replaying aliases
(retirement included), the versions that ever held an alias, and the store's policy."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from registry import events
from registry.api import Registry
from registry.errors import CorruptStoreError
from tests.registry_helpers import FAMILY, MODEL_TYPE, NAME, SCOPE, make_artifacts

OTHER = f"{FAMILY}_FAN-7_{MODEL_TYPE}"


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


def _retired(name: str, alias: str, holder: int) -> dict:
    return events.event(events.RETIRED, name, holder, "t", alias=alias, from_version=holder)


def _judged(kind: str, name: str, alias: str, frm: int | None, to: int) -> dict:
    return events.event(kind, name, to, "t", alias=alias, from_version=frm, to_version=to)


def _policy_set(floors: dict[str, float], factor: float) -> dict:
    policy = {"floors": floors, "rollback_factor": factor}
    return events.event(events.POLICY_SET, None, None, "t", "why", policy=policy)


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
    assert (events.RETIRED, events.REFUSED, events.CHECKED, events.POLICY_SET) == (
        "retired",
        "refused",
        "checked",
        "policy_set",
    )


def test_a_store_wide_event_has_no_name_or_version() -> None:
    record = _policy_set({"auc": 0.8}, 1.5)
    assert (record["type"], record["name"], record["version"]) == ("policy_set", None, None)
    assert record["policy"] == {"floors": {"auc": 0.8}, "rollback_factor": 1.5}


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
    records = events.read(registry.store.events_file)
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


def test_alias_stacks_clears_a_retired_alias_only() -> None:
    records = [
        _promoted(NAME, "production", None, 1),
        _promoted(NAME, "production", 1, 2),
        _promoted(NAME, "staging", None, 2),
        _promoted(OTHER, "production", None, 4),
        _retired(NAME, "production", 2),
    ]
    assert events.alias_stacks(records) == {
        (NAME, "staging"): [2],
        (OTHER, "production"): [4],
    }


def test_a_promotion_after_retirement_starts_a_fresh_stack() -> None:
    records = [
        _promoted(NAME, "production", None, 1),
        _promoted(NAME, "production", 1, 2),
        _retired(NAME, "production", 2),
        _promoted(NAME, "production", None, 3),
    ]
    assert events.alias_stacks(records) == {(NAME, "production"): [3]}


def test_alias_stacks_ignores_refusals_checks_and_policy_changes() -> None:
    records = [
        _promoted(NAME, "production", None, 1),
        _judged(events.REFUSED, NAME, "production", 1, 2),
        _judged(events.CHECKED, NAME, "production", 1, 3),
        _policy_set({"auc": 0.8}, 2.0),
    ]
    assert events.alias_stacks(records) == {(NAME, "production"): [1]}


# ------------------------------------------------------------------ ever held
def test_ever_held_names_every_version_an_alias_pointed_at() -> None:
    records = [
        events.event(events.REGISTERED, NAME, 1, "t"),
        _promoted(NAME, "production", None, 1),
        _promoted(NAME, "production", 1, 2),
        _rolled_back(NAME, "production", 2, 1),
        _promoted(NAME, "staging", None, 3),
        _retired(NAME, "staging", 3),
        _judged(events.REFUSED, NAME, "production", 1, 4),
        _judged(events.CHECKED, NAME, "production", 1, 5),
        _promoted(OTHER, "production", None, 7),
        _policy_set({}, 2.0),
    ]
    assert events.ever_held(records) == {
        (NAME, "production", 1),
        (NAME, "production", 2),
        (NAME, "staging", 3),
        (OTHER, "production", 7),
    }


def test_ever_held_of_no_promotions_is_empty() -> None:
    assert events.ever_held([]) == set()
    assert events.ever_held([events.event(events.REGISTERED, NAME, 1, "t")]) == set()


# ------------------------------------------------------------------ policy
def test_last_policy_is_the_latest_policy_event() -> None:
    first, second = _policy_set({"auc": 0.8}, 2.0), _policy_set({"pauc": 0.5}, 1.5)
    records = [first, _promoted(NAME, "production", None, 1), second]
    assert events.last_policy(records) is second
    assert events.last_policy(records[:2]) is first


def test_last_policy_of_a_store_that_never_had_one_is_none() -> None:
    assert events.last_policy([]) is None
    assert events.last_policy([_promoted(NAME, "production", None, 1)]) is None


def test_the_store_records_its_lifecycle_as_events(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "store", actor="t")
    registry.set_policy({"auc": 0.5}, reason="pilot")
    folder = make_artifacts(tmp_path / "a1", b"one")
    registry.register(folder, FAMILY, SCOPE, MODEL_TYPE, metrics={"auc": 0.7})
    registry.record_check(NAME, 1, "exp-a")
    registry.promote(NAME, 1)
    registry.retire(NAME, reason="device removed")
    records = events.read(registry.store.events_file)
    assert [r["type"] for r in records] == [
        "policy_set",
        "registered",
        "checked",
        "promoted",
        "retired",
    ]
    assert events.last_policy(records)["reason"] == "pilot"
    assert records[2]["experiment"] == "exp-a" and records[2]["gate"]["passed"] is True
    assert events.ever_held(records) == {(NAME, "production", 1)}
    assert events.alias_stacks(records) == {}
