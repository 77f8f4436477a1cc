"""What every fleet stage does around its one call: family, params, logging, report, exit code."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipelines import families, fleet
from pipelines.errors import ClusterError, DataError, ParamError
from registry.errors import RegistryError

log = logging.getLogger("stage")


def parser(doc: str, name: str, family: str = "") -> argparse.ArgumentParser:
    """An argument parser with the options every stage has: --params and --report (another
    family's report beside the first family's, in a folder of its own)."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml", help="the params file")
    parser.add_argument(
        "--report",
        default=str(Path("reports", family, f"{name}.json")),
        help="where to write the report",
    )
    return parser


def main(name: str, doc: str, argv: list[str] | None) -> int:
    """Run stage `name` of the family `--family` names: its arguments are the family's."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--family", default=families.DEFAULT)
    chosen, _ = first.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format=fleet.LOG_FORMAT)
    try:
        family = families.load(chosen.family)
        kind = families.stage(family, name)
    except ParamError as exc:
        log.error("%s: %s", name, exc)
        return 2
    args = parser(doc, name, "" if chosen.family == families.DEFAULT else chosen.family)
    args.add_argument("--family", default=families.DEFAULT, help="the model family to run")
    for argument in kind.ARGUMENTS:
        args.add_argument(argument, type=Path)
    for option, default in kind.OPTIONS.items():
        args.add_argument(f"--{option}", type=Path, default=Path(default))
    given = vars(args.parse_args(argv))
    work = kind({key: given[key] for key in (*kind.ARGUMENTS, *kind.OPTIONS)})
    return run(
        name,
        given["params"],
        given["report"],
        lambda path: work.work(families.resolve(family.PARAMS)(path)),
        getattr(work, "describe", None),
        getattr(work, "extra", None),
    )


def run(
    name: str,
    params_path: str,
    report_path: str,
    work: Callable[[str], Mapping[str, fleet.Outcome]],
    describe: Callable[[dict[str, Any]], list[tuple[str, str]]] | None = None,
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> int:
    """Run a stage over the fleet; 0 unless every device failed or the input is unusable.

    One failing device does not fail the stage (the others go on); it is named on stderr
    and in the report, and is retried on the next run because it left no fingerprint.
    `describe(report)` gives the stage's own (device, line) per device; by default only the
    failed devices get one. `extra(report)` is what the stage adds to its report beside the
    devices; an `error` there is the fleet's, said after the devices' lines.
    """
    logging.basicConfig(level=logging.INFO, format=fleet.LOG_FORMAT)
    try:
        outcomes = work(params_path)
    except (ParamError, DataError) as exc:
        log.error("%s: %s", name, exc)
        return 2
    except (RegistryError, ClusterError) as exc:  # the store or the cluster as a whole
        log.error("%s: %s", name, exc)
        return 1
    report = fleet.stage_report(outcomes)
    report |= extra(report) if extra else {}
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    fleet.write_json(Path(report_path), report)
    for device, entry in report["devices"].items():
        for skipped in entry.get("skipped", []) if entry["status"] == "built" else []:
            log.warning("%s: skipped %s: %s", device, skipped["file"], skipped["reason"])
    levels = {"failed": logging.ERROR, "skipped": logging.WARNING}
    for device, line in (describe or _failures)(report):
        status = report["devices"].get(device, {}).get("status")
        log.log(levels.get(status, logging.INFO), "%s: %s", name, line)
    if report.get("error"):
        log.error("%s: %s", name, report["error"])
    if report["retried"]:
        log.warning(
            "%s: built again after a build was killed or its worker died: %s",
            name,
            ", ".join(report["retried"]),
        )
    built, failed = len(report["built"]), len(report["failed"])
    counts = (built, len(report["unchanged"]), len(report["skipped"]), failed)
    log.info("%s: %d built, %d unchanged, %d skipped, %d failed", name, *counts)
    return 1 if outcomes and failed == len(outcomes) else 0


def _failures(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (device, f"device {device} {entry['status']}: {entry['error']}")
        for device, entry in report["devices"].items()
        if entry["status"] in ("failed", "skipped")
    ]
