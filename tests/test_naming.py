"""registry.naming: which device codes are valid, and what the refusal says."""

from __future__ import annotations

import pytest

from registry.errors import InvalidNameError, RegistryError
from registry.naming import check_device_code, is_device_code

VALID = ["LT-2", "FAN-7", "a", "A.b-3", "0", "9-a", "x" * 64, "a.b.c", "Z-"]
INVALID = [
    "",
    "-x",
    ".x",
    "a/b",
    "/a",
    "a\\b",
    "a..b",
    "a_b",
    "a b",
    " a",
    "a\n",
    "x" * 65,
    "..",
    ".",
    "é",
    "a:b",
]


@pytest.mark.parametrize("code", VALID)
def test_valid_codes(code: str) -> None:
    assert is_device_code(code)
    assert check_device_code(code) is code


@pytest.mark.parametrize("code", INVALID)
def test_invalid_codes(code: str) -> None:
    assert not is_device_code(code)
    with pytest.raises(InvalidNameError):
        check_device_code(code)


def test_refusal_message_names_the_place_the_value_and_the_rule() -> None:
    with pytest.raises(InvalidNameError) as caught:
        check_device_code("a_b", where="device folder")
    message = str(caught.value)
    assert message.startswith("device folder 'a_b' is not a valid device code")
    for rule in ("1-64", "letters, digits", "'.' or '-'", "starting with a letter or digit"):
        assert rule in message
    for forbidden in ("'/'", "'..'", "'_'", "spaces"):
        assert forbidden in message


def test_default_place_and_empty_code() -> None:
    with pytest.raises(InvalidNameError, match=r"^device code '' is not a valid device code"):
        check_device_code("")


def test_error_types() -> None:
    with pytest.raises(ValueError):
        check_device_code("a/b")
    with pytest.raises(RegistryError):
        check_device_code("a/b")


def test_length_limit_is_64() -> None:
    assert is_device_code("A" + "1" * 63)
    assert not is_device_code("A" + "1" * 64)
