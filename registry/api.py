"""The registry's Python API; the `registry` CLI is a thin layer over it, one command a method.

A version exists once its `registered` event is in events.jsonl. Registration checks its
input first, then under the store's lock: allocates the number (versions.json is written
first, so a crash can skip a number but never hand one out twice), writes the artifacts and
the metadata, appends the event, and updates the index. Every refused operation raises a
RegistryError before anything in the store has changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from registry import events, gate, lineage
from registry.errors import (
    ArtifactError,
    CorruptStoreError,
    GateError,
    HistoryError,
    IntegrityError,
    NotFoundError,
)
from registry.index import Index
from registry.naming import check_alias, check_version, model_name, parse_name, parse_ref
from registry.store import (
    ARTIFACTS,
    REQUIRED,
    Store,
    copy_atomic,
    read_json,
    sha256_file,
    write_json,
)


class Registry:
    def __init__(
        self,
        root: str | Path | None = None,
        lock_timeout: float = 10.0,
        actor: str | None = None,
    ) -> None:
        self.store = Store(root, lock_timeout)
        self.actor = actor or events.default_actor()

    # ----------------------------------------------------------------- reading
    @contextmanager
    def _index(self, create: bool = False) -> Iterator[Index]:
        if not self.store.index_file.exists():
            if self.store.events_file.exists():
                raise CorruptStoreError(
                    f"{self.store.index_file}: the index is missing; run `registry reindex`"
                )
            if not create:
                yield _EMPTY
                return
        index = Index(self.store.index_file, create=create)
        try:
            yield index
        finally:
            index.close()

    def get(self, ref: str) -> dict[str, Any]:
        """Metadata of NAME (latest), NAME:vN or NAME@alias."""
        parsed = parse_ref(ref)
        with self._index() as index:
            version = parsed.version
            if parsed.alias:
                version = index.alias(parsed.name, parsed.alias)
                if version is None:
                    raise NotFoundError(f"{parsed.name} has no alias {parsed.alias!r}")
            version = version or index.latest(parsed.name)
            found = index.get(parsed.name, version) if version else None
            if found is None:
                raise NotFoundError(f"{ref}: no such model version in {self.store.root}")
            return found | {"aliases": _held(index.aliases_of(parsed.name), found["version"])}

    def list(
        self, name: str | None = None, scope: str | None = None, alias: str | None = None
    ) -> list[dict[str, Any]]:
        """Versions, filtered by name, scope (device) and alias held."""
        name = str(parse_name(name)) if name else None
        with self._index() as index:
            found = index.search(name, scope, check_alias(alias) if alias else None)
            held = {n: index.aliases_of(n) for n in {m["name"] for m in found}}
        return [m | {"aliases": _held(held[m["name"]], m["version"])} for m in found]

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every event of a model, oldest first."""
        name = str(parse_name(name))
        found = [e for e in events.read(self.store.events_file) if e["name"] == name]
        if not found:
            raise NotFoundError(f"{name}: no such model in {self.store.root}")
        return found

    def diff(self, name: str, first: int, second: int) -> dict[str, dict[str, list[Any]]]:
        """Params and metrics of two versions side by side: key -> [first, second]."""
        a, b = (self.get(f"{name}:v{check_version(v)}") for v in (first, second))
        return {
            section: {
                key: [(a.get(section) or {}).get(key), (b.get(section) or {}).get(key)]
                for key in sorted(set(a.get(section) or {}) | set(b.get(section) or {}))
            }
            for section in ("params", "metrics")
        }

    def verify(self, name: str | None = None) -> list[dict[str, Any]]:
        """Recompute every recorded sha256; one entry per file that is missing or differs."""
        problems = []
        for meta in self.list(name=name):
            for kind, entry in meta["artifacts"].items():
                path = self.store.root / entry["file"]
                if not path.is_file():
                    problem = "missing"
                elif sha256_file(path) != entry["sha256"]:
                    problem = "sha256 mismatch"
                else:
                    continue
                problems.append(
                    {"name": meta["name"], "version": meta["version"], "kind": kind}
                    | {"file": str(path), "problem": problem}
                )
        return problems

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
        pipeline's `comparison` with the current holder and its `inference` settings)."""
        name = model_name(family, scope, model_type)
        reserved = sorted(set(extra or {}) & _RECORDED)
        if reserved:
            raise ArtifactError(
                f"extra metadata may not set recorded fields: {', '.join(reserved)}"
            )
        files = _artifacts(Path(folder))
        shas = {kind: sha256_file(path) for kind, path in files.items()}
        content = hashlib.sha256(json.dumps(shas, sort_keys=True).encode()).hexdigest()
        origin = lineage.capture(data_fingerprint=data_fingerprint, parent_version=parent_version)
        with self.store.locked(), self._index(create=True) as index:
            existing = index.find_content(name, content)
            if existing:
                return existing | {"existing": True}
            version = self._allocate(name, index)
            artifacts = {}
            for kind, path in files.items():
                target = self.store.artifact(name, version, kind)
                copy_atomic(path, target)
                artifacts[kind] = {
                    "file": target.relative_to(self.store.root).as_posix(),
                    "sha256": shas[kind],
                    "bytes": target.stat().st_size,
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
            events.append(
                self.store.events_file, events.event(events.REGISTERED, name, version, self.actor)
            )
            index.add(meta)
        return meta

    def _allocate(self, name: str, index: Index) -> int:
        versions = self._versions()
        version = max(versions.get(name, 0), index.latest(name) or 0) + 1
        write_json(self.store.versions_file, versions | {name: version})
        return version

    def _versions(self) -> dict[str, int]:
        if not self.store.versions_file.exists():
            return {}
        data = read_json(self.store.versions_file, "versions.json")
        if not isinstance(data, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in data.values()
        ):
            raise CorruptStoreError(
                f"{self.store.versions_file}: expected a mapping of name -> latest version; "
                "run `registry reindex`"
            )
        return data

    def promote(
        self,
        name: str,
        version: int,
        alias: str = "production",
        reason: str = "",
        force: bool = False,
        floors: dict[str, float] | None = None,
        rollback_factor: float | None = None,
    ) -> dict[str, Any]:
        """Point `alias` at `version`. To `production`, the gate decides unless `force`."""
        name, version, alias = str(parse_name(name)), check_version(version), check_alias(alias)
        self._require_store()
        with self.store.locked(), self._index() as index:
            meta = index.get(name, version)
            if meta is None:
                raise NotFoundError(f"{name}:v{version}: no such model version; nothing promoted")
            self._check_files(meta)
            holder = index.alias(name, alias)
            if holder == version:
                return {"type": "unchanged", "name": name, "alias": alias, "version": version}
            extra: dict[str, Any] = {"alias": alias, "from_version": holder, "to_version": version}
            if alias == "production" and (floors or rollback_factor is not None):
                result = gate.check(meta, holder, floors or {}, rollback_factor)
                if not result.passed and not force:
                    raise GateError(
                        f"{name}:v{version} -> {alias} refused by the gate: "
                        + "; ".join(result.reasons)
                        + " (use --force to override; it is recorded)"
                    )
                extra |= {"gate": {"passed": result.passed, "reasons": result.reasons}}
                extra["gate"]["figures"] = result.figures
            record = events.event(events.PROMOTED, name, version, self.actor, reason, **extra)
            record["forced"] = force
            events.append(self.store.events_file, record)
            index.set_alias(name, alias, version)
        return record

    def rollback(self, name: str, alias: str = "production", reason: str = "") -> dict[str, Any]:
        """Return `alias` to the version that held it before, by its history."""
        name, alias = str(parse_name(name)), check_alias(alias)
        self._require_store()
        with self.store.locked(), self._index() as index:
            stack = events.alias_stacks(events.read(self.store.events_file)).get((name, alias), [])
            if len(stack) < 2:
                raise HistoryError(f"{name}@{alias}: no previous holder to roll back to")
            previous = index.get(name, stack[-2])
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
            events.append(self.store.events_file, record)
            index.set_alias(name, alias, stack[-2])
        return record

    def export(self, ref: str, to: Path, keep_backups: int = 3) -> Path:
        """Write the inference layout of a version to `to/{device}/` in one swap, keeping
        the bundle it replaces under `to/.backups/{device}/`."""
        meta = self.get(ref)
        self._check_files(meta)
        device = meta["scope"]
        to = Path(to)
        staging = to / f".staging-{device}"
        shutil.rmtree(staging, ignore_errors=True)
        layout = {
            "model": "ae_model.pth",
            "scale": "global_scale.npy",
            "threshold": f"thresholds/threshold_{device}.npy",
        }
        for kind, file in layout.items():
            if kind in meta["artifacts"]:
                copy_atomic(self.store.root / meta["artifacts"][kind]["file"], staging / file)
        manifest = {
            "device": device,
            "model": f"{meta['name']}:v{meta['version']}",
            "sha256": {
                file: sha256_file(staging / file)
                for file in layout.values()
                if (staging / file).exists()
            },
            **(meta.get("inference") or {}),
        }
        write_json(staging / "bundle.json", manifest)
        target = to / device
        if target.exists():
            backups = to / ".backups" / device
            backups.mkdir(parents=True, exist_ok=True)
            target.rename(backups / f"{time.time_ns():020d}")
            olds = sorted(backups.iterdir())
            for old in olds[: max(0, len(olds) - keep_backups)]:
                shutil.rmtree(old)
        staging.rename(target)
        return target

    def reindex(self) -> dict[str, int]:
        """Rebuild versions.json and the index from the metadata files and events.jsonl."""
        with self.store.locked():
            records = events.read(self.store.events_file)
            registered = {
                (e["name"], e["version"]) for e in records if e["type"] == events.REGISTERED
            }
            archived = {(e["name"], e["version"]) for e in records if e["type"] == events.ARCHIVED}
            metadata = []
            for key in sorted(registered - archived):
                path = self.store.metadata(*key)
                if not path.is_file():
                    raise CorruptStoreError(f"{path}: metadata of a registered version is missing")
                metadata.append(read_json(path, "metadata"))
            latest: dict[str, int] = {}
            for name, version in registered:
                latest[name] = max(latest.get(name, 0), version)
            write_json(self.store.versions_file, latest)
            self.store.index_file.unlink(missing_ok=True)  # derived data, rebuilt whole
            for suffix in ("-wal", "-shm"):
                Path(f"{self.store.index_file}{suffix}").unlink(missing_ok=True)
            holders = {key: stack[-1] for key, stack in events.alias_stacks(records).items()}
            index = Index(self.store.index_file, create=True)
            try:
                index.rebuild(metadata, holders)
            finally:
                index.close()
        return latest

    def gc(self, keep: int) -> list[str]:
        """Delete versions that hold no alias, were never an alias's holder that a rollback
        could return to, and are not among the newest `keep` of their model."""
        if keep < 1:
            raise ValueError(f"keep {keep!r}: expected an integer >= 1")
        removed = []
        self._require_store()
        with self.store.locked(), self._index() as index:
            stacks = events.alias_stacks(events.read(self.store.events_file))
            protected = {(n, v) for (n, _), stack in stacks.items() for v in stack}
            by_name: dict[str, list[dict[str, Any]]] = {}
            for meta in index.search():
                by_name.setdefault(meta["name"], []).append(meta)
            for name, metas in by_name.items():
                for meta in metas[:-keep]:
                    if (name, meta["version"]) in protected:
                        continue
                    for entry in meta["artifacts"].values():
                        (self.store.root / entry["file"]).unlink(missing_ok=True)
                    self.store.metadata(name, meta["version"]).unlink(missing_ok=True)
                    record = events.event(events.ARCHIVED, name, meta["version"], self.actor, "gc")
                    events.append(self.store.events_file, record)
                    index.remove(name, meta["version"])
                    removed.append(f"{name}:v{meta['version']}")
        return removed

    def _require_store(self) -> None:
        if not self.store.root.is_dir():
            raise NotFoundError(f"{self.store.root}: no model store here; nothing changed")

    def _check_files(self, meta: dict[str, Any]) -> None:
        for entry in meta["artifacts"].values():
            path = self.store.root / entry["file"]
            if not path.is_file() or sha256_file(path) != entry["sha256"]:
                raise IntegrityError(
                    f"{path}: missing or does not match the sha256 recorded at registration "
                    f"of {meta['name']}:v{meta['version']}; refused"
                )


def _artifacts(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: not a folder of artifacts to register")
    by_file = {file: kind for kind, file in ARTIFACTS.items()}
    present = {p.name for p in folder.iterdir()}
    extra = sorted(present - set(by_file))
    if extra:
        raise ArtifactError(
            f"{folder}: unexpected file(s) {', '.join(extra)}; expected only "
            + ", ".join(ARTIFACTS.values())
        )
    odd = sorted(name for name in present if not (folder / name).is_file())
    if odd:
        raise ArtifactError(f"{folder}: {', '.join(odd)} is not a regular file")
    missing = [ARTIFACTS[kind] for kind in REQUIRED if ARTIFACTS[kind] not in present]
    if missing:
        raise ArtifactError(f"{folder}: missing {', '.join(missing)}")
    return {by_file[name]: folder / name for name in sorted(present)}


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


def _held(aliases: dict[str, int], version: int) -> list[str]:
    return sorted(alias for alias, holder in aliases.items() if holder == version)


class _NoIndex:
    """Stands in for the index of a store nothing was ever registered in."""

    def alias(self, name: str, alias: str) -> None:
        return None

    def aliases_of(self, name: str) -> dict[str, int]:
        return {}

    def latest(self, name: str) -> None:
        return None

    def get(self, name: str, version: int) -> None:
        return None

    def search(self, *args: Any) -> list[dict[str, Any]]:
        return []


_EMPTY: Any = _NoIndex()
