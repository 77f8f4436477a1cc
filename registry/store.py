"""The flat store on disk: where each file lives, atomic writes, sha256, the lock.

  {name}_v{N}_{kind}{suffix}  each artifact kind the model's family declares; _metadata.json
  checkpoints/{name}_v{N}_{kind}{suffix}  the kinds it keeps for resuming a training
  versions.json   latest version per name (rebuildable)
  events.jsonl    append-only truth: registered, promoted, rolled back, archived
  index.sqlite    lookup index (rebuildable)
Every change happens under one file lock; a writer that cannot get it within the timeout
gives up before touching anything.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.errors import CorruptStoreError, LockTimeoutError
from registry.families import CHECKPOINTS, Artifact

if TYPE_CHECKING:
    from filelock import FileLock

DEFAULT_STORE = "model_store"


def is_default(explicit: str | Path | None = None) -> bool:
    """True when `locate` falls back to the project's own store (no --store, no $MODEL_STORE):
    the one store that a write may create; any store named on purpose must exist already,
    so that a mistyped path is refused instead of starting again at v1."""
    return not explicit and not os.environ.get("MODEL_STORE")


def locate(explicit: str | Path | None = None, cwd: Path | None = None) -> Path:
    """Where the store is; the CLI, the API and the pipeline all ask this one function.

    `--store` (the API's `root`), else $MODEL_STORE, else `model_store` at the root of the
    project: $DVC_ROOT inside a DVC stage (DVC points it at the original repository in an
    experiment's temp copy, so every experiment registers into the one store of its project),
    else the nearest folder above `cwd` that holds `.dvc/`, else `cwd`.
    """
    if explicit:
        return Path(explicit)
    if os.environ.get("MODEL_STORE"):
        return Path(os.environ["MODEL_STORE"])
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]) / DEFAULT_STORE
    cwd = (cwd or Path.cwd()).resolve()
    project = next((f for f in (cwd, *cwd.parents) if (f / ".dvc").is_dir()), cwd)
    return project / DEFAULT_STORE


class Store:
    def __init__(self, root: str | Path | None = None, lock_timeout: float = 10.0) -> None:
        self.root = locate(root)
        self.default = is_default(root)
        self.lock_timeout = lock_timeout
        self.versions_file = self.root / "versions.json"
        self.events_file = self.root / "events.jsonl"
        self.index_file = self.root / "index.sqlite"
        self.lock_file = self.root / ".lock"

    def artifact(self, name: str, version: int, artifact: Artifact) -> Path:
        file = f"{name}_v{version}_{artifact.kind}{artifact.source.suffix}"
        return self.root / CHECKPOINTS / file if artifact.checkpoint else self.root / file

    def metadata(self, name: str, version: int) -> Path:
        return self.root / f"{name}_v{version}_metadata.json"

    def check_regular(self) -> None:
        """Refuse a store whose own files are links or not what they should be: nothing is
        ever read or written through a symlink that could lead out of the store."""
        if self.root.exists() and not self.root.is_dir():
            raise CorruptStoreError(f"{self.root}: not a folder; expected a model store")
        for path in (self.lock_file, self.events_file, self.index_file, self.versions_file):
            if path.is_symlink() or (path.exists() and not path.is_file()):
                raise CorruptStoreError(
                    f"{path}: not a regular file (a link or a folder); the store's files must "
                    "be regular files inside it; nothing was changed"
                )
        checkpoints = self.root / CHECKPOINTS
        if checkpoints.is_symlink() or (checkpoints.exists() and not checkpoints.is_dir()):
            raise CorruptStoreError(f"{checkpoints}: not a folder inside the store")

    def exists(self) -> bool:
        """A store is here: a folder holding the log, the index, versions.json or a version's
        file (a store that lost its log and index is still a store, to be repaired). A file,
        or a link, where the store's folder or own files should be is refused."""
        self.check_regular()
        if not self.root.is_dir():
            return False
        own = (self.events_file, self.index_file, self.versions_file)
        return any(p.exists() for p in own) or any(owner(p) for p in self.files())

    def holds(self, path: Path) -> bool:
        """Is `path` the store's folder or inside it (links resolved)?"""
        target, root = Path(path).resolve(), self.root.resolve()
        return target == root or root in target.parents

    def files(self) -> list[Path]:
        """Every file in the store's two folders (not the store's lock)."""
        folders = [self.root, self.root / CHECKPOINTS]
        found = (p for f in folders if f.is_dir() for p in f.iterdir() if p.is_file())
        return sorted(p for p in found if p != self.lock_file)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock; LockTimeoutError if it stays taken past the timeout."""
        lock = self._acquire()
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """The lock, for a reader that must see the store whole (`verify`, `backup`): no
        writer is half-way through. A store on a read-only filesystem is read without it:
        nobody can be writing it."""
        try:
            lock: FileLock | None = self._acquire()
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise
            lock = None
        try:
            yield
        finally:
            if lock is not None:
                lock.release()

    def _acquire(self) -> FileLock:
        self.check_regular()
        self.root.mkdir(parents=True, exist_ok=True)
        busy = f"{self.root}: the store is locked by another process"
        return acquire(self.lock_file, self.lock_timeout, busy)


def acquire(path: Path, timeout: float, busy: str) -> FileLock:
    """Take the file lock at `path`; LockTimeoutError (`busy`, how long it waited) if it stays
    taken past `timeout`."""
    from filelock import FileLock, Timeout  # here: read-only commands start without it

    lock = FileLock(path, timeout=timeout)
    try:
        lock.acquire()
    except Timeout as exc:
        raise LockTimeoutError(f"{busy} (waited {timeout:g} s); nothing was changed") from exc
    return lock


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file, fsync, os.replace, fsync of the folder: all of it or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # a killed writer's; a link there goes, not what it points to
    with open_new(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def open_new(path: Path, flags: int) -> Any:
    """Open for writing without following a symlink at `path` (ELOOP instead)."""
    return os.fdopen(os.open(path, flags | os.O_NOFOLLOW, 0o644), "wb")


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def copy_atomic(src: Path, dst: Path) -> None:
    write_atomic(dst, src.read_bytes())


_STORED = re.compile(r"(?P<name>[^_]+_[^_]+_[^_]+)_v(?P<version>\d+)_[a-z_]+\.[a-z]+")
_TEMP = re.compile(r"\..+\.\d+\.tmp(-journal)?")  # the index is built with a journal


def owner(path: Path) -> tuple[str, int] | None:
    """The (name, version) a stored file belongs to, by its name; None for any other file."""
    match = _STORED.fullmatch(path.name)
    return (match["name"], int(match["version"])) if match else None


def is_temp(path: Path) -> bool:
    """A temp file of `write_atomic` or of the index's rebuild, left by a killed writer."""
    return bool(_TEMP.fullmatch(path.name))


def canonical_sha256(data: Any) -> str:
    """The digest of JSON data, whatever its formatting in a file."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def read_json(path: Path, what: str, repair: str = "run `registry reindex`") -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise CorruptStoreError(f"{path}: {what} is not valid JSON ({exc}); {repair}") from exc


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
