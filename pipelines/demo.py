"""The daily loop on the demo fleet, three days of it, in a project of its own (`make daily-demo`).

Day 1 trains every device from scratch, day 2 fine-tunes each from production and promotes it,
and on day 3 one device's bearing starts ticking: the day is unlike its production model's
normal, so that device keeps its production model while the others are promoted. Each day is
`fleet daily`, committed as a scheduler's job would be. The project is made afresh under
`--into` (build/daily-demo), with its own store: this checkout is not touched.

    python -m pipelines.demo [--into DIR] [--params FILE]

`--params` is a YAML file of {section: {key: value}} set over the demo's (a smaller fleet, say).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from pipelines import daily, sandbox
from pipelines.errors import ParamError
from pipelines.params import load_params

DRIFTING = {
    "data": {"root": "data/demo", "min_clips": 1, "sample_hours": 0},
    "generate": {"days": 3, "drift_device": "PMP-3", "drift_day": 2},
}
MARKER = ".daily-demo"  # a folder holding it was made by this demo and may be made again


def run(dest: Path, changes: Mapping[str, Mapping[str, Any]]) -> int:
    """Make the project at `dest`, run its days, commit each; the days' worst exit status."""
    for name in ("MODEL_STORE", "DVC_ROOT"):  # the demo's store is its own, not the shell's
        os.environ.pop(name, None)
    sandbox.create(dest, changes, os.environ)
    (dest / MARKER).write_text("made by `python -m pipelines.demo`\n")
    gen = load_params(dest / "params.yaml").generate
    first = datetime.strptime(gen.start_date, "%Y%m%d")
    statuses: list[int] = []
    for index in range(gen.days):
        day = (first + timedelta(days=index)).strftime("%Y%m%d")
        init = "scratch" if index == 0 else "production"
        how = "a full training from scratch" if index == 0 else "fine-tuned from production"
        drift = f"; {gen.drift_device}'s bearing ticks" if index == gen.drift_day else ""
        print(f"\n== day {index + 1}, {day}: {how}{drift}", flush=True)
        outcome = daily.run(dest, day, init)
        print("\n".join((*outcome.lines, outcome.verdict)), flush=True)
        statuses.append(outcome.status)
        for command in (("add", "-A"), ("commit", "-qm", f"daily {day}")):
            subprocess.run(("git", "-C", str(dest), *command), check=True, capture_output=True)
    return daily.worst(statuses)


def fresh(dest: Path) -> str | None:
    """Make room at `dest`: an earlier demo's folder is removed, anything else is refused."""
    if not dest.exists():
        return None
    if (dest / MARKER).is_file() and not dest.is_symlink():
        shutil.rmtree(dest)
        return None
    if dest.is_dir() and not any(dest.iterdir()):
        return None
    return f"{dest}: exists and was not made by the demo; choose another --into"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--into", type=Path, default=Path("build/daily-demo"))
    parser.add_argument("--params", type=Path, help="YAML {section: {key: value}} to set")
    args = parser.parse_args(argv)
    changes: dict[str, dict[str, Any]] = {k: dict(v) for k, v in DRIFTING.items()}
    try:
        extra = yaml.safe_load(args.params.read_text()) if args.params else {}
    except (OSError, yaml.YAMLError) as exc:
        print(f"error: {args.params}: cannot read ({exc})", file=sys.stderr)
        return 1
    for section, values in (extra or {}).items():
        changes.setdefault(section, {}).update(values)
    problem = fresh(args.into)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    try:
        status = run(args.into.resolve(), changes)
    except (ParamError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    registry = Path(sys.executable).parent / "registry"
    device = changes["generate"]["drift_device"]
    model = load_params(args.into / "params.yaml").train_for(device).model
    print(f"\nthe demo's project: {args.into}; a model's ancestry, for instance:")
    print(f"  cd {args.into} && {registry} lineage acoustic_{device}_{model}@production")
    return status


if __name__ == "__main__":
    sys.exit(main())
