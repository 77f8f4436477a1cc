"""A folder as a value, to assert that nothing was written under it: every path with its
modification time and content."""

from __future__ import annotations

import os
from pathlib import Path

Entry = tuple[int, bytes | str | None]


def tree(root: Path) -> dict[str, Entry]:
    """Every path under `root`, itself included -> (mtime in ns, content): a file's bytes, a
    link's target (not followed), None for a folder. A file made and removed again still
    shows, in its folder's mtime."""
    found = {".": _entry(root)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            found[path.relative_to(root).as_posix()] = _entry(path)
    return found


def _entry(path: Path) -> Entry:
    mtime = path.lstat().st_mtime_ns
    if path.is_symlink():
        return mtime, os.readlink(path)
    return mtime, path.read_bytes() if path.is_file() else None
