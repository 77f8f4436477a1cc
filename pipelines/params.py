"""Typed, validated parameters: every tunable number of the pipeline, read from params.yaml.

Each section of params.yaml is a frozen dataclass. A field's metadata says its range
(`ge`, `gt`, `le`, `lt`) or the form of its text (`pattern`, with what it means in
`expected`); a Literal type names its allowed values. `load_params` refuses an
unknown key, a missing key, a wrong type or an out-of-range value with a message that
names the key and what was expected, before any stage does any work.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipelines.acoustic import FAMILY
from pipelines.errors import ParamError
from registry.naming import is_device_code


def bounded(default: Any, **bounds: float) -> Any:
    """A field with bounds; on a list field the bounds apply to every item."""
    return field(default=default, metadata=bounds)


def matching(default: str, pattern: str, expected: str) -> Any:
    """A text field that must match `pattern` (what that means: `expected`)."""
    return field(default=default, metadata={"pattern": pattern, "expected": expected})


# The day a run trains on: every clip, a date folder, or one relative to the day it runs.
DAY_PATTERN = r"all|\d{8}|(?P<ago>\d+) days? ago"
# Where training starts: a rule, pinned versions NAME:vN, or pins and one rule, comma-separated.
_START = r"scratch|production|[^,:\s]+:v\d+"
INIT_FROM_PATTERN = rf"(?:{_START})(?:,(?:{_START}))*"


@dataclass(frozen=True)
class DataParams:
    root: str = "data/demo"
    sample_rate: int = bounded(16000, ge=1000)
    extensions: tuple[str, ...] = (".wav", ".flac")
    # all: every clip (a full training); YYYYMMDD: that day's folders only (the daily loop);
    # "N days ago": the same, counted from the day the run starts (the seed's use_days_ago)
    day: str = matching("all", DAY_PATTERN, "all, a date YYYYMMDD or 'N days ago'")
    # 0: every usable clip of the day; else a seeded random sample of this many hours
    sample_hours: float = bounded(0.0, ge=0)
    sample_seed: int = bounded(0, ge=0)
    # a device with fewer usable clips (the day's and verified_normal's) is skipped
    min_clips: int = bounded(1, ge=1)


@dataclass(frozen=True)
class GenerateParams:
    seed: int = bounded(2026, ge=0)
    devices: tuple[str, ...] = ("LT-2", "FAN-7", "PMP-3")
    start_date: str = "20261101"
    days: int = bounded(2, ge=1)
    clips_per_day: int = bounded(5, ge=1)
    clip_sec: float = bounded(20.0, gt=0)
    verified_clips: int = bounded(2, ge=0)
    test_normal: int = bounded(20, ge=1)
    test_anomaly: int = bounded(24, ge=1)
    test_clip_sec: float = bounded(12.0, gt=0)
    # A drifting day: this device's recorded clips on day drift_day (0 = start_date) get a
    # bearing tick growing from a subtle to a beyond-strong fault, in clip order; "": none
    drift_device: str = ""
    drift_day: int = bounded(0, ge=0)


@dataclass(frozen=True)
class FeatureParams:
    window_sec: float = bounded(10.0, gt=0)  # the seed: 8 s windows every 4 s, 256 frames, ref max
    hop_sec: float = bounded(4.0, gt=0)
    n_mels: int = bounded(128, ge=1)
    n_fft: int = bounded(1024, ge=16)
    hop_length: int = bounded(512, ge=1)
    frames: int = bounded(320, ge=1)
    top_db: float = bounded(80.0, gt=0)
    # "max": each window relative to its own loudest bin (the seed's power_to_db(ref=np.max));
    # "fixed": absolute level, 0 dB = power 1.0.
    ref: Literal["max", "fixed"] = "fixed"


@dataclass(frozen=True)
class QualityParams:
    enabled: bool = True
    min_files: int = bounded(10, ge=1)
    iqr_k: float = bounded(2.0, gt=0)
    probe_sec: float = bounded(10.0, gt=0)


@dataclass(frozen=True)
class TrainParams:
    # the detector (pipelines/acoustic/detectors.py), registered as {family}_{device}_{model}
    model: Literal[
        "convae",
        "twfr-pca",
        "twfr-gmm",
        "twfr-knn",
        "frame-gmm",
        "dense-ae",
        "dense-ae-mahalanobis",
    ] = "twfr-pca"
    components: int = bounded(8, ge=1)  # twfr-pca: principal components of the normal windows
    seed: int = bounded(0, ge=0)
    epochs: int = bounded(60, ge=1)
    min_epochs: int = bounded(10, ge=1)
    patience: int = bounded(5, ge=1)
    min_delta: float = bounded(0.0, ge=0)
    batch_size: int = bounded(16, ge=1)
    lr: float = bounded(0.001, gt=0, le=1)
    grad_clip: float = bounded(1.0, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    min_gpu_mem_mb: int = bounded(512, ge=0)
    channels: tuple[int, ...] = bounded((16, 32, 64, 64), ge=1)
    latent_channels: int = bounded(8, ge=1)
    # dense-ae*: consecutive frames in one input vector, and the encoder's layer widths (the
    # last one the code); the decoder mirrors them (DCASE 2020: 5 and 128, 128, 128, 128, 8)
    stack_frames: int = bounded(5, ge=1)
    dense_units: tuple[int, ...] = bounded((128, 128, 128, 128, 8), ge=1)
    # twfr-gmm, twfr-knn: TWFR pooling's decay, 0 (each band's max: impulsive faults such as a
    # valve's) to 1 (its mean: stationary ones); the best worst case measured (bench/README.md)
    twfr_r: float = bounded(0.8, ge=0, le=1)
    neighbors: int = bounded(1, ge=1)  # twfr-knn: nearest normal windows a score is the mean to
    mixtures: int = bounded(8, ge=1)  # frame-gmm: Gaussian components of the normal frames
    # Threads per device job: results are bitwise reproducible for a fixed value.
    torch_threads: int = bounded(1, ge=1)
    # scratch: new weights; production: fine-tune each device's production model (a device
    # without one trains from scratch, and says so); NAME:vN,...: pinned parents (replaying a
    # day), with `scratch` or `production` in the list for the devices not pinned
    init_from: str = matching(
        "scratch", INIT_FROM_PATTERN, "scratch, production or NAME:vN, comma-separated"
    )
    finetune_epochs: int = bounded(10, ge=1)  # epochs and learning rate of a fine-tuning
    finetune_lr: float = bounded(0.0003, gt=0, le=1)
    # a fine-tuning leaves out the day's recorded clips on which the parent's error is above
    # this multiple of its error on its own validation windows (0: off); most of them: skipped
    novelty_factor: float = bounded(3.0, ge=0)


@dataclass(frozen=True)
class SplitParams:
    """Validation split of a device's training windows, made by whole clips where possible."""

    val_fraction: float = bounded(0.2, gt=0, lt=1)
    min_windows: int = bounded(20, ge=2)
    seed: int = bounded(0, ge=0)


@dataclass(frozen=True)
class EvaluateParams:
    threshold: Literal["sigma", "percentile", "gamma"] = "sigma"
    sigma_k: float = bounded(3.0, gt=0)
    percentile: float = bounded(99.0, gt=0, lt=100)
    gamma_quantile: float = bounded(0.9, gt=0, lt=1)
    max_fpr: float = bounded(0.1, gt=0, le=1)


@dataclass(frozen=True)
class DeployParams:
    """Where the store is and what its gate demands are not params: an experiment must not
    be able to change them (see `registry.store.locate` and `registry set-policy`)."""

    family: str = FAMILY
    auto_promote: bool = True  # in a plain run only; an experiment never moves an alias
    # the candidate's validation windows registered with it, for the gate's comparisons
    eval_windows: int = bounded(16, ge=1)
    # earlier bundles kept in deploy/models/.bundles/; at least one, so that a reader who
    # is still reading the one just replaced is not cut off
    keep_backups: int = bounded(3, ge=1)


@dataclass(frozen=True)
class FleetParams:
    # Worker processes of train, evaluate and deploy; 0 means one per core.
    workers: int = bounded(0, ge=0)
    # local: those processes; dask: the workers of the Dask scheduler at `scheduler` (or
    # $DASK_SCHEDULER_ADDRESS, which wins), on a filesystem every machine mounts alike
    executor: Literal["local", "dask"] = "local"
    scheduler: str = ""
    scopes_per_task: int = bounded(0, ge=0)  # devices per Dask task; 0: 4 tasks per worker


@dataclass(frozen=True)
class DailyParams:
    """How `fleet daily` reads a run (no stage's param: changing one reruns nothing). Fleet-wide
    degradation, exit status 3, is at least `degraded_min` and at least `degraded_fraction` of
    the devices that had a candidate refused by the gate; fewer is those devices' own matter."""

    degraded_fraction: float = bounded(0.5, gt=0, le=1)
    degraded_min: int = bounded(2, ge=1)


@dataclass(frozen=True)
class Params:
    data: DataParams = DataParams()
    generate: GenerateParams = GenerateParams()
    features: FeatureParams = FeatureParams()
    quality: QualityParams = QualityParams()
    split: SplitParams = SplitParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    deploy: DeployParams = DeployParams()
    fleet: FleetParams = FleetParams()
    daily: DailyParams = DailyParams()
    # Per-device overrides of `train` ({device: {key: value}}), each checked as `train` is.
    devices: dict[str, dict[str, object]] = field(default_factory=dict)

    def for_device(self, device: str) -> Params:
        """The params one device's run uses: `train` with the device's overrides."""
        overrides = self.devices.get(device)
        return dataclasses.replace(self, train=self.train_for(device)) if overrides else self

    def train_for(self, device: str) -> TrainParams:
        return dataclasses.replace(self.train, **self.devices.get(device, {}))

    def unknown_devices(self, fleet: typing.Iterable[str]) -> list[str]:
        """The devices `devices:` overrides that are not in `fleet`: a typo, or a device gone."""
        return sorted(set(self.devices) - set(fleet))


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate params.yaml; raise ParamError naming the first bad key."""
    return parse_params(read_file(path), source=str(path))


def read_file(path: Path | str) -> Any:
    """params.yaml as plain data ({} when empty); ParamError when missing or not YAML."""
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: not valid YAML: {exc}") from exc
    return raw if raw is not None else {}


def edit_params(
    path: Path,
    changes: typing.Mapping[str, typing.Mapping[str, Any]],
    check: typing.Callable[[Path], object] | None = None,
) -> None:
    """Set `changes` ({section: {key: value}}) in a params file, its comments and order kept;
    the result is validated (by `check`, a family's load_params; the acoustic one's without)
    before it replaces the file."""
    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    doc = rt.load(path.read_text(encoding="utf-8"))
    for section, values in changes.items():
        doc[section].update(values)
    tmp = path.with_name(f".{path.name}.edit")
    with tmp.open("w", encoding="utf-8") as out:
        rt.dump(doc, out)
    try:
        (check or load_params)(tmp)
    except Exception:
        tmp.unlink()
        raise
    tmp.replace(path)


def parse_params(raw: object, source: str = "params") -> Params:
    """Build Params from a plain mapping (as read from YAML), validating every value."""
    params = _build(Params, raw, prefix="", source=source)
    return dataclasses.replace(params, devices=_device_overrides(params, source))


def _device_overrides(params: Params, source: str) -> dict[str, dict[str, object]]:
    """`devices`, each device's overrides checked (and typed) as the `train` section is."""
    checked = {}
    for device, overrides in params.devices.items():
        if not is_device_code(device):
            raise ParamError(
                f"{source}: devices: {device!r} is not a device code (letters, digits, '.' "
                "and '-', starting with a letter or digit)"
            )
        train = _build(TrainParams, as_dict(params.train) | overrides, f"devices.{device}.", source)
        checked[device] = {key: getattr(train, key) for key in overrides}
    return checked


def build_section(cls: type, raw: object, prefix: str, source: str) -> Any:
    """A params dataclass from its mapping, every value checked (a family's sections)."""
    return _build(cls, raw, prefix, source)


def _build(cls: type, raw: object, prefix: str, source: str) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise ParamError(f"{source}: {where}: expected a mapping, got {_show(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields), key=str)
    if unknown:
        raise ParamError(
            f"{source}: unknown key {prefix}{unknown[0]} (expected one of: {', '.join(fields)})"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name not in raw:
            if dataclasses.is_dataclass(hints[name]):
                values[name] = hints[name]()
            continue
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(hints[name]):
            values[name] = _build(hints[name], raw[name], f"{key}.", source)
        else:
            values[name] = _check(key, raw[name], hints[name], f.metadata, source)
    return cls(**values)


def _check(key: str, value: object, hint: Any, bounds: typing.Mapping, source: str) -> object:
    value = _coerce(key, value, hint, source)
    items = value if isinstance(value, tuple) else (value,)
    for i, item in enumerate(items):
        _check_bounds(f"{key}[{i}]" if isinstance(value, tuple) else key, item, bounds, source)
    return value


def _check_bounds(key: str, value: object, bounds: typing.Mapping, source: str) -> None:
    if "pattern" in bounds and not re.fullmatch(bounds["pattern"], str(value)):
        raise ParamError(f"{source}: {key}: expected {bounds['expected']}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for name, ok, text in (
            ("ge", lambda v, b: v >= b, ">="),
            ("gt", lambda v, b: v > b, ">"),
            ("le", lambda v, b: v <= b, "<="),
            ("lt", lambda v, b: v < b, "<"),
        ):
            if name in bounds and not ok(value, bounds[name]):
                raise ParamError(
                    f"{source}: {key}: expected a value {text} {bounds[name]}, got {value!r}"
                )
    return value


def _coerce(key: str, value: object, hint: Any, source: str) -> object:
    if hint is object:  # any value: its section checks it (see _device_overrides)
        return value
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ParamError(
                f"{source}: {key}: expected one of {list(choices)}, got {_show(value)}"
            )
        return value
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list) or not value:
            raise ParamError(f"{source}: {key}: expected a non-empty list, got {_show(value)}")
        return tuple(_coerce(f"{key}[{i}]", v, item, source) for i, v in enumerate(value))
    if origin is dict:
        key_type, item_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ParamError(f"{source}: {key}: expected a mapping, got {_show(value)}")
        return {
            _coerce(f"{key} key", k, key_type, source): _coerce(f"{key}.{k}", v, item_type, source)
            for k, v in value.items()
        }
    if origin in (typing.Union, types.UnionType):
        kinds = [k for k in typing.get_args(hint) if k is not type(None)]
        if len(kinds) != 1 or len(typing.get_args(hint)) != 2:
            raise TypeError(f"unsupported parameter type for {key}: {hint}")
        return None if value is None else _coerce(key, value, kinds[0], source)  # X | None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a YAML date folder like 20261101 reads as an int
    if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
        raise ParamError(f"{source}: {key}: expected {_type_name(hint)}, got {_show(value)}")
    if isinstance(value, float) and value != value:
        raise ParamError(f"{source}: {key}: expected a number, got NaN")
    return value


def _type_name(hint: type) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        hint, hint.__name__
    )


def _show(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def as_dict(section: object) -> dict[str, Any]:
    """A params section as plain JSON-ready data (tuples become lists)."""
    return json_ready(dataclasses.asdict(section))


def json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value
