"""DVC stage: each scope's model and held-out data -> its metrics, and the family's figures
over all of them (the acoustic family: thresholds, AUC/pAUC, ROC and histograms per device;
the tabular family: RMSE, MAE, R², MAPE and predictions per task).

python -m stages.evaluate [--family F] ARGS... [--params params.yaml]

The family's `Evaluate` (pipelines/<family>/stages.py) names its ARGS and does the work;
`python -m stages.evaluate --family F --help` lists them.
"""

from __future__ import annotations

import sys

from stages import common


def main(argv: list[str] | None = None) -> int:
    return common.main("evaluate", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
