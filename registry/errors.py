"""Typed errors of the registry; each message names what is wrong.

Every refused operation raises one of these before it changes anything in the store.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of every error the registry raises on purpose."""


class InvalidNameError(RegistryError, ValueError):
    """A device code, model name, alias or version that breaks the naming rules."""


class NotFoundError(RegistryError, LookupError):
    """A model, version or alias that the store does not hold."""


class ArtifactError(RegistryError, ValueError):
    """A folder to register with a missing, extra or unreadable artifact."""


class IntegrityError(RegistryError):
    """A stored file whose bytes do not match the sha256 recorded at registration."""


class CorruptStoreError(RegistryError):
    """versions.json, the index or events.jsonl cannot be read; `registry reindex` may help."""


class LockTimeoutError(RegistryError, TimeoutError):
    """The store's lock was held by someone else for longer than the timeout."""


class GateError(RegistryError):
    """A promotion refused by the gate; the message carries the figures, `results` the checks."""

    def __init__(self, message: str, results: dict | None = None) -> None:
        super().__init__(message)
        self.results = results or {}


class UsageError(RegistryError, ValueError):
    """A request that cannot be carried out as asked (e.g. --force without a reason)."""


class ExportError(RegistryError):
    """An export refused: the target holds something the exporter did not write, or the
    version cannot be shipped (no exporter for its family, weights that do not load)."""


class HistoryError(RegistryError):
    """A rollback of an alias that has no previous holder."""


class IncomparableError(Exception):
    """Raised by a family's `compare` when the two models' errors are on different scales
    (e.g. two types of model for one device); the gate then compares their metrics. Not a
    RegistryError: the family raises it, the registry never does."""
