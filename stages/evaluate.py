"""DVC stage: models + features -> thresholds, detection metrics and plots per device.

    python -m stages.evaluate FEATURES_DIR MODELS_DIR EVAL_DIR [--params params.yaml]

Writes EVAL_DIR/devices/{device}/, EVAL_DIR/metrics.json and EVAL_DIR/plots/{roc,histogram}/.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipelines import fleet
from pipelines.acoustic import evaluation, figures
from stages import common


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__, "evaluate")
    parser.add_argument("features", type=Path)
    parser.add_argument("models", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)

    def work(p):
        jobs = evaluation.plan(args.features, args.models, p)
        devices = args.out / "devices"
        outcomes = fleet.run_stage(devices, jobs, evaluation.build, p.fleet.workers, "evaluate")
        figures.write_fleet_outputs(devices, args.out / "metrics.json", args.out / "plots")
        return outcomes

    return common.run("evaluate", args.params, args.report, work)


if __name__ == "__main__":
    sys.exit(main())
