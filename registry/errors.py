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
    """A promotion refused by the gate; the message carries the figures."""


class HistoryError(RegistryError):
    """A rollback of an alias that has no previous holder."""
