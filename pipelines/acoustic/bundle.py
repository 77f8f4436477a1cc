"""Deployable bundles: the inference layout, and scoring audio files with one.

A bundle is one device's folder in the layout the inference side reads (DESIGN.md):
  {device}/ae_model.pth                       the detector's state (tensors; the seed's name)
  {device}/global_scale.npy                   [min, max] of the device's log-Mel scale
  {device}/thresholds/threshold_{device}.npy  the decision threshold
  {device}/bundle.json                        feature settings, detector architecture, sha256s
`load_bundle` checks every sha256 before it loads anything, and loads the weights with
`weights_only=True`. The deploy stage scores the device's labelled test clips from the raw
audio through the bundle and refuses it unless it reproduces the evaluation's scores.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines import fleet
from pipelines.acoustic import FAMILY, data, detectors, features
from pipelines.errors import ClipError, DeviceError, IntegrityError
from pipelines.families import Scored
from pipelines.params import FeatureParams, Params, as_dict
from registry.api import Registry
from registry.errors import RegistryError
from registry.naming import check_device_code
from registry.store import sha256_file
from registry.tables import cell

HEADER = ("clip", "score", "threshold", "verdict", "warning")
WEIGHTS = "ae_model.pth"
SCALE = "global_scale.npy"
MANIFEST = "bundle.json"


def threshold_file(device: str) -> str:
    return f"thresholds/threshold_{check_device_code(device)}.npy"


@dataclass(frozen=True)
class DeployInput:
    model: Path
    evaluation: Path
    root: Path
    params: Params


def plan(models_dir: Path, eval_dir: Path, root: Path, params: Params) -> list[fleet.Job]:
    code = fleet.code_digest(data, features, detectors, sys.modules[__name__])
    trained = fleet.complete_devices(models_dir)
    return [
        fleet.Job(
            device,
            fleet.fingerprint(code, trained[device], stamp),
            DeployInput(models_dir / device, eval_dir / device, root, params.for_device(device)),
        )
        for device, stamp in fleet.complete_devices(eval_dir).items()
        if device in trained
    ]


def build(job: fleet.Job, work: Path) -> dict[str, Any]:
    inp: DeployInput = job.inputs
    write_bundle(job.device, inp.model, fleet.read_json(inp.evaluation / "summary.json"), inp, work)
    return {"threshold": load_bundle(work).threshold, **_replay(work, inp)}


def write_bundle(device: str, trained: Path, evaluated: dict, inp: DeployInput, out: Path) -> None:
    summary = fleet.read_json(trained / "summary.json")
    weights = trained / "model.pth"
    if sha256_file(weights) != summary["model_sha256"]:
        raise IntegrityError(f"{weights}: does not match the sha256 recorded at training")
    shutil.copyfile(weights, out / WEIGHTS)
    np.save(out / SCALE, np.load(trained / "scale.npy", allow_pickle=False))
    (out / "thresholds").mkdir(exist_ok=True)
    np.save(out / threshold_file(device), np.float64(evaluated["threshold"]))
    files = [WEIGHTS, SCALE, threshold_file(device)]
    manifest = {
        "device": device,
        "sample_rate": inp.params.data.sample_rate,
        "features": as_dict(inp.params.features),
        "architecture": summary["architecture"],
        "recordings": summary.get("recordings"),
        "sha256": {name: sha256_file(out / name) for name in files},
    }
    fleet.write_json(out / MANIFEST, manifest)


@dataclass(frozen=True)
class Bundle:
    device: str
    detector: detectors.Detector
    scale: tuple[float, float]
    threshold: float
    features: FeatureParams
    sample_rate: int
    model: str  # NAME:vN as exported by the registry ("" for a candidate's bundle)
    recordings: dict[str, list[float]] | None  # what it was trained on (data.formats)


def load_bundle(folder: Path) -> Bundle:
    """Load a deployed device bundle after checking every file against its sha256.

    The folder is resolved once: a deployed `{device}` is a link that an export swaps, and
    every file is read from the one bundle it pointed at."""
    folder = Path(folder).resolve()
    try:
        manifest = fleet.read_json(folder / MANIFEST)
    except (OSError, ValueError) as exc:
        raise IntegrityError(
            f"{folder / MANIFEST}: cannot read the bundle manifest ({exc})"
        ) from exc
    device = check_device_code(manifest["device"])
    for name, sha in manifest["sha256"].items():
        path = folder / name
        if not path.is_file() or sha256_file(path) != sha:
            raise IntegrityError(f"{path}: missing or does not match its recorded sha256")
    scale = np.load(folder / SCALE, allow_pickle=False)
    threshold = np.load(folder / threshold_file(device), allow_pickle=False)
    return Bundle(
        device=device,
        detector=detectors.load(
            folder / WEIGHTS, manifest["sha256"][WEIGHTS], manifest["architecture"]
        ),
        scale=(float(scale[0]), float(scale[1])),
        threshold=float(threshold),
        features=FeatureParams(**manifest["features"]),
        sample_rate=int(manifest["sample_rate"]),
        model=manifest.get("model", ""),
        recordings=manifest.get("recordings"),
    )


@dataclass(frozen=True)
class Verdict:
    file: str
    score: float | None
    threshold: float
    anomalous: bool | None
    error: str = ""
    warnings: tuple[str, ...] = ()  # how the clip differs from what the model was trained on


def score_file(bundle: Bundle, path: Path, devices: frozenset[str] = frozenset()) -> Verdict:
    """Score one clip: the mean of its windows' scores against the threshold. `devices`:
    those the model store knows (a clip under another one's folder is flagged)."""
    try:
        y = data.decode(path.read_bytes(), path, bundle.sample_rate)
        recorded = data.recording(path)
    except (OSError, ClipError) as exc:
        return Verdict(str(path), None, bundle.threshold, None, getattr(exc, "reason", str(exc)))
    windows = features.log_mel_windows(y, bundle.sample_rate, bundle.features)
    if len(windows) == 0:
        reason = f"too short: need at least {bundle.features.window_sec} s"
        return Verdict(str(path), None, bundle.threshold, None, reason)
    score = float(bundle.detector.scores(features.apply_scale(windows, bundle.scale)).mean())
    seconds = len(y) / bundle.sample_rate
    warnings = unlike_training(bundle, recorded, seconds) + _other_device(bundle, path, devices)
    return Verdict(str(path), score, bundle.threshold, score > bundle.threshold, "", warnings)


def score(bundle_dir: Path, clips: Sequence[Path], store: Path | None = None) -> Scored:
    """Each clip scored with the bundle, `fleet score`'s way: a verdict per clip, and a
    warning for a clip unlike the model's training clips or under the folder of another
    device that `store` knows (read, never written)."""
    bundle = load_bundle(bundle_dir)
    devices, warnings = _known_devices(store)
    verdicts = [score_file(bundle, clip, devices) for clip in clips]
    model = bundle.model or "a candidate bundle (not exported by the registry)"
    rows = [
        [v.file, cell("{:.5f}", v.score), f"{v.threshold:.5f}", _said(v), "; ".join(v.warnings)]
        for v in verdicts
    ]
    records = [asdict(v) | {"device": bundle.device, "model": bundle.model} for v in verdicts]
    warnings += [f"{v.file}: {warning}" for v in verdicts for warning in v.warnings]
    failed = any(v.error for v in verdicts)
    return Scored(f"device {bundle.device}: {model}", HEADER, rows, records, warnings, failed)


def _known_devices(store: Path | None) -> tuple[frozenset[str], list[str]]:
    """The devices the model store has versions of this family of (another family's scopes
    are no device folders); none, with a warning, when it cannot be read (the clips are
    scored all the same)."""
    try:
        found = Registry(store).list()
    except RegistryError as exc:
        return frozenset(), [f"{exc}; clips not checked against device folders"]
    return frozenset(m["scope"] for m in found if m["family"] == FAMILY), []


def _said(v: Verdict) -> str:
    if v.error:
        return f"skipped: {v.error}"
    return "ANOMALY" if v.anomalous else "normal"


def unlike_training(bundle: Bundle, recorded: data.Recording, seconds: float) -> tuple[str, ...]:
    """How a clip differs from the clips the bundle's model was trained on: a score of such
    a clip is no verdict on the machine."""
    seen = bundle.recordings
    if not seen:
        return ()
    found = []
    if seen["sample_rates"] and recorded.sample_rate not in seen["sample_rates"]:
        rates = "/".join(f"{r:g}" for r in seen["sample_rates"])
        found.append(f"recorded at {recorded.sample_rate} Hz; trained on {rates} Hz")
    if seen["channels"] and recorded.channels not in seen["channels"]:
        counts = "/".join(f"{c:g}" for c in seen["channels"])
        found.append(f"{recorded.channels} channel(s); trained on {counts}")
    if seen["seconds"] and not seen["seconds"][0] * 0.5 <= seconds <= seen["seconds"][1] * 2:
        low, high = seen["seconds"]
        found.append(f"{seconds:.1f} s long; trained on clips of {low:.1f}-{high:.1f} s")
    return tuple(found)


def _other_device(bundle: Bundle, path: Path, devices: frozenset[str]) -> tuple[str, ...]:
    """A clip whose device folder (the nearest folder above it named like one of `devices`,
    e.g. data/FAN-7/test/anomaly/x.wav: FAN-7) is another device's than the bundle's."""
    folders = reversed(path.absolute().parent.parts)
    device = next((part for part in folders if part in devices), bundle.device)
    if device == bundle.device:
        return ()
    return (f"under the folder of {device}, another device; this bundle is {bundle.device}'s",)


def _replay(bundle_dir: Path, inp: DeployInput) -> dict[str, Any]:
    """Score the evaluated test clips from raw audio through the bundle; refuse a mismatch."""
    scores_file = inp.evaluation / "scores.json"
    if not scores_file.is_file():
        return {"replayed_clips": 0}
    torch.set_num_threads(inp.params.train.torch_threads)
    bundle = load_bundle(bundle_dir)
    expected = fleet.read_json(scores_file)
    got = [score_file(bundle, inp.root / row["file"]) for row in expected]
    worst = max(
        np.inf if v.score is None else abs(v.score - row["score"]) / max(row["score"], 1e-12)
        for v, row in zip(got, expected, strict=True)
    )
    if worst > 1e-4:
        raise DeviceError(
            bundle.device,
            f"the bundle does not reproduce the evaluation (relative score diff {worst:.2e})",
        )
    return {"replayed_clips": len(got), "replay_max_rel_diff": float(worst)}
