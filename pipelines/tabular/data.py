"""Where the tabular family's tasks live, and reading one task's table of features and target.

One file per task under the data root, named after the task (a device code: letters, digits,
'.' and '-', starting with a letter or digit):

    {root}/{task}.npz   arrays X (rows x features), y (rows) and optionally features (the
                        column names; x1..xF when absent), read without pickle
    {root}/{task}.csv   a header row naming the columns, then one row per sample: the feature
                        columns and the target column, whose name is a parameter

Anything else under the root (another suffix, a folder, a name that is no task code, a task
with both a .csv and an .npz) is skipped and reported by name; hidden entries are not read.
Every reason a file cannot be used is one TaskError line that names the file, and the row
and column where there is one. Rows count as a person reading the data does: data row 1 is
the first row of values; for a CSV the file's line is given too (the header is line 1, as a
spreadsheet numbers its rows). Reading never writes under the root.

`write_task` writes the .npz layout with fixed time stamps, so that the same arrays give the
same bytes and generated data is reproducible.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipelines.errors import DataError
from pipelines.tabular.errors import TaskError
from registry.errors import InvalidNameError
from registry.naming import check_device_code

SUFFIXES = (".csv", ".npz")
_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest time: no clock in the bytes
_NUMBERS = "iuf"  # numpy dtype kinds a feature or target may have


class Skipped(NamedTuple):
    """Something under the data root that is not a task, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Task:
    """One task's table; X (rows x features) and y (rows) are float64 and read-only."""

    name: str
    X: np.ndarray
    y: np.ndarray
    features: tuple[str, ...]
    path: Path


@dataclass(frozen=True)
class Rows:
    """Rows to predict: X (rows x the model's features, in its order), y when the file has
    the target, and each row's CSV line (None for an .npz)."""

    X: np.ndarray
    y: np.ndarray | None
    lines: tuple[int, ...] | None


class _Table(NamedTuple):
    """A file's values before they are checked; `lines` maps data rows to CSV lines."""

    X: np.ndarray
    y: np.ndarray | None  # None: no target, where none is needed
    features: tuple[str, ...]
    target: str
    lines: tuple[int, ...] | None  # None for an .npz: it has no lines


def find_tasks(root: Path) -> tuple[dict[str, Path], list[Skipped]]:
    """Map each task under `root` to its file; skip and report what is not one task's file."""
    if not root.is_dir():
        raise DataError(
            f"data root {str(root)!r} does not exist or is not a folder: expected a folder "
            "with one {task}.npz or {task}.csv per task"
        )
    files: dict[str, list[Path]] = {}
    skipped = []
    for entry in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if entry.is_dir():
            skipped.append(Skipped(entry, "a folder: expected a {task}.npz or {task}.csv file"))
        elif entry.suffix.lower() not in SUFFIXES:
            skipped.append(Skipped(entry, "not .npz or .csv: expected {task}.npz or {task}.csv"))
        elif not entry.is_file():
            skipped.append(Skipped(entry, "not a regular file"))
        else:
            try:
                files.setdefault(check_device_code(entry.stem, where="task name"), []).append(entry)
            except InvalidNameError as exc:
                skipped.append(Skipped(entry, str(exc)))
    tasks = {}
    for task, paths in files.items():
        if len(paths) == 1:
            tasks[task] = paths[0]
        else:
            both = " and ".join(p.name for p in paths)
            skipped += [Skipped(p, f"task {task} has two files, {both}: keep one") for p in paths]
    return tasks, sorted(skipped)


def read_task(path: Path, target: str, expected_features: Sequence[str] | None = None) -> Task:
    """One task's table from its .npz or .csv (`target` names a CSV's target column). With
    `expected_features` (a model's, when fine-tuning) the columns must be exactly those; they
    are put in that order."""
    task = path.stem
    try:
        check_device_code(task, where="task name")
    except InvalidNameError as exc:
        raise _bad(path, str(exc)) from None
    table = _read(path, target, expected_features, need_target=True)
    assert table.y is not None  # needed, so read or refused
    return Task(task, _frozen(table.X), _frozen(table.y), table.features, path)


def read_rows(path: Path, target: str, features: Sequence[str]) -> Rows:
    """Rows for a model that reads `features` to predict from, in a file of any name: its
    columns exactly those (in any order; put in the model's), the target (a CSV's `target`
    column, an .npz's y) optional. The same checks, and lines, as a task's file."""
    table = _read(path, target, features, need_target=False)
    return Rows(_frozen(table.X), None if table.y is None else _frozen(table.y), table.lines)


def _read(path: Path, target: str, expected: Sequence[str] | None, need_target: bool) -> _Table:
    if path.suffix.lower() not in SUFFIXES:
        raise _bad(path, f"suffix {path.suffix!r}: expected .npz or .csv")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _bad(path, f"cannot read ({exc.strerror or exc})") from exc
    if not data.strip():
        raise _bad(path, "empty file: expected a table of features and a target")
    reader = _read_npz if path.suffix.lower() == ".npz" else _read_csv
    table = reader(data, path, target, need_target)
    _check_finite(table, path)
    return table if expected is None else _in_order(table, tuple(expected), path)


def write_task(path: Path, X: np.ndarray, y: np.ndarray, features: Sequence[str]) -> Path:
    """Write one task as an .npz of X, y and features, atomically; the same arrays give the
    same bytes (np.savez stamps the current time into the archive)."""
    arrays = {
        "X": np.asarray(X, dtype=np.float64),
        "y": np.asarray(y, dtype=np.float64),
        "features": np.asarray(features, dtype=str),
    }
    archive_bytes = io.BytesIO()
    with zipfile.ZipFile(archive_bytes, "w", zipfile.ZIP_STORED) as archive:
        for key, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, value, allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{key}.npy", _ZIP_EPOCH), member.getvalue())
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(archive_bytes.getvalue())
    os.replace(partial, path)  # a reader sees the old file or the whole new one
    return path


def _read_npz(data: bytes, path: Path, target: str, need_target: bool) -> _Table:
    # `target` names a CSV's column: an .npz's target is always its array y.
    if not data.startswith(_ZIP_MAGIC):
        # np.load would take such bytes for a pickle: refused before it is asked
        raise _bad(path, "not an .npz archive: expected arrays X and y saved by numpy")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            needed = ("X", "y") if need_target else ("X",)
            if missing := [key for key in needed if key not in npz.files]:
                raise _bad(
                    path,
                    f"no array {' or '.join(missing)} (arrays: {', '.join(npz.files) or 'none'}): "
                    "expected X (rows x features), y (rows) and optionally features",
                )
            arrays = {key: _array(npz, key, path) for key in npz.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise _bad(path, f"not a readable .npz archive ({exc})") from exc
    X, y = arrays["X"], arrays.get("y")
    checked = [("X", X, 2, "rows x features")] + [("y", y, 1, "one per row")] * (y is not None)
    for key, array, ndim, shape in checked:
        if array.dtype.kind not in _NUMBERS:
            raise _bad(path, f"array {key!r} holds {array.dtype} values: expected numbers")
        if array.ndim != ndim:
            raise _bad(path, f"array {key!r} has shape {array.shape}: expected {ndim}-D ({shape})")
    if y is not None and len(X) != len(y):
        raise _bad(path, f"X has {len(X)} rows but y has {len(y)}: expected one y per row")
    if len(X) == 0 or X.shape[1] == 0:
        raise _bad(path, f"X has shape {X.shape}: expected at least one row and column")
    return _Table(X, y, _npz_features(arrays.get("features"), X.shape[1], path), "y", None)


def _array(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:  # numpy's words: an object array needs pickle, never allowed
        raise _bad(path, f"array {key!r} refused ({exc}): expected numbers") from exc


def _npz_features(names: np.ndarray | None, columns: int, path: Path) -> tuple[str, ...]:
    if names is None:
        return tuple(f"x{j + 1}" for j in range(columns))
    if names.dtype.kind != "U" or names.shape != (columns,):
        raise _bad(
            path,
            f"array 'features' is {names.dtype} of shape {names.shape}: expected {columns} "
            "strings, one name per column of X",
        )
    features = tuple(str(name) for name in names)
    _check_names(features, path, "array 'features'")
    return features


def _read_csv(data: bytes, path: Path, target: str, need_target: bool) -> _Table:
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's export may start with a BOM
    except UnicodeDecodeError as exc:
        raise _bad(path, f"not UTF-8 text (byte {exc.start + 1}): expected CSV") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)  # bad quoting: an error
    try:
        # a row of nothing but blanks (a spreadsheet's trailing ",,,") is no data
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise _bad(path, f"line {reader.line_num}: {exc}: expected CSV") from exc
    if not rows:
        raise _bad(path, "no header row: expected a header naming the columns")
    (header_line, header), body = rows[0], rows[1:]
    names = tuple(cell.strip() for cell in header)
    _check_names(names, path, f"line {header_line}")
    if target not in names and need_target:
        raise _bad(path, f"no target column {target!r} (columns: {_listed(names)}): expected one")
    features = tuple(name for name in names if name != target)
    if not features:
        raise _bad(path, f"only the target column {target!r}: expected features too")
    if not body:
        raise _bad(path, "a header and no data rows: expected one row per sample")
    values = np.array([_numbers(row, names, line, i, path) for i, (line, row) in enumerate(body)])
    columns = [names.index(name) for name in features]
    lines = tuple(line for line, _ in body)
    y = values[:, names.index(target)] if target in names else None
    return _Table(values[:, columns], y, features, target, lines)


def _numbers(row: list[str], names: tuple[str, ...], line: int, i: int, path: Path) -> list[float]:
    where = _row(i, line)
    if len(row) != len(names):
        raise _bad(path, f"{where}: {len(row)} values: expected {len(names)}, one per column")
    numbers = []
    for cell, name in zip(row, names, strict=True):
        try:
            numbers.append(float(cell))
        except ValueError:
            raise _bad(path, f"{where}, column {name!r}: {cell!r} is not a number") from None
    return numbers


def _check_names(names: tuple[str, ...], path: Path, where: str) -> None:
    first: dict[str, int] = {}
    for j, name in enumerate(names, start=1):
        if not name:
            raise _bad(path, f"{where}: column {j} has no name: expected one")
        if name in first:
            raise _bad(
                path,
                f"{where}: column {name!r} is named twice (columns {first[name]} and {j}): "
                "expected each name once",
            )
        first[name] = j


def _check_finite(table: _Table, path: Path) -> None:
    checked = [(table.X, table.features, "")]
    if table.y is not None:
        checked.append((table.y[:, None], (table.target,), " (the target)"))
    for values, names, role in checked:
        bad = np.argwhere(~np.isfinite(values))
        if len(bad):
            i, j = (int(k) for k in bad[0])  # the first in reading order
            where = _row(i, table.lines[i] if table.lines else None)
            raise _bad(
                path,
                f"{where}, column {names[j]!r}{role}: {values[i, j]}: expected a finite number",
            )


def _in_order(table: _Table, expected: tuple[str, ...], path: Path) -> _Table:
    missing = [name for name in expected if name not in table.features]
    extra = [name for name in table.features if name not in expected]
    if missing or extra:
        wrong = [f"missing {_listed(missing)}"] * bool(missing)
        wrong += [f"extra {_listed(extra)}"] * bool(extra)
        raise _bad(
            path,
            f"columns are not the model's: {'; '.join(wrong)} "
            f"(expected {_listed(expected)}, in any order)",
        )
    order = [table.features.index(name) for name in expected]
    return table._replace(X=table.X[:, order], features=expected)


def _bad(path: Path, reason: str) -> TaskError:
    return TaskError(path.stem, reason, path)


def _row(i: int, line: int | None) -> str:
    """Where data row `i` (from 0) is, counted from 1 as a person counts, and its CSV line."""
    return f"row {i + 1}" if line is None else f"line {line} (data row {i + 1})"


def _listed(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.float64, order="C")  # a copy: the Task owns its values
    array.setflags(write=False)
    return array
