"""Naming rules shared by the pipeline and the registry.

A device code (and every component of a model name) becomes part of a path and of
a file-name prefix, so it is checked here, in one place, before it is used.
"""

from __future__ import annotations

import re

from registry.errors import InvalidNameError

# Letters, digits, '.' and '-', starting with a letter or digit: no '/', no '_'
# (the registry's component separator), no spaces, nothing hidden.
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,63}")


def is_device_code(text: str) -> bool:
    """True when `text` may name a device (and so a folder and a name component)."""
    return bool(_CODE.fullmatch(text)) and ".." not in text


def check_device_code(text: str, where: str = "device code") -> str:
    """Return `text` unchanged, or raise InvalidNameError saying what is wrong."""
    if not is_device_code(text):
        raise InvalidNameError(
            f"{where} {text!r} is not a valid device code: expected 1-64 letters, digits, "
            "'.' or '-', starting with a letter or digit (no '/', '..', '_' or spaces)"
        )
    return text
