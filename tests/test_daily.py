"""pipelines.daily without a pipeline: a run's exit status and last line from the stages'
reports, what it says it leaves in params.yaml, and `fleet daily --reset`, which puts a full
training back. The daily loop on a real fleet: tests/test_daily_e2e.py."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipelines import daily, fleet
from pipelines.cli import app
from pipelines.errors import ParamError
from pipelines.params import DailyParams, edit_params, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]
RULE = DailyParams()  # fleet-wide: at least 2, and half, of the devices with a candidate
runner = CliRunner()


def reports(**fates: str) -> dict[str, dict[str, Any]]:
    """The stages' reports of a run in which each device came to its fate: `no clips`
    (skipped in extract), `drifted` (skipped in train), `failed` (in train), `unchanged`
    (the last run's candidate), else the gate's action on its candidate."""
    extract = {d: _outcome(d, "skipped" if f == "no clips" else "built") for d, f in fates.items()}
    trained = {d: f for d, f in fates.items() if f != "no clips"}
    train = {
        d: _outcome(d, {"drifted": "skipped", "failed": "failed"}.get(f, "built"))
        for d, f in trained.items()
    }
    deployed = {d: f for d, f in trained.items() if f not in ("drifted", "failed")}
    deploy = {
        d: _outcome(d, "unchanged") if f == "unchanged" else _outcome(d, "built", action=f)
        for d, f in deployed.items()
    }
    stages = dict(zip(daily.STAGES, (extract, train, {}, deploy), strict=True))
    return {stage: fleet.stage_report(outcomes) for stage, outcomes in stages.items()}


def _outcome(device: str, status: str, action: str | None = None) -> fleet.Outcome:
    error = "the reason" if status in ("skipped", "failed") else ""
    summary = {"version": 2, "new": True, "decision": {"action": action}} if action else {}
    return fleet.Outcome(device, status, error=error, summary=summary)


def verdict(run: dict[str, dict[str, Any]], repro: int = 0, rule: DailyParams = RULE) -> int:
    return daily.judge(daily.tally(run), repro, rule)[0]


def test_one_refused_device_of_one_candidate_is_not_fleet_wide() -> None:
    """The issue's day: three devices with no clips, the fourth refused."""
    day = reports(**{"A-1": "no clips", "B-2": "no clips", "C-3": "no clips", "D-4": "refused"})
    assert daily.judge(daily.tally(day), 0, RULE) == (
        daily.DONE,
        "done: of 4 devices, 1 had a candidate (0 promoted, 1 refused by the gate), "
        "3 skipped in extract, 0 failed; below fleet-wide degradation (at least "
        "daily.degraded_min = 2 and daily.degraded_fraction = 0.5 of the candidates) "
        "(exit status 0)",
    )


@pytest.mark.parametrize(
    ("refused", "promoted", "status"),
    [(3, 1, daily.DEGRADED), (2, 2, daily.DEGRADED), (2, 3, daily.DONE), (1, 1, daily.DONE)],
)
def test_fleet_wide_is_at_least_the_count_and_the_fraction(
    refused: int, promoted: int, status: int
) -> None:
    fates = ["refused"] * refused + ["promoted"] * promoted + ["no clips"]
    run = reports(**{f"D-{i}": fate for i, fate in enumerate(fates)})
    assert verdict(run) == status


def test_the_degradation_line_names_the_counts_and_the_rule() -> None:
    run = reports(**{"A-1": "refused", "B-2": "refused", "C-3": "refused", "D-4": "promoted"})
    assert daily.judge(daily.tally(run), 0, RULE)[1] == (
        "ERROR fleet-wide degradation: 3 of 4 candidates refused by the gate (at least "
        "daily.degraded_min = 2 and daily.degraded_fraction = 0.5 of the candidates); "
        "production untouched (exit status 3)"
    )


def test_the_rule_is_the_params() -> None:
    """degraded_min 1, degraded_fraction 1: every candidate refused, however few."""
    run = reports(**{"A-1": "drifted", "B-2": "refused"})
    assert verdict(run) == daily.DONE
    assert verdict(run, rule=DailyParams(degraded_fraction=1.0, degraded_min=1)) == daily.DEGRADED
    with pytest.raises(ParamError, match=r"daily\.degraded_fraction: expected a value > 0"):
        parse_params({"daily": {"degraded_fraction": 0}})


@pytest.mark.parametrize(
    ("fates", "counts"),
    [
        ({"A-1": "no clips", "B-2": "no clips"}, "2 skipped in extract"),  # no audio at all
        ({"A-1": "drifted", "B-2": "drifted"}, "2 skipped in train"),  # every device drifted
        ({"A-1": "no clips", "B-2": "drifted"}, "1 skipped in extract, 1 skipped in train"),
    ],
)
def test_nothing_to_learn_from(fates: dict[str, str], counts: str) -> None:
    assert daily.judge(daily.tally(reports(**fates)), 0, RULE) == (
        daily.NOTHING,
        f"WARNING nothing to learn from: of 2 devices, 0 had a candidate, {counts}, 0 failed; "
        "production kept (exit status 4)",
    )


def test_one_device_drifting_while_the_others_learn_is_done() -> None:
    """The daily demo's day 3: PMP-3 keeps production, LT-2 and FAN-7 are promoted."""
    run = reports(**{"LT-2": "promoted", "FAN-7": "promoted", "PMP-3": "drifted"})
    assert verdict(run) == daily.DONE
    assert verdict(reports(**{"A-1": "unchanged", "B-2": "drifted"})) == daily.DONE


def test_a_failure_comes_first() -> None:
    refused = reports(**{"A-1": "refused", "B-2": "refused", "C-3": "failed"})
    status, line = daily.judge(daily.tally(refused), 0, RULE)
    assert status == daily.FAILED
    assert line.startswith("ERROR a stage or device failed: C-3 in train; of 3 devices, 2 had")
    nothing = reports(**{"A-1": "no clips"})
    status, line = daily.judge(daily.tally(nothing), 2, RULE)
    assert status == daily.FAILED and "failed: dvc repro (exit status 2);" in line


def test_several_runs_take_the_first_status_of_the_precedence() -> None:
    assert daily.worst([daily.DONE, daily.NOTHING, daily.DEGRADED]) == daily.DEGRADED
    assert daily.worst([daily.NOTHING, daily.FAILED, daily.DEGRADED]) == daily.FAILED
    assert daily.worst([daily.DONE, daily.NOTHING]) == daily.NOTHING
    assert daily.worst([]) == daily.DONE


def test_a_run_whose_repro_fails_says_so_and_keeps_its_day(tmp_path: Path) -> None:
    """`run` with a stand-in for DVC: the day is pending, and repro fails before any report."""
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    fake = (sys.executable, "-c", "import sys; sys.exit(1 if sys.argv[1] == 'status' else 2)")
    outcome = daily.run(tmp_path, "20261102", "production", dvc=fake)
    assert (outcome.ran, outcome.status) == (True, daily.FAILED)
    assert outcome.lines == ["dvc repro failed (exit status 2); the stages' last reports:"]
    params = load_params(tmp_path / "params.yaml")
    assert (params.data.day, params.train.init_from) == ("20261102", "production")


def test_the_way_back_it_names_puts_a_full_training_back(tmp_path: Path) -> None:
    """What every run says it leaves, and its command, run: params.yaml as it was before the
    day, comments and all."""
    before = (REPO / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(before)
    edit_params(tmp_path / "params.yaml", daily.settings("20261102", "production"))
    said = daily.left_in_params("20261102", "production")
    assert said.startswith("params.yaml keeps data.day: 20261102 and train.init_from: production")
    command = shlex.split(re.findall(r"`([^`]*)`", said)[-1])
    assert command[:2] == ["fleet", "daily"]
    done = runner.invoke(app, [*command[1:], "--project", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert done.output.startswith("params.yaml is back to a full training (data.day: all and")
    assert (tmp_path / "params.yaml").read_text() == before
    params = load_params(tmp_path / "params.yaml")
    assert (params.data.day, params.train.init_from) == ("all", "scratch")


def test_reset_runs_nothing_so_it_takes_no_day(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    refused = runner.invoke(
        app, ["daily", "--reset", "--days-ago", "1", "--project", str(tmp_path)]
    )
    assert refused.exit_code == 2
    assert refused.output == "error: --reset runs nothing: it takes no --days-ago\n"
