"""train.init_from: parsed into pins and a rule, resolved per model against production."""

from __future__ import annotations

import pytest

from pipelines import parents
from pipelines.errors import ParamError

A, B = "acoustic_A-1_convae", "acoustic_B-2_convae"


def test_rules_resolve_to_scratch_or_the_production_version() -> None:
    assert parents.resolve(parents.parse("scratch"), A, {A: 3}) == parents.Start("scratch")
    found = parents.resolve(parents.parse("production"), A, {A: 3})
    assert (found.how, found.parent, found.parent_version) == ("production", f"{A}:v3", 3)


def test_a_device_without_production_trains_from_scratch_and_says_so() -> None:
    found = parents.resolve(parents.parse("production"), A, {})
    assert found.parent is None and "no production version" in found.note


def test_a_device_whose_production_is_another_type_trains_from_scratch_and_says_so() -> None:
    """`train.model` switched: the other type's weights cannot be fine-tuned into this one."""
    pca = "acoustic_A-1_twfr-pca"
    found = parents.resolve(parents.parse("production"), pca, {A: 3, B: 1})
    assert (found.how, found.parent) == ("scratch", None)
    assert found.note == f"production is {A}:v3, another model type: trained from scratch"


def test_pins_win_and_the_rule_covers_the_rest() -> None:
    init = parents.parse(f"{A}:v1,production")
    assert parents.resolve(init, A, {A: 5}) == parents.Start("pinned", f"{A}:v1")
    assert parents.resolve(init, B, {B: 2}).parent == f"{B}:v2"
    assert parents.resolve(parents.parse(f"{A}:v1"), B, {B: 2}) is None  # not trained


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{A}:v1,{A}:v2", "one NAME:vN per model"),
        ("scratch,production", "at most one of scratch, production"),
        ("bad name!:v1", "train.init_from"),
    ],
)
def test_bad_init_from_names_the_item(text: str, expected: str) -> None:
    with pytest.raises(ParamError, match=expected):
        parents.parse(text)
