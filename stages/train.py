"""DVC stage: a family's training data -> one trained model per scope (the acoustic family:
scaled log-Mel windows -> a detector per device; the tabular family: a task's table -> a
regressor per task), the training curves as DVCLive plots under --live.

python -m stages.train [--family F] ARGS... [--live DIR] [--params params.yaml]

The family's `Train` (pipelines/<family>/stages.py) names its ARGS and does the work;
`python -m stages.train --family F --help` lists them.
"""

from __future__ import annotations

import sys

from stages import common


def main(argv: list[str] | None = None) -> int:
    return common.main("train", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
