"""Bundles in a deploy folder, written so that nothing can be hurt.

  {to}/{scope}                     a symlink to .bundles/{scope}/{id}: what runs
  {to}/.bundles/                   the exporter's own folder, known by its marker file
  {to}/.bundles/{scope}/{id}/      one complete bundle, never changed once written
  {to}/.bundles/.lock              one exporter at a time per deploy folder

A bundle is written whole under a fresh name (files, manifest, fsync) and only then put in
place, by replacing the link in one `os.replace`: a reader finds the old bundle or the new
one, never none; one that resolves the link once (as `load_bundle` does) reads one bundle,
never a mix. A kill at any moment leaves the previous link, or the new one, whole.
Only what the exporter wrote is ever replaced or deleted: a `{to}/{scope}` that is not its
link, or a `.bundles` without its marker, is refused and left as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import ExportError, IntegrityError
from registry.naming import check_device_code
from registry.store import acquire, fsync_dir

OWN = ".bundles"
MARKER = ".written-by-registry-export"
MANIFEST = "bundle.json"
PARTIAL = ".partial"


@contextmanager
def locked(to: Path, timeout: float = 30.0) -> Iterator[Path]:
    """Hold the deploy folder's export lock; yields the exporter's own folder."""
    own = _own_folder(to)
    lock = acquire(own / ".lock", timeout, f"{to}: another export holds the lock")
    try:
        yield own
    finally:
        lock.release()


def current(to: Path, scope: str) -> Path | None:
    """The bundle folder `{to}/{scope}` links to, when it is the exporter's link; else None."""
    link = Path(to) / scope
    if not link.is_symlink():
        return None
    target = os.readlink(link)
    parts = Path(target).parts
    if len(parts) != 3 or parts[:2] != (OWN, scope) or parts[2].endswith(PARTIAL):
        return None
    folder = Path(to) / target
    return folder if (folder / MANIFEST).is_file() else None


def exported(to: Path) -> dict[str, Path]:
    """Scope -> bundle folder of every bundle the exporter has in place in `to`."""
    to = Path(to)
    if not (to / OWN / MARKER).is_file():
        return {}
    found = {}
    for entry in sorted(to.iterdir()):
        folder = current(to, entry.name)
        if folder is not None:
            found[entry.name] = folder
    return found


def is_intact(folder: Path, model: str) -> bool:
    """True when `folder` holds `model` and every file matches its manifest's sha256."""
    try:
        shipped = read_bundle(folder)
        return shipped.manifest.get("model") == model and all(
            shipped.read(name) is not None for name in shipped.manifest["sha256"]
        )
    except IntegrityError:
        return False


@dataclass(frozen=True)
class Shipped:
    """A bundle as its reader sees it: the folder it resolved to and its manifest."""

    folder: Path
    manifest: dict[str, Any]

    def read(self, name: str) -> bytes:
        """A file of the bundle, checked against its manifest's sha256 before it is handed
        out: what is loaded is what was exported."""
        sums = self.manifest["sha256"]
        path = self.folder / name
        if name not in sums:
            raise IntegrityError(f"{path}: not in the bundle's manifest; refused")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IntegrityError(
                f"{path}: cannot read it ({exc.strerror or exc}); refused"
            ) from exc
        if _sha256(data) != sums[name]:
            raise IntegrityError(f"{path}: does not match its recorded sha256; refused")
        return data


def read_bundle(folder: Path) -> Shipped:
    """A bundle folder (a deployed `{to}/{scope}` link or the folder it names), resolved
    once, so that every file is read from one bundle, never a mix, while an export swaps
    the link; IntegrityError when it has no readable manifest."""
    folder = Path(folder).resolve()
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        if not isinstance(manifest.get("sha256"), dict):
            raise ValueError("it lists no sha256 of its files")
    except (OSError, ValueError, AttributeError) as exc:
        raise IntegrityError(
            f"{folder / MANIFEST}: cannot read the bundle's manifest ({exc}); "
            "expected a bundle folder written by `registry export`"
        ) from exc
    return Shipped(folder, manifest)


def write(
    own: Path, scope: str, files: dict[str, bytes], manifest: dict[str, Any], keep: int
) -> Path:
    """Put a bundle of `files` in place as `{to}/{scope}`; call it holding `locked(to)`."""
    to = own.parent
    link = to / check_device_code(scope, "scope")
    if (link.exists() or link.is_symlink()) and current(to, scope) is None:
        raise ExportError(
            f"{link}: not a bundle the exporter wrote; refused, it was left as it is "
            "(move it away to export here)"
        )
    bundles = own / scope
    bundles.mkdir(exist_ok=True)
    bundle_id = f"{time.time_ns():020d}-{os.getpid()}"
    partial = bundles / f"{bundle_id}{PARTIAL}"
    for name, data in files.items():
        _write_synced(partial / name, data)
    sums = {name: _sha256(data) for name, data in files.items()}
    text = json.dumps(manifest | {"sha256": sums}, indent=2, sort_keys=True) + "\n"
    _write_synced(partial / MANIFEST, text.encode())
    os.rename(partial, bundles / bundle_id)
    fsync_dir(bundles)
    # made in the exporter's folder ('_' keeps it apart from a scope's folder there) and
    # renamed into place; its text is relative to `to`, where it ends up
    temp_link = own / f"_link_{scope}"
    temp_link.unlink(missing_ok=True)
    os.symlink(Path(OWN) / scope / bundle_id, temp_link)
    os.replace(temp_link, link)
    fsync_dir(to)
    _prune(bundles, bundle_id, keep)
    return link


def remove(own: Path, scope: str, keep: int) -> None:
    """Take `{to}/{scope}` out of service (the exporter's link only; call it holding the lock).
    Its bundles stay in `.bundles/` up to `keep`."""
    to = own.parent
    if current(to, scope) is None:
        raise ExportError(f"{to / scope}: not a bundle the exporter wrote; left as it is")
    (to / scope).unlink()
    fsync_dir(to)
    _prune(own / scope, None, keep)


def _own_folder(to: Path) -> Path:
    """`{to}/.bundles`, made with its marker on first use; refused when someone else's."""
    to = Path(to)
    if to.exists() and not to.is_dir():
        raise ExportError(f"{to}: exists and is not a folder; expected a deploy folder")
    own = to / OWN
    if not own.exists() and not own.is_symlink():
        to.mkdir(parents=True, exist_ok=True)
        fresh = to / f"{OWN}.{os.getpid()}{PARTIAL}"
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir()
        _write_synced(fresh / MARKER, b"bundles written by `registry export`; do not edit\n")
        try:
            os.rename(fresh, own)
        except OSError:  # another exporter made it first
            shutil.rmtree(fresh, ignore_errors=True)
    if own.is_symlink() or not (own / MARKER).is_file():
        raise ExportError(
            f"{own}: not the exporter's folder (no marker {MARKER}); refused, nothing changed"
        )
    return own


def _prune(bundles: Path, keep_id: str | None, keep: int) -> None:
    """Clear unfinished bundles; keep `keep_id` and the newest `keep` others."""
    finished = []
    for folder in sorted(p for p in bundles.iterdir() if p.is_dir()):
        if folder.name.endswith(PARTIAL):
            shutil.rmtree(folder)
        elif folder.name != keep_id:
            finished.append(folder)
    for folder in finished[: max(0, len(finished) - keep)]:
        shutil.rmtree(folder)


def _write_synced(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
