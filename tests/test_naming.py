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


# --------------------------------------------------------------------------- model names and refs
import re  # noqa: E402

from registry.naming import (  # noqa: E402
    ModelName,
    Ref,
    check_alias,
    check_version,
    model_name,
    parse_name,
    parse_ref,
)

MODEL = "acoustic_LT-2_convae"


def test_model_name_joins_checked_components() -> None:
    assert model_name("acoustic", "LT-2", "convae") == MODEL
    assert model_name("a", "B.1", "c-2") == "a_B.1_c-2"


@pytest.mark.parametrize("where", ["family", "scope", "model type"])
@pytest.mark.parametrize("bad", ["a/b", "..", "a_b", "a b", "", ".x", "x" * 65])
def test_model_name_refuses_bad_components_and_names_which(where: str, bad: str) -> None:
    parts = {"family": "acoustic", "scope": "LT-2", "model type": "convae"} | {where: bad}
    with pytest.raises(InvalidNameError) as caught:
        model_name(*parts.values())
    assert str(caught.value).startswith(f"{where} {bad!r} is not a valid device code")


def test_parse_name_splits_into_components() -> None:
    parsed = parse_name(MODEL)
    assert parsed == ModelName("acoustic", "LT-2", "convae")
    assert (parsed.family, parsed.scope, parsed.model_type) == ("acoustic", "LT-2", "convae")
    assert str(parsed) == MODEL


@pytest.mark.parametrize(
    "text",
    ["", "acoustic", "acoustic_LT-2", "acoustic_LT_2_convae", "a_b_c_d", "a___b"],
)
def test_parse_name_refuses_anything_but_three_components(text: str) -> None:
    with pytest.raises(InvalidNameError, match="expected family_scope_modeltype"):
        parse_name(text)


@pytest.mark.parametrize(
    "text", ["a/b_LT-2_convae", "acoustic_.._convae", "a b_c_d", "a_b_c d", "a__b", "_a_b", "a_b_"]
)
def test_parse_name_refuses_bad_components(text: str) -> None:
    with pytest.raises(InvalidNameError, match="is not a valid device code"):
        parse_name(text)


@pytest.mark.parametrize("text", [None, 3, b"acoustic_LT-2_convae"])
def test_parse_name_refuses_non_strings(text: object) -> None:
    with pytest.raises(InvalidNameError):
        parse_name(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MODEL, Ref(MODEL)),
        (f"{MODEL}:v1", Ref(MODEL, version=1)),
        (f"{MODEL}:v42", Ref(MODEL, version=42)),
        (f"{MODEL}:v007", Ref(MODEL, version=7)),
        (f"{MODEL}@production", Ref(MODEL, alias="production")),
        (f"{MODEL}@canary-2.b", Ref(MODEL, alias="canary-2.b")),
    ],
)
def test_parse_ref(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        f"{MODEL}:",
        f"{MODEL}:1",
        f"{MODEL}:v",
        f"{MODEL}:v0",
        f"{MODEL}:v-1",
        f"{MODEL}:vx",
        f"{MODEL}@",
        f"{MODEL}@a_b",
        f"{MODEL}@../x",
        f"{MODEL}@a b",
        f"{MODEL}:v1@production",
        f"{MODEL}@production:v1",
        f"{MODEL}@a@b",
        f"{MODEL}:v1:v2",
        "acoustic/LT-2_convae",
        "acoustic_LT-2",
        "a b_c_d:v1",
        f" {MODEL}",
        f"{MODEL}\n",
        None,
        7,
    ],
)
def test_parse_ref_refuses(text: object) -> None:
    with pytest.raises(InvalidNameError):
        parse_ref(text)  # type: ignore[arg-type]


def test_parse_ref_message_shows_the_forms() -> None:
    with pytest.raises(InvalidNameError, match=r"expected NAME, NAME:vN or NAME@alias"):
        parse_ref(f"{MODEL}:1")


@pytest.mark.parametrize("alias", ["production", "staging", "canary-2", "A.b"])
def test_check_alias_accepts(alias: str) -> None:
    assert check_alias(alias) == alias


@pytest.mark.parametrize("alias", ["", "a_b", "../prod", "a/b", "a b", ".hidden", "x" * 65])
def test_check_alias_refuses(alias: str) -> None:
    with pytest.raises(InvalidNameError, match="^" + re.escape(f"alias {alias!r} is not a valid")):
        check_alias(alias)


@pytest.mark.parametrize("version", [1, 2, 10**9])
def test_check_version_accepts(version: int) -> None:
    assert check_version(version) == version


@pytest.mark.parametrize("version", [0, -1, True, False, 1.0, "1", None, 2**63, 10**40])
def test_check_version_refuses(version: object) -> None:
    with pytest.raises(InvalidNameError, match="expected an integer from 1 to 9223372036854775807"):
        check_version(version)  # type: ignore[arg-type]


def test_a_huge_version_is_shown_cut() -> None:
    with pytest.raises(InvalidNameError, match=r"version 10000000000000000000\.\.\.:"):
        check_version(10**40)
