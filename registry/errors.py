"""Typed errors of the registry; each message names what is wrong."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of every error the registry raises on purpose."""


class InvalidNameError(RegistryError, ValueError):
    """A device code, model name or version that breaks the naming rules."""
