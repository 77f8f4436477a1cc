"""DVC stage: the run's evaluations, loss curves, deploy decisions and registry -> one HTML page.

    python -m stages.report EVAL_DEVICES MODELS_DIR DEPLOY_REPORT OUT_HTML [--params params.yaml]
    python -m stages.report --family F ARGS... [--params params.yaml] [--report REPORT]

The page needs no network (inline CSS and SVG): open OUT_HTML in any browser. Its header
names the run: the day of $SOURCE_DATE_EPOCH (else today's, UTC), the git commit, the DVC
experiment ($DVC_EXP_NAME, else workspace) and the data root. It reads the
registry (the store of `registry.store.locate`) and changes nothing in it. Without --family
it is the acoustic family's page; another family's is its card's `report` stage
(pipelines/<family>/), run as every family stage is (stages/common.py):
`python -m stages.report --family F --help` lists its ARGS.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipelines import families, report
from pipelines import fleet as fleet_module
from pipelines.errors import ParamError
from pipelines.params import load_params
from registry.api import Registry
from registry.errors import RegistryError
from stages import common

log = logging.getLogger("stage")


def main(argv: list[str] | None = None) -> int:
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--family", default=families.DEFAULT)
    if first.parse_known_args(argv)[0].family != families.DEFAULT:
        return common.main("report", __doc__, argv)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name in ("evaluation", "models", "deploy_report", "out"):
        parser.add_argument(name, type=Path)
    parser.add_argument("--params", default="params.yaml", help="the params file")
    parser.add_argument("--family", default=families.DEFAULT, help="the model family")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=fleet_module.LOG_FORMAT)
    try:
        params = load_params(args.params)
        run = report.this_run(params.data.root)
        registry, family = Registry(), params.deploy.family
        fleet = report.gather(args.evaluation, args.models, args.deploy_report, registry, family)
    except (ParamError, RegistryError) as exc:
        log.error("report: %s", exc)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report.render(fleet, run), encoding="utf-8")
    log.info("report: %d devices -> %s", len(fleet.devices), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
