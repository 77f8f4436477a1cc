"""DVC stage: a family's raw data -> what its training reads, per scope (the acoustic
family: audio under the data root -> scaled log-Mel windows per device).

python -m stages.extract [--family F] ARGS... [--params params.yaml] [--report FILE]

The family's `Extract` (pipelines/<family>/stages.py) names its ARGS and does the work;
`python -m stages.extract --family F --help` lists them.
"""

from __future__ import annotations

import sys

from stages import common


def main(argv: list[str] | None = None) -> int:
    return common.main("extract", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
