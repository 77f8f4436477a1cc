"""The deploy stage: register each device's candidate, let the gate judge it, export production.

Per device (in parallel): the candidate bundle is written and must reproduce the
evaluation's scores from raw audio (`bundle.build`); its artifacts are registered as
`{family}_{device}_{train.model}` (the same bytes again register nothing new), with its
evaluation windows, on which the gate compares it with the model in production. Then:
- in a plain run (`dvc repro`, the scheduled job) with `deploy.auto_promote`, the candidate is
  promoted through the store's gate; a refusal is recorded as an event;
- in an experiment (`dvc exp run`, `--temp`, `--queue`: DVC sets $DVC_EXP_NAME) no alias
  moves: what the gate would decide is recorded as a `checked` event.
Last, in a plain run, `deploy/models/` is made to hold exactly the registry's production
versions: a device whose run failed keeps its bundle while it has a production version.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import cluster, deploying, fleet
from pipelines.acoustic import bundle, data, detectors, family
from pipelines.acoustic.extraction import load_device
from pipelines.params import Params, as_dict
from registry.api import Registry

# artifact kind -> where the train stage keeps it, relative to models/{device}; the best
# checkpoint is a trained network's (a fitted detector has no training loop)
TRAINED_FILES = {"model": "model.pth", "checkpoint_best": "checkpoints/best.pth"}


@dataclass(frozen=True)
class DeployInput:
    candidate: bundle.DeployInput
    features: Path
    store: Path
    experiment: str | None


def plan(
    models_dir: Path, eval_dir: Path, features_dir: Path, root: Path, params: Params
) -> list[fleet.Job]:
    registry, exp = Registry(), deploying.experiment()  # the store locate() finds
    registry.ensure()  # the project's own is made by the first run; a named one must exist
    store = registry.store.root
    # An experiment's name is part of the fingerprint: each experiment, and then the next
    # plain run, judges its candidates afresh even when they are the same bytes.
    settings = [as_dict(params.deploy), str(store), exp, fleet.code_digest(sys.modules[__name__])]
    return [
        fleet.Job(
            job.device,
            fleet.fingerprint(settings, job.fingerprint),
            DeployInput(job.inputs, features_dir / job.device, store, exp),
        )
        for job in bundle.plan(models_dir, eval_dir, root, params)
    ]


def build(job: fleet.Job, work: Path) -> dict[str, Any]:
    """A worker's part: the candidate bundle (checked against the evaluation) and the files
    to register, in `work`; `commit` registers them."""
    inp: DeployInput = job.inputs
    job = dataclasses.replace(job, inputs=inp.candidate)
    summary = bundle.build(job, work)
    _registration_folder(
        inp.candidate, work, inp.features, inp.candidate.params.deploy.eval_windows
    )
    return summary


def commit(job: fleet.Job, work: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The stage's part (the store's one writer): register the candidate `build` made, and
    promote it or record what the gate would say."""
    inp: DeployInput = job.inputs
    registry = Registry(inp.store)
    meta = _register(registry, job.device, inp, work)
    name, version = meta["name"], meta["version"]
    summary |= {"name": name, "version": version, "new": not meta.get("existing")}
    decision = deploying.decide(
        registry, name, version, inp.experiment, inp.candidate.params.deploy.auto_promote
    )
    return summary | {"decision": decision}


def _register(registry: Registry, device: str, inp: DeployInput, work: Path) -> dict[str, Any]:
    candidate, p = inp.candidate, inp.candidate.params
    meta = registry.register(
        work / "registration",
        p.deploy.family,
        device,
        p.train.model,
        metrics=fleet.read_json(candidate.evaluation / "summary.json"),
        params={
            "data": as_dict(p.data),
            "features": as_dict(p.features),
            "train": as_dict(p.train),
            "split": as_dict(p.split),
        },
        extra={"inference": _inference(work)},
        data_fingerprint=fleet.read_stamp(inp.features),
        parent_version=deploying.parent_version(candidate.model),
    )
    shutil.rmtree(work / "registration")
    return meta


def _registration_folder(
    candidate: bundle.DeployInput, work: Path, features_dir: Path, limit: int
) -> Path:
    folder = work / "registration"
    shutil.rmtree(folder, ignore_errors=True)  # a killed build's
    folder.mkdir()
    trained = fleet.read_json(candidate.model / "summary.json")
    trained_loop = detectors.kind(trained["architecture"]) in detectors.TRAINED
    files = family.ARTIFACTS
    for kind, source in TRAINED_FILES.items() if trained_loop else [("model", "model.pth")]:
        shutil.copyfile(candidate.model / source, folder / files[kind])
    shutil.copyfile(work / bundle.SCALE, folder / files["scale"])
    shutil.copyfile(work / bundle.threshold_file(work.name), folder / files["threshold"])
    np.save(folder / files["eval_windows"], evaluation_windows(features_dir, limit))
    return folder


def evaluation_windows(features_dir: Path, limit: int) -> np.ndarray:
    """The device's validation windows (all of them without a split), in decibels as
    extracted, at most `limit`: the data on which the gate compares models."""
    windows, _, index = load_device(features_dir)
    validation = np.asarray(index["validation"], dtype=bool)
    chosen = windows[validation] if validation.any() else windows
    return chosen[:limit]


def _inference(work: Path) -> dict[str, Any]:
    """What a bundle needs besides its files: kept in the registry, written back on export."""
    manifest = fleet.read_json(work / bundle.MANIFEST)
    keys = (*family.INFERENCE, *family.OPTIONAL)
    return {key: manifest[key] for key in keys if manifest.get(key) is not None}


class Stage(deploying.Reporting):
    """The deploy stage. Writes OUT/candidates/{device}/ (the candidate's bundle, which must
    reproduce the evaluation's scores from raw audio before it is registered) and
    OUT/metrics.json (the gate's verdicts counted over the fleet); in a plain run OUT/models/
    is then made to hold the registry's production versions, one bundle per device."""

    ARGUMENTS = ("models", "evaluation", "features", "root", "out")
    OPTIONS: Mapping[str, str] = {}

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = paths
        self.production: dict[str, dict[str, Any]] = {}

    def work(self, p: Params) -> dict[str, fleet.Outcome]:
        a = self.paths
        # the cluster first: planning may make the store, and nothing is written if it refuses
        on = cluster.of(p.fleet, [a["models"], a["evaluation"], a["features"], a["root"]])
        jobs = plan(a["models"], a["evaluation"] / "devices", a["features"], a["root"], p)
        self.keep_backups = p.deploy.keep_backups
        self.in_data = data.device_folders(a["root"])
        built = fleet.run_stage(
            a["out"] / "candidates", jobs, build, p.fleet.workers, "deploy", on, commit
        )
        return self.deploy(a["out"], built, p.deploy.family)
