"""DVC stage: trained and evaluated models -> the inference layout, checked by scoring.

    python -m stages.deploy MODELS_DIR EVAL_DIR DATA_ROOT TARGET [--params params.yaml]

Writes TARGET/{device}/ae_model.pth, global_scale.npy and thresholds/threshold_{device}.npy,
each device swapped in whole. Before a bundle is accepted, the device's labelled test clips
are scored again from the raw audio through it and must reproduce the evaluation.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipelines import fleet
from pipelines.acoustic import bundle
from stages import common


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__, "deploy")
    parser.add_argument("models", type=Path)
    parser.add_argument("evaluation", type=Path)
    parser.add_argument("root", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args(argv)

    def work(p):
        jobs = bundle.plan(args.models, args.evaluation / "devices", args.root, p)
        return fleet.run_stage(args.target, jobs, bundle.build, p.fleet.workers, "deploy")

    return common.run("deploy", args.params, args.report, work)


if __name__ == "__main__":
    sys.exit(main())
