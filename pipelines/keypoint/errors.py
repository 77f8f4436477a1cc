"""The keypoint family's typed errors: one sample cannot be used (it is skipped and
reported), or one site cannot be used (it fails alone and the other sites go on).

Subclasses of the pipeline's errors, so that code catching DataError also catches a site's;
each message is one line that names the file (or the site) and says what was expected.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.errors import DataError, PipelineError


class SampleError(PipelineError):
    """One image or one line of a labels file cannot be used; it is skipped and reported."""

    def __init__(self, path: Path, reason: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.reason = reason
        self.line = line


class SiteError(DataError):
    """One site's folder cannot be used (no labels file, no usable sample)."""

    def __init__(self, site: str, reason: str, path: Path | None = None) -> None:
        super().__init__(f"{path}: {reason}" if path is not None else f"site {site}: {reason}")
        self.site = site
        self.reason = reason
        self.path = path
