"""DVC stage: audio under the data root -> scaled log-Mel windows per device.

python -m stages.extract DATA_ROOT FEATURES_DIR [--params params.yaml] [--report FILE]

A folder under the data root that is not a device (its name is not a device code, or it
is a link that cannot be followed) is named in a warning and under `skipped_folders` in the
report; the devices go on.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pipelines import fleet
from pipelines.acoustic import data, extraction
from pipelines.params import Params
from stages import common


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__, "extract")
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    not_devices: list[data.Skipped] = []

    def work(p: Params) -> dict[str, fleet.Outcome]:
        found = extraction.discover(args.root, p)
        for path, reason in found.skipped:
            common.log.warning("extract: skipped %s: %s", path, reason)
        not_devices.extend(found.skipped)
        # One device at a time in this process, its clips on threads over every core: the
        # work releases the GIL, and worker processes would each pay ~1.5 s of imports.
        jobs = extraction.plan(args.root, p, found)
        return fleet.run_stage(args.out, jobs, extraction.build, 1, "extract")

    def skipped_folders(_: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
        if not not_devices:
            return {}
        return {"skipped_folders": [{"folder": f.name, "reason": why} for f, why in not_devices]}

    return common.run("extract", args.params, args.report, work, extra=skipped_folders)


if __name__ == "__main__":
    sys.exit(main())
