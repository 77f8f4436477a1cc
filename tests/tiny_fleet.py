"""A tiny fleet taken through every stage in-process, for tests of the later stages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import fleet
from pipelines.acoustic import bundle, evaluation, extraction, training
from pipelines.acoustic.synth import generate_fleet
from pipelines.params import Params, parse_params
from tests.pipeline_repo import TINY


@dataclass(frozen=True)
class TinyFleet:
    params: Params
    data: Path
    features: Path
    models: Path
    evaluation: Path
    deploy: Path


def build(root: Path, overrides: dict[str, Any] = TINY) -> TinyFleet:
    p = parse_params(overrides)
    t = TinyFleet(
        p, root / "data", root / "features", root / "models", root / "eval", root / "deploy"
    )
    generate_fleet(t.data, p.generate, p.data.sample_rate)
    run(t.features, extraction.plan(t.data, p), extraction.build)
    run(t.models, training.plan(t.features, p), training.build)
    run(t.evaluation, evaluation.plan(t.features, t.models, p), evaluation.build)
    run(t.deploy, bundle.plan(t.models, t.evaluation, t.data, p), bundle.build)
    return t


def run(
    out: Path,
    jobs: list[fleet.Job],
    build_fn: fleet.BuildFn,
    commit: fleet.CommitFn | None = None,
) -> dict[str, fleet.Outcome]:
    """One stage's work into `out`; no device may fail."""
    outcomes = fleet.run_stage(out, jobs, build_fn, 1, out.name, commit=commit)
    failed = {device: o.error for device, o in outcomes.items() if o.status == "failed"}
    assert not failed, failed
    return outcomes
