"""The tabular family's typed error: one task's data or split cannot be used.

A subclass of the pipeline's DataError, so that code catching DataError also catches it; the
message is one line that names the file (or the task when there is no file) and says what
was expected.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.errors import DataError


class TaskError(DataError):
    """One task cannot be used; the task fails alone and the others go on."""

    def __init__(self, task: str, reason: str, path: Path | None = None) -> None:
        super().__init__(f"{path}: {reason}" if path is not None else f"task {task}: {reason}")
        self.task = task
        self.reason = reason
        self.path = path
