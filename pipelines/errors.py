"""Typed errors of the pipeline; each message names the file, device, key or value."""

from __future__ import annotations

from pathlib import Path


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class ParamError(PipelineError, ValueError):
    """A params.yaml value that is missing, unknown, of the wrong type or out of range."""


class DataError(PipelineError):
    """The data root as a whole cannot be used (missing, or an invalid device folder)."""


class ClusterError(PipelineError):
    """The Dask cluster a stage was given cannot take its work (no scheduler, no workers, a
    worker that cannot see the data): said before any work starts."""


class IntegrityError(PipelineError, ValueError):
    """A file whose bytes do not match the sha256 recorded for it: it is never loaded."""


class ClipError(PipelineError):
    """One audio clip cannot be used; the clip is skipped and reported."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class DeviceError(PipelineError):
    """One device cannot be processed; it fails alone and the fleet goes on."""

    def __init__(self, device: str, reason: str) -> None:
        super().__init__(f"device {device}: {reason}")
        self.device = device
        self.reason = reason


class DeviceSkipped(PipelineError):
    """A device with nothing to learn from this run (no clips on the day, too few usable
    clips): it is skipped with its reason, which is not a failure."""

    def __init__(self, device: str, reason: str) -> None:
        super().__init__(f"device {device}: {reason}")
        self.device = device
        self.reason = reason
