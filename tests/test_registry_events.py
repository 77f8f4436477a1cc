"""registry.events: the append-only log, reading it back (torn tails), replaying aliases
(retirement included), the versions that ever held an alias, and the store's policy."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from registry import events
from registry.errors import CorruptStoreError
from tests.registry_helpers import (
    FAMILY,
    MODEL_TYPE,
    NAME,
    SCOPE,
    make_artifacts,
    new_registry,
    snapshot,
)

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


def _lines(*records: object) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)


def test_read_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    one, two = (events.event(events.REGISTERED, NAME, v, "t") for v in (1, 2))
    path.write_text(_lines(one) + "\n   \n" + _lines(two))
    assert events.read(path) == [one, two]


def test_read_tolerates_a_torn_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = events.event(events.REGISTERED, NAME, 1, "t")
    events.append(path, good)
    with open(path, "ab") as handle:
        handle.write(b'{"type": "registered", "na')  # a writer killed mid-write
    records, end = events.load(path)
    assert records == [good] and end.torn
    assert end.size == len(events.line_of(good))
    assert events.position(path) == end


def test_position_reads_the_end_of_a_long_log_only(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    for version in range(1, 400):
        events.append(path, events.event(events.REGISTERED, NAME, version, "t"))
    end = events.position(path, chunk=64)
    assert end == events.load(path)[1]
    line = events.append(path, events.event(events.ARCHIVED, NAME, 1, "t"))
    assert events.position(path) == end.after([line]) != end
    assert end.after([]) == end


def test_read_refuses_a_corrupt_middle_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = _lines(events.event(events.REGISTERED, NAME, 1, "t"))
    path.write_text(good + '{"a": 2, broken\n' + good)
    with pytest.raises(CorruptStoreError, match=r"line 2 is not valid JSON"):
        events.read(path)


def test_read_refuses_a_corrupt_last_line_that_has_its_newline(tmp_path: Path) -> None:
    """A complete (newline-terminated) line was committed: garbage there is corruption."""
    path = tmp_path / "events.jsonl"
    path.write_text(_lines(events.event(events.REGISTERED, NAME, 1, "t")) + '{"a": 2, broken\n')
    with pytest.raises(CorruptStoreError, match=r"line 2"):
        events.read(path)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"type": "renamed"}, "unknown type 'renamed'"),
        ({"version": None}, "version = None"),
        ({"version": "1"}, "version = '1'"),
        ({"version": True}, "version = True"),
        ({"name": None}, "name = None"),
        ({"time": 5}, "time = 5"),
    ],
)
def test_a_valid_json_line_that_is_not_a_valid_event_is_named(
    tmp_path: Path, change: dict[str, object], says: str
) -> None:
    path = tmp_path / "events.jsonl"
    good = events.event(events.REGISTERED, NAME, 1, "t")
    path.write_text(_lines(good, good | change))
    with pytest.raises(
        CorruptStoreError, match=f"line 2 is not a valid event: .*{re.escape(says)}"
    ):
        events.read(path)


@pytest.mark.parametrize(
    "record",
    [
        {"type": "promoted", "name": NAME, "version": 1, "time": "t", "actor": "a", "reason": ""},
        {"type": "rolled_back", "name": NAME, "version": 1, "time": "t", "actor": "a"}
        | {"reason": "", "alias": "production", "to_version": 1},
        {"type": "policy_set", "name": None, "version": None, "time": "t", "actor": "a"}
        | {"reason": ""},
        [1, 2],
    ],
)
def test_an_event_without_the_fields_of_its_type_is_invalid(record: object) -> None:
    assert events.invalid(record)


def test_every_event_the_registry_writes_is_valid(tmp_path: Path) -> None:
    for kind, extra in (
        (events.PROMOTED, {"alias": "production", "from_version": None, "to_version": 1}),
        (events.ROLLED_BACK, {"alias": "production", "from_version": 2, "to_version": 1}),
        (events.RETIRED, {"alias": "production", "from_version": 1}),
        (events.ARCHIVED, {}),
    ):
        assert events.invalid(events.event(kind, NAME, 1, "t", **extra)) is None
    policy = {"floors": {"auc": 0.9}, "rollback_factor": 2.0}
    assert events.invalid(events.event(events.POLICY_SET, None, None, "t", policy=policy)) is None


def test_a_rollback_with_no_earlier_holder_is_a_corrupt_log() -> None:
    record = events.event(
        events.ROLLED_BACK, NAME, 1, "t", alias="production", from_version=2, to_version=1
    )
    with pytest.raises(CorruptStoreError, match="a rollback with no earlier holder"):
        events.alias_stacks([record])


def test_a_torn_tail_stops_writes_until_reindex_drops_it(tmp_path: Path) -> None:
    registry = new_registry(tmp_path / "store", actor="t")
    registry.register(make_artifacts(tmp_path / "a1", b"one"), FAMILY, SCOPE, MODEL_TYPE)
    with open(registry.store.events_file, "ab") as handle:
        handle.write(b'{"type": "registered", "na')  # a writer killed mid-write
    before = snapshot(registry.store.root)
    with pytest.raises(CorruptStoreError, match=r"unfinished line.*registry reindex"):
        registry.register(make_artifacts(tmp_path / "a2", b"two"), FAMILY, SCOPE, MODEL_TYPE)
    assert snapshot(registry.store.root) == before
    registry.reindex()
    registry.register(make_artifacts(tmp_path / "a2", b"two"), FAMILY, SCOPE, MODEL_TYPE)
    records = events.read(registry.store.events_file)
    assert [(r["type"], r["version"]) for r in records] == [("registered", 1), ("registered", 2)]
    assert registry.verify() == []


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
    registry = new_registry(tmp_path / "store", actor="t")
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
