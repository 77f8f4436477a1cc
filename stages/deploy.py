"""DVC stage: register each device's new model, promote it through the gate, export production.

python -m stages.deploy MODELS_DIR EVAL_DIR FEATURES_DIR DATA_ROOT OUT_DIR [--params params.yaml]

Writes OUT_DIR/candidates/{device}/ (the new model's bundle, which must reproduce the
evaluation's scores from raw audio before it is registered) and OUT_DIR/models/{device}/:
the production version of each device, exported from the registry in the inference layout.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipelines import fleet
from pipelines.acoustic import deployment
from stages import common


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__, "deploy")
    for name in ("models", "evaluation", "features", "root", "out"):
        parser.add_argument(name, type=Path)
    args = parser.parse_args(argv)

    def work(p):
        jobs = deployment.plan(
            args.models, args.evaluation / "devices", args.features, args.root, p
        )
        candidates = args.out / "candidates"
        outcomes = fleet.run_stage(candidates, jobs, deployment.build, p.fleet.workers, "deploy")
        deployment.export_production([job.device for job in jobs], p, args.out / "models")
        return outcomes

    return common.run("deploy", args.params, args.report, work)


if __name__ == "__main__":
    sys.exit(main())
