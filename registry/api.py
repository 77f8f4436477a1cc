"""The registry's Python API; the `registry` CLI is a thin layer over it, one command a method.

A version exists once its `registered` event is in events.jsonl. Every write goes through
the ledger (registry/ledger.py): under the store's lock, with the log, the index and
versions.json checked to agree, the index and the log change together. Registration checks
its input first, then allocates the number (versions.json is written first, so a crash can
skip a number but never hand one out twice), writes the artifacts and the metadata, and
commits the event with the metadata's digest. Every refused operation raises a
RegistryError before anything in the store has changed.

Aliases move only here: `promote` (through the store's gate for `production`), `rollback`,
`retire`, `promote_experiment`. The gate's policy lives in the store's events.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from registry import backup, card, events, export, families, gate, integrity, ledger, lineage
from registry.errors import (
    ArtifactError,
    CorruptStoreError,
    ExportError,
    GateError,
    HistoryError,
    IncomparableError,
    IntegrityError,
    NotFoundError,
    RegistryError,
    UsageError,
)
from registry.index import Index
from registry.naming import (
    check_alias,
    check_device_code,
    check_version,
    model_name,
    parse_name,
    parse_ref,
)
from registry.store import (
    Store,
    canonical_sha256,
    copy_atomic,
    sha256_file,
    write_json,
)


class Registry:
    def __init__(
        self,
        root: str | Path | None = None,
        lock_timeout: float = 10.0,
        actor: str | None = None,
        families: Mapping[str, families.Family] | None = None,
    ) -> None:
        """`families`: name -> family for comparisons and exports; default: the installed ones."""
        self.store = Store(root, lock_timeout)
        self.actor = actor or events.default_actor()
        self.families = families

    # ----------------------------------------------------------------- reading
    @contextmanager
    def _index(self) -> Iterator[Index]:
        """The index, read-only; a store nothing was ever written to answers empty."""
        self.store.check_regular()
        if not self.store.index_file.exists() and not self.store.events_file.exists():
            yield _EMPTY
            return
        index = Index(self.store.index_file)
        try:
            yield index
        finally:
            index.close()

    def _events(self) -> list[dict[str, Any]]:
        self.store.check_regular()
        return events.read(self.store.events_file)

    def get(self, ref: str) -> dict[str, Any]:
        """Metadata of NAME (latest), NAME:vN or NAME@alias."""
        parsed = parse_ref(ref)
        with self._index() as index:
            version = parsed.version
            latest = index.latest(parsed.name)
            if latest is None:
                raise NotFoundError(self._unknown(index, parsed.name))
            if parsed.alias:
                version = index.alias(parsed.name, parsed.alias)
                if version is None:
                    raise NotFoundError(_no_alias(parsed.name, parsed.alias))
            version = version or latest
            found = index.get(parsed.name, version)
            if found is None:
                raise NotFoundError(f"{ref}: no such model version in {self.store.root}")
            return found | {"aliases": _held(index.aliases_of(parsed.name), found["version"])}

    def list(
        self,
        name: str | None = None,
        scope: str | None = None,
        alias: str | None = None,
        experiment: str | None = None,
    ) -> list[dict[str, Any]]:
        """Versions, filtered by name, scope (device), alias held and DVC experiment."""
        name = str(parse_name(name)) if name else None
        with self._index() as index:
            found = index.search(name, scope, check_alias(alias) if alias else None, experiment)
            held = {n: index.aliases_of(n) for n in {m["name"] for m in found}}
        return [m | {"aliases": _held(held[m["name"]], m["version"])} for m in found]

    def lineage(self, ref: str) -> list[dict[str, Any]]:
        """NAME[:vN|@alias] and its ancestors by `lineage.parent_version`, newest first, back
        to a version trained from scratch, or to an ancestor no longer in the store (a stub
        marked `missing`)."""
        chain = [self.get(ref)]
        with self._index() as index:
            while (parent := (chain[-1].get("lineage") or {}).get("parent_version")) is not None:
                found = index.get(chain[0]["name"], parent)
                if found is None or any(m["version"] == parent for m in chain):
                    chain.append({"name": chain[0]["name"], "version": parent, "missing": True})
                    break
                chain.append(found | {"aliases": _held(index.aliases_of(found["name"]), parent)})
        return chain

    def history(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every event of a model (of the store, without a name), oldest first."""
        if name is None:
            return self._events()
        name = str(parse_name(name))
        found = [e for e in self._events() if name in (e["name"], events.replaced_model(e))]
        if not found:
            with self._index() as index:
                raise NotFoundError(self._unknown(index, name))
        return found

    def diff(self, name: str, first: int, second: int) -> dict[str, list[Any]]:
        """The params and metrics that differ between two versions:
        `params.train.lr` -> [first's, second's] (None where one has no such key)."""
        a, b = (self.get(f"{name}:v{check_version(v)}") for v in (first, second))
        sections = ("params", "metrics")
        return card.changed(
            {k: a.get(k) or {} for k in sections}, {k: b.get(k) or {} for k in sections}
        )

    def verify(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every disagreement in the store (artifacts, metadata, the index and versions.json
        against the log, stray files), each with what repairs it; empty when all agree."""
        return integrity.verify(self.store, str(parse_name(name)) if name else None)

    def verify_version(self, ref: str) -> list[dict[str, Any]]:
        """The problems of one version's files (its metadata against the digest recorded when
        it was registered, each artifact against its sha256), each with its repair; empty
        when all match."""
        meta = self.get(ref)
        key = (meta["name"], meta["version"])
        registered = integrity.live_versions(self._events()).get(key)
        if registered is None:
            raise CorruptStoreError(
                f"{key[0]}:v{key[1]}: the index holds it, events.jsonl does not; "
                f"{integrity.RECOVER}"
            )
        return integrity.check_version(self.store, key, registered)[1]

    def version(self, ref: str) -> families.Version:
        """NAME[:vN|@alias] as its family sees it: metadata and sha256-verified artifacts."""
        return self._version(self.get(ref))

    def read(self, meta: dict[str, Any], kind: str) -> bytes:
        """The bytes of one artifact of a version, after checking them against the sha256
        recorded at registration; IntegrityError otherwise. Every load goes through here."""
        entry = meta["artifacts"].get(kind)
        where = f"{meta['name']}:v{meta['version']}"
        if entry is None:
            raise ArtifactError(f"{where} has no {kind} artifact")
        path = self.store.root / entry["file"]
        try:
            if path.is_symlink():
                raise OSError("a symlink, not a file of the store")
            data = path.read_bytes()
        except OSError as exc:
            raise IntegrityError(
                f"{path}: cannot read the file of {where} ({exc}); refused"
            ) from exc
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise IntegrityError(
                f"{path}: missing or does not match the sha256 recorded at registration "
                f"of {where}; refused"
            )
        return data

    def policy(self, family: str | None = None) -> dict[str, Any]:
        """The promotion policy that applies to `family` (None: the store's, which applies to
        every family without its own), and when, by whom and why it was set; `family` in the
        result when it is that family's own."""
        family = None if family is None else check_device_code(family, "family")
        last = events.last_policy(self._events(), family)
        found = self._applying(last, family)
        if last is None:
            declared = {"declared_by": family} if family and found != gate.DEFAULT_POLICY else {}
            return found.as_dict() | declared | {"set": None}
        own = {"family": last["family"]} if last.get("family") else {}
        return found.as_dict() | own | {"set": {k: last[k] for k in ("time", "actor", "reason")}}

    def check(self, name: str, version: int, alias: str = gate.GUARDED_ALIAS) -> gate.GateResult:
        """What the gate would decide on promoting NAME:vVERSION to ALIAS now; changes nothing."""
        name, version, alias = str(parse_name(name)), check_version(version), check_alias(alias)
        with self._index() as index:
            meta = self._existing(index, name, version)
            result = self._judge(index, self._events(), meta, alias)[1]
        return result if result is not None else gate.GateResult(True)

    # ----------------------------------------------------------------- writing
    def register(
        self,
        folder: Path,
        family: str,
        scope: str,
        model_type: str,
        metrics: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        data_fingerprint: str | None = None,
        parent_version: int | None = None,
    ) -> dict[str, Any]:
        """Register the artifacts in `folder` as the next version; the same bytes return the
        version that already holds them. `extra` is kept in the metadata as given (e.g. the
        pipeline's `inference` settings)."""
        name = model_name(family, scope, model_type)
        reserved = sorted(set(extra or {}) & _RECORDED)
        if reserved:
            raise ArtifactError(
                f"extra metadata may not set recorded fields: {', '.join(reserved)}"
            )
        files = families.artifacts(Path(folder), families.find(family, self.families))
        shas = {a.kind: sha256_file(a.source) for a in files}
        content = hashlib.sha256(json.dumps(shas, sort_keys=True).encode()).hexdigest()
        origin = lineage.capture(data_fingerprint=data_fingerprint, parent_version=parent_version)
        self.ensure()
        with ledger.open_ledger(self.store) as book:
            existing = book.index.find_content(name, content)
            if existing:
                return existing | {"existing": True}
            version = max(book.versions.get(name, 0), book.index.latest(name) or 0) + 1
            targets = {a.kind: self.store.artifact(name, version, a) for a in files}
            taken = [
                p for p in [*targets.values(), self.store.metadata(name, version)] if p.exists()
            ]
            if taken:
                raise CorruptStoreError(
                    f"{taken[0]}: already exists, though {name}:v{version} is the next number; "
                    "run `registry reindex`; nothing was changed"
                )
            write_json(self.store.versions_file, book.versions | {name: version})
            artifacts = {}
            for a in files:
                copy_atomic(a.source, targets[a.kind])
                artifacts[a.kind] = {
                    "file": targets[a.kind].relative_to(self.store.root).as_posix(),
                    "sha256": shas[a.kind],
                    "bytes": targets[a.kind].stat().st_size,
                }
            meta = {
                "name": name,
                "version": version,
                "family": family,
                "scope": scope,
                "model_type": model_type,
                "created": events.now(),
                "actor": self.actor,
                "content_sha256": content,
                "artifacts": artifacts,
                "metrics": metrics or {},
                "params": params or {},
                "lineage": origin,
                **(extra or {}),
            }
            write_json(self.store.metadata(name, version), meta)
            record = events.event(
                events.REGISTERED,
                name,
                version,
                self.actor,
                metadata_sha256=canonical_sha256(meta),
            )
            book.commit([record], lambda index: index.add(meta))
        return meta

    def set_policy(
        self,
        floors: dict[str, float] | None = None,
        drop_floors: Iterable[str] = (),
        rollback_factor: float | None = None,
        reason: str = "",
        ceilings: dict[str, float] | None = None,
        drop_ceilings: Iterable[str] = (),
        family: str | None = None,
    ) -> dict[str, Any]:
        """Change the store's promotion policy, or `family`'s own (which starts from the one
        that applied to it): set or change `floors` and `ceilings`, drop `drop_floors` and
        `drop_ceilings`, set `rollback_factor`; what is not named stays. Recorded as an event."""
        family = None if family is None else check_device_code(family, "family")
        self.ensure()
        with ledger.open_ledger(self.store) as book:
            current = self._applying(events.last_policy(book.records, family), family)
            new = gate.make_policy(
                _bounds(current.floors, floors, drop_floors, gate.FLOOR),
                current.rollback_factor if rollback_factor is None else rollback_factor,
                _bounds(current.ceilings, ceilings, drop_ceilings, gate.CEILING),
            )
            if new == current:
                return {"type": "unchanged", "policy": new.as_dict()}
            record = events.event(
                events.POLICY_SET,
                None,
                None,
                self.actor,
                reason,
                policy=new.as_dict(),
                previous=current.as_dict(),
                **({"family": family} if family else {}),
            )
            book.commit([record])
        return record

    def promote(
        self,
        name: str,
        version: int,
        alias: str = gate.GUARDED_ALIAS,
        reason: str = "",
        force: bool = False,
        automatic: bool = False,
    ) -> dict[str, Any]:
        """Point `alias` at `version`; to `production` only if the store's gate passes, or
        with `force` (which needs a reason; both are recorded). A refusal changes nothing.

        `automatic` (the pipeline's auto-promotion): a refusal is recorded as a `refused`
        event, and the alias is never moved back, to an older version or to one that held
        it before: going back is a person's decision (`rollback`, `promote`); such a call
        returns a `kept` answer and changes nothing."""
        name, version, alias = str(parse_name(name)), check_version(version), check_alias(alias)
        _check_force(force, reason)
        self._require_store()
        with ledger.open_ledger(self.store) as book:
            meta = self._existing(book.index, name, version)
            self._check_files(meta)
            slot, result = self._judge(book.index, book.records, meta, alias)
            holder = slot[0] if slot else None
            if _holds(holder, meta):
                return {"type": "unchanged", "name": name, "alias": alias, "version": version}
            if automatic and holder is not None and _backwards(book.records, meta, alias, holder):
                return {"type": "kept", "name": name, "alias": alias, "version": version} | (
                    _from(holder, meta)
                )
            if result is not None and not result.passed and not force:
                if automatic:
                    record = _alias_event(
                        events.REFUSED, self.actor, meta, alias, holder, result, reason
                    )
                    book.commit([record])
                raise GateError(_refusal(name, version, alias, result), {name: result})
            return self._move(book, meta, alias, slot, result, reason, force)

    def promote_experiment(
        self,
        experiment: str,
        alias: str = gate.GUARDED_ALIAS,
        reason: str = "",
        force: bool = False,
        scope: str | None = None,
    ) -> list[dict[str, Any]]:
        """Promote the candidates a DVC experiment produced (those its deploy stage recorded
        as `checked`; the latest of each model), each through the gate; if the gate refuses
        any, none moves."""
        alias = check_alias(alias)
        _check_force(force, reason)
        self._require_store()
        with ledger.open_ledger(self.store) as book:
            index, records = book.index, book.records
            checked = {
                e["name"]: e["version"]
                for e in records
                if e["type"] == events.CHECKED and e.get("experiment") == experiment
            }
            latest = {n: self._existing(index, n, v) for n, v in checked.items()}
            if scope is not None:
                latest = {n: m for n, m in latest.items() if m["scope"] == scope}
            if not latest:
                raise NotFoundError(
                    f"experiment {experiment!r}: no candidate of it is recorded in "
                    f"{self.store.root} (see `dvc exp show` for its name); nothing promoted"
                )
            decisions = []
            for meta in latest.values():
                self._check_files(meta)
                decisions.append((meta, *self._judge(index, records, meta, alias)))
            refused = {
                meta["name"]: result
                for meta, slot, result in decisions
                if not _holds(slot[0] if slot else None, meta)
                and result is not None
                and not result.passed
            }
            if refused and not force:
                raise GateError(
                    f"experiment {experiment!r}: nothing promoted; "
                    + " | ".join(
                        _refusal(meta["name"], meta["version"], alias, refused[meta["name"]])
                        for meta, _, _ in decisions
                        if meta["name"] in refused
                    ),
                    refused,
                )
            return [
                self._move(book, meta, alias, slot, result, reason, force)
                if not _holds(slot[0] if slot else None, meta)
                else {"type": "unchanged", "name": meta["name"], "alias": alias}
                | {"version": meta["version"]}
                for meta, slot, result in decisions
            ]

    def record_check(
        self, name: str, version: int, experiment: str | None, alias: str = gate.GUARDED_ALIAS
    ) -> dict[str, Any]:
        """Record what the gate would decide on NAME:vVERSION (an experiment's candidate) as a
        `checked` event; no alias moves."""
        name, version, alias = str(parse_name(name)), check_version(version), check_alias(alias)
        self._require_store()
        with ledger.open_ledger(self.store) as book:
            meta = self._existing(book.index, name, version)
            slot, result = self._judge(book.index, book.records, meta, alias)
            if result is None:
                result = gate.GateResult(True)
            holder = slot[0] if slot else None
            record = _alias_event(events.CHECKED, self.actor, meta, alias, holder, result, "")
            record["experiment"] = experiment
            book.commit([record])
        return record

    def _judge(
        self, index: Index, records: list[dict[str, Any]], meta: dict[str, Any], alias: str
    ) -> tuple[list[dict[str, Any]], gate.GateResult | None]:
        """The alias's holders where `meta` would take it (see `_slot`), and the gate's
        result (None for an alias the gate does not guard, or one `meta` holds already)."""
        slot = _slot(index, meta, alias)
        holder = slot[0] if slot else None
        if alias != gate.GUARDED_ALIAS or _holds(holder, meta):
            return slot, None
        comparison = None
        if holder is not None:
            if (meta["name"], alias, meta["version"]) in events.ever_held(records):
                comparison = gate.Comparison(_ref(holder), readmitted=True)
            else:
                comparison = self._compare(meta, holder)
        policy = self._applying(events.last_policy(records, meta["family"]), meta["family"])
        return slot, gate.check(meta.get("metrics") or {}, policy, comparison)

    def _applying(self, record: dict[str, Any] | None, family: str | None) -> gate.Policy:
        """The policy of the `policy_set` event `record`; without one, what `family` declares
        (its module's POLICY, read only then), else the gate's neutral default."""
        if record is not None:
            return _policy(record)
        declared = getattr(families.find(family, self.families), "POLICY", None) if family else None
        if declared is None:
            return gate.DEFAULT_POLICY
        try:
            return gate.make_policy(
                declared.get("floors", {}),
                declared.get("rollback_factor", gate.DEFAULT_POLICY.rollback_factor),
                declared.get("ceilings", {}),
            )
        except (AttributeError, RegistryError) as exc:
            raise UsageError(f"family {family}: its declared POLICY is malformed ({exc})") from exc

    def _compare(self, candidate: dict[str, Any], holder: dict[str, Any]) -> gate.Comparison:
        """Both versions' error on the candidate's data, measured by their family; when the
        family says the two errors are on different scales, the gate compares metrics."""
        ref = _ref(holder)
        family = families.find(candidate["family"], self.families)
        if family is None:
            problem = f"no family {candidate['family']!r} is installed to compare the models"
            return gate.Comparison(ref, problem=problem)
        try:
            new, old = family.compare(self._version(candidate), self._version(holder))
        except IncomparableError as exc:
            return gate.Comparison(ref, by_metrics=str(exc), holder_metrics=holder["metrics"])
        except Exception as exc:  # a family's failure is a reason to refuse, never a crash
            return gate.Comparison(ref, problem=str(exc) or type(exc).__name__)
        return gate.Comparison(ref, float(new), float(old))

    def _version(self, meta: dict[str, Any]) -> families.Version:
        return families.Version(meta, lambda kind: self.read(meta, kind))

    def _move(
        self,
        book: ledger.Ledger,
        meta: dict[str, Any],
        alias: str,
        slot: list[dict[str, Any]],
        result: gate.GateResult | None,
        reason: str,
        force: bool,
    ) -> dict[str, Any]:
        """Point `alias` at `meta`. A holder of another model in its slot loses it by the same
        event (its `replaced`): one line of the log, so no kill can leave the device with
        neither."""
        record = _alias_event(
            events.PROMOTED, self.actor, meta, alias, slot[0] if slot else None, result, reason
        )
        record["forced"] = force and result is not None and not result.passed
        book.commit(
            [record], lambda index: _set_holder(index, meta, alias, slot[0] if slot else None)
        )
        return record

    def rollback(self, name: str, alias: str = "production", reason: str = "") -> dict[str, Any]:
        """Return `alias` to the version that held it before, by its history."""
        name, alias = str(parse_name(name)), check_alias(alias)
        self._require_store()
        with ledger.open_ledger(self.store) as book:
            stack = events.alias_stacks(book.records).get((name, alias), [])
            if len(stack) == 1 and (replaced := events.replaced(book.records, name, alias)):
                return self._restore(book, name, stack[0], alias, replaced, reason)
            if len(stack) < 2:
                raise HistoryError(f"{name}@{alias}: no previous holder to roll back to")
            previous = book.index.get(name, stack[-2])
            if previous is None:
                raise NotFoundError(f"{name}:v{stack[-2]}: the previous holder is gone")
            self._check_files(previous)
            record = events.event(
                events.ROLLED_BACK,
                name,
                stack[-2],
                self.actor,
                reason,
                alias=alias,
                from_version=stack[-1],
                to_version=stack[-2],
            )
            book.commit([record], lambda index: index.set_alias(name, alias, stack[-2]))
        return record

    def _restore(
        self, book: ledger.Ledger, name: str, version: int, alias: str, ref: str, reason: str
    ) -> dict[str, Any]:
        """Roll `alias` back to `ref`, the version of another model that `name:vVERSION`
        replaced when it took the alias."""
        old_name, old_version = ref.rsplit(":v", 1)
        previous = book.index.get(old_name, int(old_version))
        if previous is None:
            raise NotFoundError(f"{ref}: the previous holder is gone")
        self._check_files(previous)
        current = self._existing(book.index, name, version)
        why = f"rollback of {name}:v{version}" + (f": {reason}" if reason else "")
        record = _alias_event(events.PROMOTED, self.actor, previous, alias, current, None, why)
        record |= {"forced": False, "rollback": True}
        book.commit([record], lambda index: _set_holder(index, previous, alias, current))
        return record

    def retire(self, name: str, alias: str = "production", reason: str = "") -> dict[str, Any]:
        """Take `alias` off a model (its device leaves the fleet); its versions stay."""
        name, alias = str(parse_name(name)), check_alias(alias)
        self._require_store()
        with ledger.open_ledger(self.store) as book:
            holder = book.index.alias(name, alias)
            if holder is None:
                raise NotFoundError(f"{name} has no alias {alias!r}; nothing retired")
            record = events.event(
                events.RETIRED, name, holder, self.actor, reason, alias=alias, from_version=holder
            )
            book.commit([record], lambda index: index.set_alias(name, alias, None))
        return record

    def export(self, ref: str, to: Path, keep_backups: int = 3) -> Path:
        """Ship a version to `to/{scope}/` in the layout of its family, in one atomic swap,
        keeping `keep_backups` earlier bundles; unchanged when that bundle is already there."""
        self.get(ref)  # an unknown ref is refused before the deploy folder is touched
        self._outside_store(Path(to))
        with export.locked(Path(to)) as own:  # resolved again: an alias may have moved
            return self._export(own, self.get(ref), keep_backups)[0]

    def export_all(
        self,
        to: Path,
        alias: str = "production",
        family: str | None = None,
        keep_backups: int = 3,
    ) -> dict[str, dict[str, Any]]:
        """Make `to` hold one bundle per scope: the version holding `alias` (of `family`).
        A bundle whose scope no longer has a holder is taken out of service. One scope that
        fails does not stop the others. Returns scope -> {model, status[, error]}."""
        holders: dict[str, list[dict[str, Any]]] = {}
        self._outside_store(Path(to))
        with export.locked(Path(to)) as own:
            for meta in self.list(alias=alias):
                if family in (None, meta["family"]):
                    holders.setdefault(meta["scope"], []).append(meta)
            done: dict[str, dict[str, Any]] = {}
            for scope, metas in sorted(holders.items()):
                ref = ", ".join(f"{m['name']}:v{m['version']}" for m in metas)
                try:
                    if len(metas) > 1:
                        raise ExportError(f"{scope}: {ref} all hold {alias}; export one by name")
                    done[scope] = {
                        "model": ref,
                        "status": self._export(own, metas[0], keep_backups)[1],
                    }
                except RegistryError as exc:
                    done[scope] = {"model": ref, "status": "failed", "error": str(exc)}
            for scope, folder in export.exported(Path(to)).items():
                shipped = _shipped_model(folder)
                if scope not in holders and family in (None, _family_of(shipped)):
                    export.remove(own, scope, keep_backups)
                    done[scope] = {"model": shipped, "status": "removed"}
        return done

    def _export(self, own: Path, meta: dict[str, Any], keep: int) -> tuple[Path, str]:
        ref = f"{meta['name']}:v{meta['version']}"
        installed = export.current(own.parent, meta["scope"])
        if installed is not None and export.is_intact(installed, ref):
            return own.parent / meta["scope"], "unchanged"
        self._check_files(meta)
        family = families.find(meta["family"], self.families)
        if family is None:
            raise ExportError(f"{ref}: no exporter is installed for family {meta['family']!r}")
        version = self._version(meta)
        try:
            layout, manifest = family.bundle(version)
        except Exception as exc:  # whatever the family's check raised: not shipped
            raise ExportError(f"{ref}: cannot be shipped: {exc}") from exc
        files = {path: version.read(kind) for path, kind in layout.items()}
        manifest = manifest | {"model": ref}
        return export.write(own, meta["scope"], files, manifest, keep), "exported"

    def _unknown(self, index: Index, name: str) -> str:
        """No model `name`: say so, with the closest name the store holds."""
        close = difflib.get_close_matches(name, index.names(), n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else " (`registry list` shows them)"
        return f"{name}: no such model in {self.store.root}{hint}"

    def ensure(self) -> None:
        """A store to write to: the project's own is made when missing; one named on purpose
        (--store, $MODEL_STORE) must exist already, so that a mistyped path is refused
        (NotFoundError) instead of starting again at v1."""
        self._require_store(create=self.store.default)

    def init(self) -> bool:
        """Make an empty store here, in a new or empty folder; False when there is one
        already. A store named on purpose (--store, $MODEL_STORE) is made only by this."""
        return ledger.create(self.store)

    def reindex(self) -> dict[str, int]:
        """Rebuild versions.json and the index from events.jsonl and the metadata files, after
        checking every event and metadata file; on any problem, or a log that lost events
        the index or the files still show, the store is left as it was. Deletes nothing."""
        return integrity.reindex(self.store)

    def recover(self, reason: str) -> dict[str, Any] | None:
        """Rebuild what events.jsonl lost from the metadata files and the index (the lost
        registrations and alias holders), recorded as a `recovered` event with `reason`,
        then reindex. None when the log lost nothing."""
        if not reason.strip():
            raise UsageError("--recover needs a --reason: the rebuilt events are recorded with it")
        return integrity.recover(self.store, reason, self.actor)

    def backup(self, to: Path) -> dict[str, Any]:
        """Copy the store whole to `to` (a new or empty folder), under its lock, so that no
        write is half-way through the copy; then verify the copy."""
        self._require_store()
        files = backup.take(self.store, Path(to))
        return {"to": str(to), "files": len(files), "problems": Registry(to).verify()}

    def gc(self, keep: int | None = None, dry_run: bool = False) -> list[str]:
        """Delete what interrupted writes left (`verify` lists it) and, with `keep`, the files
        of old versions: all but the newest `keep` of each model, never a version that an
        alias holds or ever held, nor the parent of a version that is kept. `dry_run`: only
        say what would go."""
        if keep is not None and keep < 1:
            raise UsageError(f"keep {keep!r}: expected an integer >= 1")
        self._require_store()
        with ledger.open_ledger(self.store) as book:
            held = {(n, v) for n, _, v in events.ever_held(book.records)}
            doomed = [] if keep is None else _collectable(book.index.search(), keep, held)
            gone = [f"{m['name']}:v{m['version']}" for m in doomed]
            gone += [p.name for p in integrity.leftovers(self.store, book.records)]
            if dry_run:
                return gone
            for meta in doomed:  # the event first: a kill leaves files of an archived version
                name, version = meta["name"], meta["version"]
                record = events.event(events.ARCHIVED, name, version, self.actor, "gc")
                book.commit([record], lambda index, n=name, v=version: index.remove(n, v))
            integrity.sweep(self.store, book.records)
        return gone

    def _outside_store(self, to: Path) -> None:
        """Refuse a deploy folder that is the store or inside it: bundles and links among the
        store's own files would be files of no version."""
        if self.store.holds(to):
            raise ExportError(
                f"{to}: is inside the model store {self.store.root}; export to a deploy folder "
                "outside it; nothing was changed"
            )

    def _require_store(self, create: bool = False) -> None:
        """A write needs a store; `create`: make it when there is none."""
        if self.store.exists() or (create and ledger.create(self.store)):
            return
        root = self.store.root
        raise NotFoundError(
            f"{root}: no model store here (`registry init {root}` makes one); nothing changed"
        )

    def _existing(self, index: Any, name: str, version: int) -> dict[str, Any]:
        meta = index.get(name, version)
        if meta is None:
            raise NotFoundError(f"{name}:v{version}: no such model version; nothing changed")
        return meta

    def _check_files(self, meta: dict[str, Any]) -> None:
        for kind in meta["artifacts"]:
            self.read(meta, kind)


_RECORDED = {
    "name",
    "version",
    "family",
    "scope",
    "model_type",
    "created",
    "actor",
    "content_sha256",
    "artifacts",
    "metrics",
    "params",
    "lineage",
}


def _no_alias(name: str, alias: str) -> str:
    hint = f" (version {alias} is written {name}:v{alias})" if alias.isdigit() else ""
    return f"{name} has no alias {alias!r}{hint}"


def _bounds(
    current: dict[str, float], new: dict[str, float] | None, drop: Iterable[str], kind: str
) -> dict[str, float]:
    """`current` with `drop` taken out and `new` put in; UsageError for a drop of none."""
    dropped = set(drop)
    unknown = sorted(dropped - set(current))
    if unknown:
        raise UsageError(f"no {kind} on {', '.join(unknown)} to drop; nothing changed")
    return {m: v for m, v in current.items() if m not in dropped} | (new or {})


def _policy(record: dict[str, Any] | None) -> gate.Policy:
    if record is None:
        return gate.DEFAULT_POLICY
    try:
        found = record["policy"]
        return gate.make_policy(
            found["floors"], found["rollback_factor"], found.get("ceilings", {})
        )
    except (KeyError, TypeError, RegistryError) as exc:
        raise CorruptStoreError(
            f"the policy event of {record.get('time')} is malformed ({exc}); set the policy again"
        ) from exc


def _slot(index: Any, meta: dict[str, Any], alias: str) -> list[dict[str, Any]]:
    """The versions holding `alias` where `meta` would take it, `meta`'s own model first.
    `production` is one per device (family and scope), whatever the model type: a device
    runs one model. Any other alias is one per model."""
    if alias != gate.GUARDED_ALIAS:
        held = index.alias(meta["name"], alias)
        return [] if held is None else [index.get(meta["name"], held)]
    found = index.search(scope=meta["scope"], alias=alias)
    return sorted(
        (m for m in found if m["family"] == meta["family"]),
        key=lambda m: m["name"] != meta["name"],
    )


def _holds(holder: dict[str, Any] | None, meta: dict[str, Any]) -> bool:
    return holder is not None and _ref(holder) == _ref(meta)


def _ref(meta: dict[str, Any]) -> str:
    return f"{meta['name']}:v{meta['version']}"


def _from(holder: dict[str, Any] | None, meta: dict[str, Any]) -> dict[str, Any]:
    """How an alias event names the holder it takes over from: `from_version` within one
    model, `replaced` (NAME:vN) for another model's."""
    if holder is None or holder["name"] == meta["name"]:
        return {"from_version": holder["version"] if holder else None}
    return {"from_version": None, "replaced": _ref(holder)}


def _set_holder(
    index: Index, meta: dict[str, Any], alias: str, holder: dict[str, Any] | None
) -> None:
    if holder is not None and holder["name"] != meta["name"]:
        index.set_alias(holder["name"], alias, None)
    index.set_alias(meta["name"], alias, meta["version"])


def _backwards(
    records: list[dict[str, Any]], meta: dict[str, Any], alias: str, holder: dict[str, Any]
) -> bool:
    """Would moving `alias` from `holder` to this version go back in time?"""
    version = meta["version"]
    older = holder["name"] == meta["name"] and version < holder["version"]
    return older or (meta["name"], alias, version) in events.ever_held(records)


def _check_force(force: bool, reason: str) -> None:
    if force and not reason.strip():
        raise UsageError("--force needs a --reason: a forced promotion is recorded with it")


def _alias_event(
    kind: str,
    actor: str,
    meta: dict[str, Any],
    alias: str,
    holder: dict[str, Any] | None,
    result: gate.GateResult | None,
    reason: str,
) -> dict[str, Any]:
    extra = {"alias": alias, "to_version": meta["version"]} | _from(holder, meta)
    if result is not None:
        extra["gate"] = result.as_dict()
    return events.event(kind, meta["name"], meta["version"], actor, reason, **extra)


def _refusal(name: str, version: int, alias: str, result: gate.GateResult) -> str:
    return (
        f"{name}:v{version} -> {alias} refused by the gate: "
        + "; ".join(result.texts())
        + " (use --force with --reason to override; it is recorded)"
    )


def _collectable(
    metas: list[dict[str, Any]], keep: int, held: set[tuple[str, int]]
) -> list[dict[str, Any]]:
    """Versions gc may delete: not among the newest `keep`, never held, no kept one's parent."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for meta in metas:
        by_name.setdefault(meta["name"], []).append(meta)
    kept = {(m["name"], m["version"]) for ms in by_name.values() for m in ms[-keep:]} | held
    parent_of = {(m["name"], m["version"]): m["lineage"].get("parent_version") for m in metas}
    todo = list(kept)
    while todo:
        name, version = todo.pop()
        parent = parent_of.get((name, version))
        if parent is not None and (name, parent) not in kept:
            kept.add((name, parent))
            todo.append((name, parent))
    return [m for m in metas if (m["name"], m["version"]) not in kept]


def _held(aliases: dict[str, int], version: int) -> list[str]:
    return sorted(alias for alias, holder in aliases.items() if holder == version)


def _shipped_model(folder: Path) -> str:
    try:
        return json.loads((folder / export.MANIFEST).read_text())["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _family_of(ref: str) -> str:
    return ref.split("_", 1)[0]


class _NoIndex:
    """Stands in for the index of a store nothing was ever registered in."""

    def alias(self, name: str, alias: str) -> None:
        return None

    def aliases_of(self, name: str) -> dict[str, int]:
        return {}

    def latest(self, name: str) -> None:
        return None

    def names(self) -> list[str]:
        return []

    def get(self, name: str, version: int) -> None:
        return None

    def search(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return []


_EMPTY: Any = _NoIndex()
