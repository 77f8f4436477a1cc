"""`registry backup TO`: a copy of the store as it is between two writes.

Taken under the store's lock, so no write is half-way through it: `registry verify --store TO`
accepts it whenever the store itself verifies. It is written under a temp name beside TO and
renamed into place, so TO is a whole copy or absent. Restoring is a plain copy back into a new
folder (README, "The model registry").
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from registry.errors import UsageError
from registry.store import Store, fsync_dir, is_temp


def take(store: Store, to: Path) -> list[Path]:
    """Copy every file of the store (not its lock, nor a dead writer's temp file) into `to`,
    a new or empty folder outside the store; the files copied, relative to the store."""
    _check_target(store, to)
    temp = to.with_name(f".{to.name}.{os.getpid()}.partial")
    with store.reading():
        files = [p.relative_to(store.root) for p in store.files() if not is_temp(p)]
        for file in files:
            _copy(store.root / file, temp / file)
        for folder in {temp, *(temp / f.parent for f in files)}:
            fsync_dir(folder)
        os.replace(temp, to)  # an empty folder at `to` is replaced in the same step
    fsync_dir(to.parent)
    return files


def _check_target(store: Store, to: Path) -> None:
    if store.holds(to):
        raise UsageError(f"{to}: is inside the store {store.root}; a backup goes elsewhere")
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise UsageError(
            f"{to}: exists and is not an empty folder; a backup goes into a new or empty "
            "folder; nothing was written"
        )


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as source, open(dst, "xb") as target:
        shutil.copyfileobj(source, target)
        target.flush()
        os.fsync(target.fileno())
