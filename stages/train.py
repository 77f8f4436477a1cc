"""DVC stage: scaled log-Mel windows -> one trained autoencoder per device.

python -m stages.train FEATURES_DIR MODELS_DIR [--live logs/train] [--params params.yaml]
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipelines import fleet
from pipelines.acoustic import training
from stages import common


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__, "train")
    parser.add_argument("features", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--live", type=Path, default=Path("logs/train"))
    args = parser.parse_args(argv)

    def work(p):
        jobs = training.plan(args.features, p)
        outcomes = fleet.run_stage(args.out, jobs, training.build, p.fleet.workers, "train")
        training.log_curves(args.out, args.live)
        return outcomes

    return common.run("train", args.params, args.report, work)


if __name__ == "__main__":
    sys.exit(main())
