"""DVC stage: register each device's candidate, let the store's gate judge it, export production.

python -m stages.deploy MODELS_DIR EVAL_DIR FEATURES_DIR DATA_ROOT OUT_DIR [--params params.yaml]

Writes OUT_DIR/candidates/{device}/ (the candidate's bundle, which must reproduce the
evaluation's scores from raw audio before it is registered) and OUT_DIR/metrics.json (the
gate's verdicts counted over the fleet). In a plain run (not a DVC
experiment) OUT_DIR/models/ is then made to hold the registry's production versions, one
bundle per device. Prints one line per device: what was registered, what the gate decided.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pipelines import fleet
from pipelines.acoustic import decisions, deployment
from stages import common


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__, "deploy")
    for name in ("models", "evaluation", "features", "root", "out"):
        parser.add_argument(name, type=Path)
    args = parser.parse_args(argv)
    production: dict[str, dict[str, Any]] = {}

    def work(p):
        jobs = deployment.plan(
            args.models, args.evaluation / "devices", args.features, args.root, p
        )
        candidates = args.out / "candidates"
        built = fleet.run_stage(candidates, jobs, deployment.build, p.fleet.workers, "deploy")
        production.update(deployment.production(p, args.out / "models"))
        fleet.write_json(args.out / "metrics.json", deployment.decision_counts(built))
        return built

    def describe(report: dict[str, Any]) -> list[tuple[str, str]]:
        return decisions.describe(report["devices"], report["production"])

    def extra(report: dict[str, Any]) -> dict[str, Any]:
        degraded = deployment.fleet_degraded(report["devices"])
        said = {"error": deployment.DEGRADED} if degraded else {}
        return {"production": production, "fleet_degraded": degraded, **said}

    return common.run("deploy", args.params, args.report, work, describe, extra)


if __name__ == "__main__":
    sys.exit(main())
