"""Naming rules shared by the pipeline and the registry.

A device code (and every component of a model name) becomes part of a path and of a
file-name prefix, so it is checked here, in one place, before it is used. A model name is
`{family}_{scope}_{model_type}`; components never contain `_`, so it splits unambiguously.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.errors import InvalidNameError

# Letters, digits, '.' and '-', starting with a letter or digit: no '/', no '_'
# (the component separator), no spaces, nothing hidden.
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,63}")
_REF = re.compile(r"(?P<name>[^:@]+)(?::v(?P<version>\d+)|@(?P<alias>[^:@]+))?")


def is_device_code(text: str) -> bool:
    """True when `text` may name a device (and so a folder and a name component)."""
    return isinstance(text, str) and bool(_CODE.fullmatch(text)) and ".." not in text


def check_device_code(text: str, where: str = "device code") -> str:
    """Return `text` unchanged, or raise InvalidNameError saying what is wrong."""
    if not is_device_code(text):
        raise InvalidNameError(
            f"{where} {text!r} is not a valid device code: expected 1-64 letters, digits, "
            "'.' or '-', starting with a letter or digit (no '/', '..', '_' or spaces)"
        )
    return text


def model_name(family: str, scope: str, model_type: str) -> str:
    """`{family}_{scope}_{model_type}`, each component checked."""
    for where, part in (("family", family), ("scope", scope), ("model type", model_type)):
        check_device_code(part, where=where)
    return f"{family}_{scope}_{model_type}"


@dataclass(frozen=True)
class ModelName:
    family: str
    scope: str
    model_type: str

    def __str__(self) -> str:
        return f"{self.family}_{self.scope}_{self.model_type}"


def parse_name(text: str) -> ModelName:
    """Split and check a model name; refuse anything that is not three valid components."""
    parts = text.split("_") if isinstance(text, str) else []
    if len(parts) != 3:
        raise InvalidNameError(
            f"model name {text!r}: expected family_scope_modeltype, e.g. acoustic_LT-2_convae"
        )
    model_name(*parts)
    return ModelName(*parts)


def check_alias(text: str) -> str:
    return check_device_code(text, where="alias")


MAX_VERSION = 2**63 - 1  # SQLite's largest integer


def check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        shown = (
            f"{str(version)[:20]}..."
            if isinstance(version, int) and version > MAX_VERSION
            else repr(version)
        )
        raise InvalidNameError(f"version {shown}: expected an integer from 1 to {MAX_VERSION}")
    return version


@dataclass(frozen=True)
class Ref:
    """NAME, NAME:vN or NAME@alias."""

    name: str
    version: int | None = None
    alias: str | None = None


def parse_ref(text: str) -> Ref:
    match = _REF.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise InvalidNameError(f"{text!r}: expected NAME, NAME:vN or NAME@alias")
    name = str(parse_name(match["name"]))
    if match["version"]:
        return Ref(name, version=check_version(int(match["version"])))
    if match["alias"]:
        return Ref(name, alias=check_alias(match["alias"]))
    return Ref(name)
