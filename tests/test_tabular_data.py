"""pipelines.tabular.data: which files under the root are tasks, reading a task's .npz or .csv,
and the one-line message for every reason a file cannot be used."""

from __future__ import annotations

import builtins
import contextlib
import io
import pickle
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipelines.errors import DataError
from pipelines.tabular.data import Skipped, find_tasks, read_rows, read_task, write_task
from pipelines.tabular.errors import TaskError

FEATURES = ("fix", "sacc", "blink")


def _table(rows: int = 4) -> tuple[np.ndarray, np.ndarray]:
    X = np.arange(rows * len(FEATURES), dtype=np.float64).reshape(rows, len(FEATURES)) / 4
    return X, X.sum(axis=1)


def _npz(path: Path, **arrays: object) -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    return path


def _refused(path: Path, *parts: str, target: str = "y", expected: tuple[str, ...] | None = None):
    """read_task's one-line message for `path`, which names the file and holds `parts`."""
    with pytest.raises(TaskError) as caught:
        read_task(path, target, expected)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for part in parts:
        assert part in message, message
    return message


def test_find_tasks_skips_and_reports_what_is_not_a_task(tmp_path: Path) -> None:
    write_task(tmp_path / "Q1.npz", *_table(), FEATURES)
    (tmp_path / "Q2.csv").write_text("fix,y\n1,2\n")
    (tmp_path / "Q3.csv").write_text("fix,y\n1,2\n")
    write_task(tmp_path / "Q3.npz", *_table(), FEATURES)
    (tmp_path / "_draft.csv").write_text("fix,y\n1,2\n")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "Q4.npz").mkdir()
    (tmp_path / "Q5.csv").symlink_to(tmp_path / "gone.csv")
    (tmp_path / ".Q6.csv").write_text("fix,y\n1,2\n")  # hidden: not read, not reported

    tasks, skipped = find_tasks(tmp_path)

    assert tasks == {"Q1": tmp_path / "Q1.npz", "Q2": tmp_path / "Q2.csv"}
    reasons = {s.path.name: s.reason for s in skipped}
    assert all(isinstance(s, Skipped) for s in skipped)
    assert set(reasons) == {"Q3.csv", "Q3.npz", "_draft.csv", "notes.txt", "Q4.npz", "Q5.csv"}
    assert "two files, Q3.csv and Q3.npz" in reasons["Q3.csv"] == reasons["Q3.npz"]
    assert "'_draft'" in reasons["_draft.csv"] and "not a valid" in reasons["_draft.csv"]
    assert "not .npz or .csv" in reasons["notes.txt"]
    assert "a folder" in reasons["Q4.npz"]
    assert "not a regular file" in reasons["Q5.csv"]


def test_a_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data root '.*nowhere' does not exist"):
        find_tasks(tmp_path / "nowhere")


def test_an_npz_task_with_any_number_of_features(tmp_path: Path) -> None:
    X, y = _table(5)
    task = read_task(write_task(tmp_path / "Q1.npz", X, y, FEATURES), "ignored")
    assert (task.name, task.features, task.path) == ("Q1", FEATURES, tmp_path / "Q1.npz")
    assert task.X.dtype == task.y.dtype == np.float64
    np.testing.assert_array_equal(task.X, X)
    np.testing.assert_array_equal(task.y, y)
    assert not task.X.flags.writeable and not task.y.flags.writeable

    one = read_task(_npz(tmp_path / "one.npz", X=np.ones((3, 1), np.int32), y=np.zeros(3)), "y")
    assert one.X.shape == (3, 1) and one.X.dtype == np.float64
    assert one.features == ("x1",)  # no names stored: x1..xF


def test_a_csv_task(tmp_path: Path) -> None:
    path = tmp_path / "Q2.csv"
    # A spreadsheet's export: a byte-order mark, CRLF, spaces, quotes, blank lines and a
    # trailing row of empty cells; the target may be any column.
    path.write_bytes(
        '\ufefffix, score ,sacc\r\n1.5,10,2\r\n\r\n"3",20, -4e-1\r\n,,\r\n'.encode("utf-8")
    )
    task = read_task(path, "score")
    assert task.features == ("fix", "sacc")
    np.testing.assert_array_equal(task.X, [[1.5, 2.0], [3.0, -0.4]])
    np.testing.assert_array_equal(task.y, [10.0, 20.0])


def test_expected_features_put_the_columns_in_the_models_order(tmp_path: Path) -> None:
    X, y = _table()
    path = write_task(tmp_path / "Q1.npz", X, y, FEATURES)
    task = read_task(path, "y", ("blink", "fix", "sacc"))
    assert task.features == ("blink", "fix", "sacc")
    np.testing.assert_array_equal(task.X, X[:, [2, 0, 1]])

    _refused(path, "missing 'pupil'", "extra 'sacc'", expected=("fix", "blink", "pupil"))
    _refused(path, "extra 'blink'", "expected 'fix', 'sacc', in any order", expected=FEATURES[:2])


def test_rows_to_score_need_the_models_columns_not_the_target_nor_a_task_name(
    tmp_path: Path,
) -> None:
    """What `fleet score` reads: any file name, the model's features in any order, and the
    target where the file has it; every other check of a task's file holds."""
    (tmp_path / "new rows.csv").write_text("blink,fix,sacc\n3,1,2\n6,4,5\n")
    rows = read_rows(tmp_path / "new rows.csv", "y", FEATURES)
    np.testing.assert_array_equal(rows.X, [[1, 2, 3], [4, 5, 6]])
    assert rows.y is None and rows.lines == (2, 3)
    X, y = _table()
    with_target = read_rows(write_task(tmp_path / "old.npz", X, y, FEATURES), "y", FEATURES)
    np.testing.assert_array_equal(with_target.y, y)
    no_y = read_rows(_npz(tmp_path / "x.npz", X=X, features=np.array(FEATURES)), "y", FEATURES)
    assert no_y.y is None and no_y.X.shape == X.shape
    (tmp_path / "bad.csv").write_text("fix,sacc,blink\n1,x,3\n")
    with pytest.raises(TaskError, match=r"line 2 \(data row 1\), column 'sacc': 'x' is not"):
        read_rows(tmp_path / "bad.csv", "y", FEATURES)
    with pytest.raises(TaskError, match="missing 'blink'"):
        read_rows(
            _npz(tmp_path / "two.npz", X=X[:, :2], features=np.array(FEATURES[:2])), "y", FEATURES
        )


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("fix,sacc\n1,2\n", ("no target column 'y'", "columns: 'fix', 'sacc'")),
        ("y\n1\n", ("only the target column 'y'", "expected features too")),
        ("fix,sacc,y\n", ("a header and no data rows",)),
        ("", ("empty file",)),
        (" \n\n", ("empty file",)),
        ("fix,,y\n1,2,3\n", ("line 1: column 2 has no name",)),
        ("fix,sacc,fix,y\n1,2,3,4\n", ("column 'fix' is named twice (columns 1 and 3)",)),
        ("fix,y\n1,2\n3,4,5\n", ("line 3 (data row 2): 3 values: expected 2",)),
        ("fix,y\n1,2\n\n3,abc\n", ("line 4 (data row 2), column 'y': 'abc' is not a number",)),
        ("fix,y\n1,2\n,4\n", ("line 3 (data row 2), column 'fix': '' is not a number",)),
        ("fix,y\n1,2\nnan,4\n", ("line 3 (data row 2), column 'fix': nan: expected a finite",)),
        ("fix,y\n1,2\n3,-inf\n", ("line 3 (data row 2), column 'y' (the target): -inf",)),
        ('fix,y\n1,"2\n', ("line 2: unexpected end of data",)),
    ],
)
def test_each_bad_csv_is_one_line_naming_the_row_and_column(
    tmp_path: Path, text: str, parts: tuple[str, ...]
) -> None:
    path = tmp_path / "Q1.csv"
    path.write_text(text)
    _refused(path, *parts)


def test_a_csv_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "Q1.csv"
    path.write_bytes("fix,y\n1,2\né,3\n".encode("latin-1"))
    _refused(path, "not UTF-8 text (byte 11)")


@pytest.mark.parametrize(
    ("arrays", "parts"),
    [
        ({"X": np.ones(3), "y": np.ones(3)}, ("array 'X' has shape (3,): expected 2-D",)),
        (
            {"X": np.ones((3, 2)), "y": np.ones((3, 1))},
            ("array 'y' has shape (3, 1): expected 1-D",),
        ),
        ({"X": np.ones((3, 2)), "y": np.ones(4)}, ("X has 3 rows but y has 4",)),
        (
            {"X": np.ones((0, 2)), "y": np.ones(0)},
            ("X has shape (0, 2): expected at least one row",),
        ),
        ({"X": np.ones((3, 2))}, ("no array y (arrays: X)",)),
        ({"y": np.ones(3)}, ("no array X (arrays: y)",)),
        ({"X": np.array([["a", "b"]]), "y": np.ones(1)}, ("array 'X' holds <U1 values",)),
        (
            {"X": np.ones((2, 2)), "y": np.ones(2), "features": np.array(["a"])},
            ("array 'features' is <U1 of shape (1,): expected 2 strings",),
        ),
        (
            {"X": np.ones((2, 2)), "y": np.ones(2), "features": np.array(["a", "a"])},
            ("array 'features': column 'a' is named twice (columns 1 and 2)",),
        ),
        (
            {"X": np.array([[1.0, np.nan]]), "y": np.ones(1), "features": np.array(["a", "b"])},
            ("row 1, column 'b': nan: expected a finite number",),
        ),
        (
            {"X": np.ones((2, 1)), "y": np.array([1.0, np.inf])},
            ("row 2, column 'y' (the target): inf",),
        ),
    ],
)
def test_each_bad_npz_is_one_line(tmp_path: Path, arrays: dict, parts: tuple[str, ...]) -> None:
    _refused(_npz(tmp_path / "Q1.npz", **arrays), *parts)


class _Trap:
    """Unpickling one creates `marker`: the proof that pickled data was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (builtins.open, (str(self.marker), "w"))


def test_pickled_data_is_refused_not_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    objects = np.array([_Trap(marker)], dtype=object)
    _refused(
        _npz(tmp_path / "Q1.npz", X=objects, y=np.ones(1)),
        "array 'X' refused (Object arrays cannot be loaded when allow_pickle=False)",
    )
    (tmp_path / "Q2.npz").write_bytes(pickle.dumps(_Trap(marker)))
    _refused(tmp_path / "Q2.npz", "not an .npz archive")
    assert not marker.exists()


def test_a_damaged_npz(tmp_path: Path) -> None:
    whole = _npz(tmp_path / "whole.npz", X=np.ones((3, 2)), y=np.ones(3)).read_bytes()
    (tmp_path / "Q1.npz").write_bytes(whole[:200])
    _refused(tmp_path / "Q1.npz", "not a readable .npz archive")
    (tmp_path / "Q2.npz").write_bytes(b"")
    _refused(tmp_path / "Q2.npz", "empty file")


def test_a_file_whose_name_is_no_task(tmp_path: Path) -> None:
    path = write_task(tmp_path / "my_task.npz", *_table(), FEATURES)
    _refused(path, "task name 'my_task' is not a valid")


def test_reading_never_changes_the_data(tmp_path: Path) -> None:
    write_task(tmp_path / "Q1.npz", *_table(), FEATURES)
    (tmp_path / "Q2.csv").write_text("fix,y\n1,2\n")
    (tmp_path / "Q3.csv").write_text("fix,y\n1,abc\n")
    _npz(tmp_path / "Q4.npz", X=np.ones(3), y=np.ones(3))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    tasks, _ = find_tasks(tmp_path)
    for path in tasks.values():
        with contextlib.suppress(TaskError):
            read_task(path, "y", ("fix",))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_write_task_gives_the_same_bytes_at_any_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = _table()
    first = write_task(tmp_path / "a.npz", X, y, FEATURES).read_bytes()
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)  # another day and hour
    second = write_task(tmp_path / "b.npz", X, y, FEATURES).read_bytes()
    assert first == second
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert archive.namelist() == ["X.npy", "y.npy", "features.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz"]  # no partial left
