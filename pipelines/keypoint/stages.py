"""The keypoint family's stages, one job per site: its captchas -> a network (train), the
network's figures on the site's held-out captchas (evaluate), a registered and gated version
(deploy). Found through its card (pipelines/keypoint/card.py); the contract is
pipelines/families.py.

    models/{site}/     model.pth (the network's tensors), split.json (each sample's part),
                       history.json (the engine's epochs), summary.json
    eval/sites/{site}/ predictions.csv (each held-out captcha: true and predicted points, in
                       its pixels), examples/*.png (a few of them drawn on), summary.json
    eval/metrics.json  the figures over the sites, a few columns whatever their number
    eval/sites.json    each site's figures, committed by git (`fleet compare`, `dvc plots`)

Each site's samples are read with the family's checks (data.py): a bad image or label line is
skipped and reported, a site without one usable sample fails alone and the others go on.
"""

from __future__ import annotations

import csv
import logging
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines import deploying, engine, fleet, parents
from pipelines import split as row_split
from pipelines.errors import DeviceSkipped
from pipelines.keypoint import card, data, draw, family, metrics, training
from pipelines.keypoint import model as networks
from pipelines.keypoint import objective as objectives
from pipelines.keypoint.errors import SiteError
from pipelines.keypoint.params import KeypointParams, SiteTraining
from pipelines.params import as_dict
from registry.api import Registry
from registry.errors import RegistryError
from registry.naming import model_name
from registry.store import locate

log = logging.getLogger("stage")
MODEL, SPLIT, HISTORY, PREDICTIONS = "model.pth", "split.json", "history.json", "predictions.csv"
EXAMPLES = "examples"  # a few held-out captchas drawn on, for the report
SHOWN = 4
SITES = Path(card.FIGURES).name  # the evaluate stage's per-site figures, in its folder
PARTS = ("train", "val", "test")
PLOTTED = ("loss", "lr", "mae_px", "hit_le_5px")  # the curves keypoint/dvc.yaml declares
CODE = fleet.code_digest(
    data, row_split, networks, objectives, metrics, training, engine, parents, sys.modules[__name__]
)
SCRATCH = parents.Start("scratch")


@dataclass(frozen=True)
class SiteInput:
    folder: Path  # the site's data folder
    height: int  # the network's input
    width: int
    settings: SiteTraining
    model: Path | None = None  # the trained site (evaluate, deploy)
    evaluation: Path | None = None  # its figures (deploy)
    store: Path | None = None
    experiment: str | None = None
    auto_promote: bool = True
    gate_samples: int = 64
    start: parents.Start | None = SCRATCH  # None: not trained in this run


def found_sites(root: Path) -> dict[str, Path]:
    """The sites under `root`; what is not a site's folder is named in a warning."""
    sites, skipped = data.find_sites(root)
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    return sites


def read_samples(site: str, inp: SiteInput) -> data.Samples:
    """The site's usable samples; each skipped one is named in a warning."""
    samples, skipped = data.read_site(inp.folder, inp.height, inp.width)
    for path, reason in skipped:
        log.warning("%s: skipped %s: %s", site, path, reason)
    return samples


def _jobs(
    sites: Mapping[str, Path],
    settings: list[Any],
    p: KeypointParams,
    upstream: Mapping[str, str] | None = None,
    **inputs: Any,
) -> list[fleet.Job]:
    """A job per site, fingerprinted by its labels and images, `settings`, the family's code
    and the fingerprint of what the stage before built for it (`upstream`)."""
    d = p.data
    return [
        fleet.Job(
            site,
            fleet.fingerprint(
                settings, CODE, d.height, d.width, data.digest(folder), (upstream or {}).get(site)
            ),
            SiteInput(
                folder, d.height, d.width, p.train, **{k: v(site) for k, v in inputs.items()}
            ),
        )
        for site, folder in sorted(sites.items())
    ]


class Train:
    """A network per site; its curves (loss, learning rate, MAE, hit rates) as DVCLive
    plots in `live`."""

    ARGUMENTS = ("root", "out")
    OPTIONS: Mapping[str, str] = {"live": "logs/keypoint/train"}

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = paths

    def work(self, p: KeypointParams) -> dict[str, fleet.Outcome]:
        # `init_from` as written is in the settings, not the version it resolves to
        settings = [as_dict(p.train), torch.__version__]
        sites = found_sites(self.paths["root"])
        names = {s: model_name(card.FAMILY, s, p.train.model) for s in sites}
        where = parents.plan(p.train.init_from, names, card.FAMILY, card.SCOPE, locate)
        jobs = _jobs(sites, settings, p, start=where.starts.get, store=lambda _: where.store)
        out = self.paths["out"]
        outcomes = fleet.run_stage(out, jobs, train_site, 1, "train")
        done = fleet.complete_devices(out)
        engine.log_curves(
            {s: fleet.read_json(out / s / HISTORY) for s in done}, self.paths["live"], PLOTTED
        )
        return outcomes


def train_site(job: fleet.Job, work: Path) -> dict[str, Any]:
    inp: SiteInput = job.inputs
    if inp.start is None:
        init_from = inp.settings.init_from
        raise DeviceSkipped(job.device, f"train.init_from ({init_from}) starts no training of it")
    parent = _parent(job.device, inp.store, inp.start.parent) if inp.start.parent else None
    if inp.start.note:
        log.info("%s: %s", job.device, inp.start.note)
    torch.set_num_threads(inp.settings.torch_threads)
    samples = read_samples(job.device, inp)
    trained = training.fit_site(job.device, samples, inp.settings, work / "checkpoints", parent)
    torch.save(trained.state, work / MODEL)
    fleet.write_json(work / SPLIT, {part: getattr(trained.split, part).tolist() for part in PARTS})
    fleet.write_json(work / HISTORY, trained.history)
    return {
        "architecture": trained.architecture,
        "parameters": networks.parameter_count(networks.build(trained.architecture)),
        "height": trained.height,
        "width": trained.width,
        "samples": len(samples),
        "epochs_run": trained.epochs_run,
        "resumed_from": trained.resumed_from,
        "device": trained.device,
        "start": inp.start.as_dict(),
    }


def _parent(site: str, store: Path | None, ref: str) -> training.TrainedSite:
    try:
        return family.trained(Registry(store).version(ref))
    except (RegistryError, ValueError, KeyError) as exc:
        raise SiteError(site, f"cannot start from {ref}: {exc}") from exc


def load_trained(model: Path) -> tuple[training.TrainedSite, dict[str, Any]]:
    """A trained site as the train stage wrote it (plain tensors only), and its summary."""
    summary = fleet.read_json(model / "summary.json")
    state = torch.load(model / MODEL, map_location="cpu", weights_only=True)
    parts = {k: np.asarray(v, dtype=np.int64) for k, v in fleet.read_json(model / SPLIT).items()}
    trained = training.TrainedSite(
        summary["architecture"],
        state,
        summary["height"],
        summary["width"],
        row_split.Split(**parts),
    )
    return trained, summary


class Evaluate:
    """Each site's figures on its held-out captchas (seed 002's validator, metrics.py)."""

    ARGUMENTS = ("root", "models", "out")
    OPTIONS: Mapping[str, str] = {}

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = paths

    def work(self, p: KeypointParams) -> dict[str, fleet.Outcome]:
        trained = fleet.complete_devices(self.paths["models"])
        sites = {s: f for s, f in found_sites(self.paths["root"]).items() if s in trained}
        jobs = _jobs(sites, [], p, trained, model=lambda s: self.paths["models"] / s)
        out = self.paths["out"]
        outcomes = fleet.run_stage(out / "sites", jobs, evaluate_site, 1, "evaluate")
        figures = {s: o.summary for s, o in outcomes.items() if o.status in ("built", "unchanged")}
        fleet.write_json(out / "metrics.json", fleet_figures(figures))
        # per site, in git with every experiment: `fleet compare`, `dvc plots diff`
        fleet.write_json(out / SITES, [{"site": s} | f for s, f in sorted(figures.items())])
        return outcomes


def evaluate_site(job: fleet.Job, work: Path) -> dict[str, Any]:
    inp: SiteInput = job.inputs
    trained, _ = load_trained(inp.model)
    samples = read_samples(job.device, inp)
    figures, predicted = training.evaluate(trained, samples)
    test = trained.split.test
    true = samples.coords[test] / samples.scales[test][:, None]
    with (work / PREDICTIONS).open("w", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(["image", *_columns("true"), *_columns("predicted")])
        for i, row in enumerate(test.tolist()):
            rows.writerow([samples.files[row], *true[i].tolist(), *predicted[i].tolist()])
    (work / EXAMPLES).mkdir()
    for i, row in enumerate(test[:SHOWN].tolist()):
        source = inp.folder / samples.files[row]
        draw.save_drawn(source, work / EXAMPLES / f"{i}.png", predicted[i], true[i])
    return figures | {"samples": len(test)}


def _columns(prefix: str) -> list[str]:
    return [f"{prefix}_{name}" for name in ("gap_x", "gap_y", "slider_x", "slider_y")]


def fleet_figures(figures: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A few figures over the sites (dvc exp show's columns do not grow with them): the
    worst hit@5 and MAE, and the mean MAE."""
    hits = [f["hit_le_5px"] for f in figures.values()]
    mae = [f["mae_px"] for f in figures.values()]
    return {
        "sites": len(figures),
        "hit_le_5px_min": min(hits, default=None),
        "mae_px_max": max(mae, default=None),
        "mae_px_mean": float(np.mean(mae)) if mae else None,
    }


class Deploy(deploying.Reporting):
    """Register each site's candidate with some of its validation captchas, let the store's
    gate judge it, and (in a plain run) make OUT/models hold the family's production bundles."""

    ARGUMENTS = ("models", "evaluation", "root", "out")
    OPTIONS: Mapping[str, str] = {}

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = paths
        self.production: dict[str, dict[str, Any]] = {}

    def work(self, p: KeypointParams) -> dict[str, fleet.Outcome]:
        a, registry, exp = self.paths, Registry(), deploying.experiment()
        registry.ensure()  # the project's own is made by the first run; a named one must exist
        evaluated = fleet.complete_devices(a["evaluation"] / "sites")
        sites = {s: f for s, f in found_sites(a["root"]).items() if s in evaluated}
        store = registry.store.root
        # the experiment's name is in the fingerprint: each one judges its candidates afresh
        settings = [as_dict(p.deploy), str(store), exp]
        where = {
            "model": lambda s: a["models"] / s,
            "evaluation": lambda s: a["evaluation"] / "sites" / s,
            "store": lambda _: store,
            "experiment": lambda _: exp,
            "auto_promote": lambda _: p.deploy.auto_promote,
            "gate_samples": lambda _: p.deploy.gate_samples,
        }
        jobs = _jobs(sites, settings, p, evaluated, **where)
        self.keep_backups = p.deploy.keep_backups
        # one writer: every registration and promotion from this process
        built = fleet.run_stage(a["out"] / "candidates", jobs, deploy_site, 1, "deploy")
        return self.deploy(a["out"], built, card.FAMILY)


def deploy_site(job: fleet.Job, work: Path) -> dict[str, Any]:
    inp: SiteInput = job.inputs
    trained, summary = load_trained(inp.model)
    registry = Registry(inp.store)
    figures = fleet.read_json(inp.evaluation / "summary.json")
    meta = registry.register(
        registration_folder(job.device, inp, trained, work / "registration"),
        card.FAMILY,
        job.device,
        trained.architecture["type"],
        metrics={k: v for k, v in figures.items() if k in card.METRICS},
        params={"train": as_dict(inp.settings), "data": {"height": inp.height, "width": inp.width}},
        extra={"inference": {k: summary[k] for k in family.INFERENCE}},
        data_fingerprint=data.digest(inp.folder),
        parent_version=deploying.parent_version(inp.model),
    )
    shutil.rmtree(work / "registration")
    name, version = meta["name"], meta["version"]
    decision = deploying.decide(registry, name, version, inp.experiment, inp.auto_promote)
    return {"name": name, "version": version, "new": not meta.get("existing")} | {
        "decision": decision
    }


def registration_folder(
    site: str, inp: SiteInput, trained: training.TrainedSite, folder: Path
) -> Path:
    """The files a version holds (family.ARTIFACTS): the weights, and up to `gate_samples`
    of its validation captchas (its held-out ones when it has none), on which the gate
    compares it with any holder."""
    folder.mkdir()
    shutil.copyfile(inp.model / MODEL, folder / family.ARTIFACTS["model"])
    samples = read_samples(site, inp)
    rows = trained.split.val if len(trained.split.val) else trained.split.test
    rows = rows[: inp.gate_samples]
    np.save(folder / family.ARTIFACTS["eval_images"], samples.images[rows])
    np.save(folder / family.ARTIFACTS["eval_coords"], samples.coords[rows])
    return folder
