"""DVC stage: audio under the data root -> scaled log-Mel windows per device.

python -m stages.extract DATA_ROOT FEATURES_DIR [--params params.yaml] [--report FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipelines import fleet
from pipelines.acoustic import extraction
from stages import common


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__, "extract")
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    return common.run(
        "extract",
        args.params,
        args.report,
        # One device at a time in this process, its clips on threads over every core: the
        # work releases the GIL, and worker processes would each pay ~1.5 s of imports.
        lambda p: fleet.run_stage(
            args.out, extraction.plan(args.root, p), extraction.build, 1, "extract"
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
