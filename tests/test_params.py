"""pipelines.params: defaults, the repo's params.yaml, and every way a value is refused."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.errors import ParamError
from pipelines.params import (
    EvaluateParams,
    FeatureParams,
    Params,
    TrainParams,
    as_dict,
    edit_params,
    load_params,
    parse_params,
)

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _refused(raw: Any) -> str:
    with pytest.raises(ParamError) as caught:
        parse_params(raw)
    return str(caught.value)


def test_empty_mapping_gives_every_default() -> None:
    params = parse_params({})
    assert params == Params()
    assert params.train == TrainParams()
    assert params.train.lr == 0.001
    assert params.features.ref == "fixed"
    assert params.data.extensions == (".wav", ".flac")


def test_empty_yaml_file_gives_every_default(tmp_path: Path) -> None:
    assert load_params(_write(tmp_path, "# nothing set\n")) == Params()


def test_missing_section_keys_keep_their_defaults() -> None:
    params = parse_params({"train": {"epochs": 3}})
    assert params.train == dataclasses.replace(TrainParams(), epochs=3)
    assert params.features == FeatureParams()


def test_repo_params_yaml_loads_and_round_trips() -> None:
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    assert set(raw) <= {f.name for f in dataclasses.fields(Params)}
    # Every section written back as plain data parses to the same values.
    assert parse_params(as_dict(params)) == params


def test_as_dict_gives_lists_not_tuples() -> None:
    train = as_dict(TrainParams())
    assert train["channels"] == [16, 32, 64, 64]
    assert type(train["channels"]) is list
    whole = as_dict(Params())
    assert type(whole["data"]["extensions"]) is list
    assert type(whole["generate"]["devices"]) is list
    assert whole["train"]["lr"] == 0.001


def test_int_is_accepted_for_a_float() -> None:
    params = parse_params({"train": {"lr": 1, "grad_clip": 2}, "generate": {"clip_sec": 3}})
    assert params.train.lr == 1.0
    assert type(params.train.lr) is float
    assert type(params.train.grad_clip) is float
    assert type(params.generate.clip_sec) is float


def test_yaml_date_int_becomes_a_string(tmp_path: Path) -> None:
    params = load_params(_write(tmp_path, "generate:\n  start_date: 20261101\n"))
    assert params.generate.start_date == "20261101"


def test_lists_become_tuples() -> None:
    params = parse_params({"train": {"channels": [4, 8]}, "data": {"extensions": [".wav"]}})
    assert params.train.channels == (4, 8)
    assert params.data.extensions == (".wav",)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ParamError, match="params file not found") as caught:
        load_params(path)
    assert str(path) in str(caught.value)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  lr: [0.1\n")
    with pytest.raises(ParamError, match="not valid YAML") as caught:
        load_params(path)
    assert str(path) in str(caught.value)


def test_file_error_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  lr: fast\n")
    with pytest.raises(ParamError) as caught:
        load_params(path)
    assert str(path) in str(caught.value)
    assert "train.lr" in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        ({"trian": {}}, "trian", "expected one of: data, generate"),
        (
            {"train": {"learning_rate": 0.1}},
            "train.learning_rate",
            "expected one of: model, components, seed",
        ),
        ({"features": {"n_mel": 64}}, "features.n_mel", "n_mels"),
    ],
)
def test_unknown_key(raw: dict[str, Any], key: str, expected: str) -> None:
    message = _refused(raw)
    assert f"unknown key {key} " in message
    assert expected in message


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        ({"train": {"lr": "0.001"}}, "train.lr", "expected a number, got str '0.001'"),
        ({"train": {"lr": True}}, "train.lr", "expected a number, got bool True"),
        ({"train": {"epochs": True}}, "train.epochs", "expected an integer, got bool True"),
        ({"train": {"epochs": 5.0}}, "train.epochs", "expected an integer, got float 5.0"),
        ({"train": {"epochs": 5.5}}, "train.epochs", "expected an integer, got float 5.5"),
        ({"quality": {"enabled": "yes"}}, "quality.enabled", "expected true or false"),
        ({"quality": {"enabled": 1}}, "quality.enabled", "expected true or false"),
        ({"data": {"root": None}}, "data.root", "expected a string"),
        ({"data": {"root": 1.5}}, "data.root", "expected a string"),
        ({"train": {"channels": [16, "32"]}}, "train.channels[1]", "expected an integer"),
        ({"train": {"channels": 16}}, "train.channels", "expected a non-empty list"),
        ({"train": {"channels": []}}, "train.channels", "expected a non-empty list, got list []"),
        ({"data": {"extensions": []}}, "data.extensions", "expected a non-empty list"),
        ({"generate": {"devices": []}}, "generate.devices", "expected a non-empty list"),
    ],
)
def test_wrong_type(raw: dict[str, Any], key: str, expected: str) -> None:
    message = _refused(raw)
    assert f"{key}: " in message
    assert expected in message


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        ({"train": {"lr": 0}}, "train.lr", "expected a value > 0, got 0.0"),
        ({"train": {"lr": 1.5}}, "train.lr", "expected a value <= 1, got 1.5"),
        ({"split": {"val_fraction": 1.0}}, "split.val_fraction", "expected a value < 1, got 1.0"),
        ({"split": {"val_fraction": 0}}, "split.val_fraction", "expected a value > 0"),
        ({"train": {"epochs": -1}}, "train.epochs", "expected a value >= 1, got -1"),
        ({"train": {"epochs": 0}}, "train.epochs", "expected a value >= 1, got 0"),
        ({"data": {"sample_rate": 999}}, "data.sample_rate", "expected a value >= 1000"),
        ({"evaluate": {"percentile": 100}}, "evaluate.percentile", "expected a value < 100"),
        ({"features": {"n_fft": 8}}, "features.n_fft", "expected a value >= 16, got 8"),
        ({"fleet": {"workers": -2}}, "fleet.workers", "expected a value >= 0, got -2"),
    ],
)
def test_out_of_range(raw: dict[str, Any], key: str, expected: str) -> None:
    message = _refused(raw)
    assert f"{key}: " in message
    assert expected in message


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        ({"train": {"device": "tpu"}}, "train.device", "expected one of ['auto', 'cpu', 'cuda']"),
        ({"train": {"device": ["cpu"]}}, "train.device", "got list ['cpu']"),
        (
            {"evaluate": {"threshold": "x"}},
            "evaluate.threshold",
            "expected one of ['sigma', 'percentile', 'gamma'], got str 'x'",
        ),
        ({"features": {"ref": "MAX"}}, "features.ref", "expected one of ['max', 'fixed']"),
    ],
)
def test_bad_choice(raw: dict[str, Any], key: str, expected: str) -> None:
    message = _refused(raw)
    assert f"{key}: " in message
    assert expected in message


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"train": {"lr": math.nan}}, "train.lr"),
        ({"evaluate": {"sigma_k": math.nan}}, "evaluate.sigma_k"),
        ({"train": {"epochs": math.nan}}, "train.epochs"),
    ],
)
def test_nan_is_refused(raw: dict[str, Any], key: str) -> None:
    message = _refused(raw)
    assert f"{key}: expected " in message
    assert "nan" in message.lower()


def test_nan_from_yaml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParamError, match=r"evaluate\.max_fpr: expected a number, got NaN"):
        load_params(_write(tmp_path, "evaluate:\n  max_fpr: .nan\n"))


@pytest.mark.parametrize(
    ("text", "where"),
    [("- a\n- b\n", "top level"), ("train: 5\n", "train"), ("features: [1, 2]\n", "features")],
)
def test_a_section_must_be_a_mapping(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ParamError, match=rf"{where}: expected a mapping"):
        load_params(_write(tmp_path, text))


def test_evaluate_defaults_are_in_range() -> None:
    evaluate = EvaluateParams()
    assert 0 < evaluate.gamma_quantile < 1
    assert 0 < evaluate.max_fpr <= 1


def test_unknown_keys_of_mixed_types_raise_param_error() -> None:
    # YAML reads a key like `2026:` as an int; next to a misspelt string key the two
    # unknown keys cannot be sorted together.
    _refused({"data": {2026: "x", "rot": "data/demo"}})


@pytest.mark.parametrize("channels", [[0], [-4, 8]])
def test_non_positive_channel_counts_are_refused(channels: list[int]) -> None:
    message = _refused({"train": {"channels": channels}})
    assert "train.channels[0]" in message


@pytest.mark.parametrize("day", ["all", "20261102", "1 days ago", "0 day ago", 20261102])
def test_a_day_is_all_a_date_or_days_ago(day: object) -> None:
    assert parse_params({"data": {"day": day}}).data.day == str(day)


@pytest.mark.parametrize("day", ["yesterday", "2026-11-02", "1 week ago", "", "-1 days ago"])
def test_any_other_day_is_refused_naming_the_forms(day: str) -> None:
    with pytest.raises(
        ParamError, match=r"data\.day: expected all, a date YYYYMMDD or 'N days ago'"
    ):
        parse_params({"data": {"day": day}})


def test_edit_params_sets_values_and_keeps_comments_and_order(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    edit_params(path, {"data": {"day": "20261102"}, "train": {"init_from": "production"}})
    before, after = (REPO / "params.yaml").read_text(), path.read_text()
    assert load_params(path).data.day == "20261102"
    assert load_params(path).train.init_from == "production"
    lines = zip(before.splitlines(), after.splitlines(), strict=True)  # as many lines
    changed = [(a, b) for a, b in lines if a != b]
    assert len(changed) == 2 and all("#" in b for _, b in changed)  # the comments stay


def test_a_refused_edit_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    before = path.read_bytes()
    with pytest.raises(ParamError, match=r"train\.init_from"):
        edit_params(path, {"train": {"init_from": "yesterday's"}})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_device_override_changes_that_devices_train_params_only() -> None:
    params = parse_params({"devices": {"PMP-3": {"model": "convae", "lr": 1}}})
    assert params.devices == {"PMP-3": {"model": "convae", "lr": 1.0}}
    own = params.for_device("PMP-3")
    assert (own.train.model, own.train.lr, own.features) == ("convae", 1.0, params.features)
    assert params.for_device("LT-2") is params and params.train.model == "twfr-pca"


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        ({"PMP-3": {"modle": "convae"}}, "unknown key devices.PMP-3.modle (expected one of: model"),
        ({"PMP-3": {"lr": -1}}, "devices.PMP-3.lr: expected a value > 0, got -1"),
        ({"PMP-3": {"model": "cnn"}}, "devices.PMP-3.model: expected one of ["),
        ({"bad_name": {}}, "devices: 'bad_name' is not a device code"),
        ({"PMP-3": 3}, "devices.PMP-3: expected a mapping, got int 3"),
        ([1], "devices: expected a mapping, got list [1]"),
    ],
)
def test_a_bad_device_override_is_refused_naming_it(devices: Any, expected: str) -> None:
    with pytest.raises(ParamError, match=re.escape(expected)):
        parse_params({"devices": devices})
