"""The tabular family's report page: the HTML builder on hand-made tasks, and the stage run
after the family's real stages, the page then opened in a browser."""

from __future__ import annotations

import html
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipelines.tabular.report import MAX_DOTS, TabularRecord, TaskRecord, render
from registry.api import Registry
from tests.test_report import CHARTS, HOSTILE, RUN, Browser, chart_titles, svg_of
from tests.test_tabular_stages import FAST, pipeline, stage, write_params

POLICY = {"floors": {"auc": 0.9}, "rollback_factor": 2.0, "set": None}
FIGURES = {"rmse": 0.4, "mae": 0.3, "r2": 0.912, "mape": 0.154}
FIGURES |= {"baseline_rmse": 1.35, "baseline_r2": -0.008, "rows": 4}


def mlp_task(name: str = "Q1", **changes: Any) -> TaskRecord:
    """A trained, evaluated and promoted mlp with three epochs, the rate halved at the last."""
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "lr": lr}
        for e, lr in ((1, 0.003), (2, 0.003), (3, 0.0015))
    ]
    event = {
        "type": "promoted",
        "time": "2026-11-24T10:00:00.000000+00:00",
        "actor": "ci",
        "reason": "auto_promote by the deploy stage",
        "name": f"tabular_{name}_mlp",
        "version": 1,
        "to_version": 1,
        "alias": "production",
    }
    fields: dict[str, Any] = {
        "model": "mlp",
        "epochs_run": 3,
        "evaluation": FIGURES,
        "predictions": [(1.0, 1.1), (2.0, 1.8), (3.0, 3.3), (4.0, 3.9)],
        "history": history,
        "action": "promoted",
        "deployed": f"v1 registered; promoted; production tabular_{name}_mlp:v1",
        "production": f"tabular_{name}_mlp:v1",
        "events": [event],
    }
    return TaskRecord(name, **(fields | changes))


def ridge_task(name: str = "Q2") -> TaskRecord:
    return mlp_task(name, model="ridge", epochs_run=0, history=[])


def section(page: str, task: str) -> str:
    start = page.index(f'<section class="task" id="task-{html.escape(task)}">')
    return page[start : page.index("</section>", start)]


def summary(page: str) -> str:
    return page[page.index('<section id="tasks">') : page.index('<section class="task"')]


def test_every_task_has_its_section_with_its_four_charts_and_history() -> None:
    page = render(TabularRecord([mlp_task(), ridge_task()], POLICY), RUN)

    part = section(page, "Q1")
    assert chart_titles(part) == [
        "Q1: predicted against actual (R² 0.912)",
        "Q1: residuals",
        "Q1: loss per epoch",
        "Q1: learning rate per epoch",
    ]
    assert "<h3>Production history</h3>" in part and 'class="tag promoted"' in part
    scatter = svg_of(part, "Q1: predicted against actual (R² 0.912)")
    assert scatter.count("<circle") == 4 + 1  # a dot per test row, one in the legend
    assert ">y = x</text>" in scatter and ">4 test rows</text>" in scatter
    residuals = svg_of(part, "Q1: residuals")
    assert ">zero</text>" in residuals and ">actual - predicted</text>" in residuals
    loss = svg_of(part, "Q1: loss per epoch")
    assert loss.count("<polyline") == 2 and ">validation</text>" in loss
    assert ">learning rate</text>" in svg_of(part, "Q1: learning rate per epoch")
    for task in ("Q1", "Q2"):
        assert f'href="#task-{task}"' in summary(page)


def test_the_summary_has_each_tasks_figures_beside_the_means_and_its_decision() -> None:
    page = render(TabularRecord([mlp_task()], POLICY), RUN)

    row = re.search(r"<tr><td><a href=\"#task-Q1\">.*?</tr>", summary(page)).group(0)
    cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
    assert cells[1:8] == ["mlp", "0.912", "0.4000", "0.3000", "15.4 %", "1.350", "-0.008"]
    assert cells[8:10] == ["4", "tabular_Q1_mlp:v1"] and "promoted" in cells[10]
    assert "Q1: v1 registered; promoted; production tabular_Q1_mlp:v1" in summary(page)


def test_a_model_fitted_at_once_says_so_instead_of_curves() -> None:
    page = render(TabularRecord([ridge_task()], POLICY), RUN)

    part = section(page, "Q2")
    assert chart_titles(part) == ["Q2: predicted against actual (R² 0.912)", "Q2: residuals"]
    assert "Q2: the ridge model is fitted at once: no loss or learning-rate curves." in part
    assert "Model: ridge, fitted at once." in part


def test_a_task_not_evaluated_says_why_it_has_no_charts() -> None:
    failed = TaskRecord("Q9", action="failed", deployed="failed: no rows; no production kept")
    page = render(TabularRecord([failed], POLICY), RUN)

    part = section(page, "Q9")
    assert chart_titles(part) == []
    assert "Q9: no predictions (the task was not evaluated)." in part
    assert "Model: none trained in this run." in part and "No production events" in part
    assert '<span class="tag failed">failed</span>' in summary(page)


def test_many_test_rows_are_drawn_as_an_even_sample_that_the_legend_names() -> None:
    rows = [(float(i), float(i) + 0.5) for i in range(3 * MAX_DOTS + 1)]
    page = render(TabularRecord([mlp_task(predictions=rows)], POLICY), RUN)

    scatter = svg_of(section(page, "Q1"), "Q1: predicted against actual (R² 0.912)")
    dots = scatter.count("<circle") - 1
    assert MAX_DOTS // 2 < dots <= MAX_DOTS
    assert f">{dots} of {len(rows)} test rows</text>" in scatter


def test_the_gates_bounds_a_task_misses_and_the_ones_no_task_measures_are_named() -> None:
    policy = POLICY | {"ceilings": {"rmse": 0.3}}
    good = mlp_task("Q3", evaluation=FIGURES | {"rmse": 0.1})
    page = render(TabularRecord([mlp_task(), good], policy, error="every candidate refused"), RUN)

    part = summary(page)
    outside = part[part.index("Outside the gate") : part.index("What the deploy")]
    assert "Q1: rmse 0.4 &gt; 0.3" in outside and "Q3" not in outside
    assert "Not measured for any task, so not applied by the gate: auc." in outside
    assert '<p class="alert">every candidate refused</p>' in part
    assert "Gate policy: auc &gt;= 0.9, rmse &lt;= 0.3;" in page


def test_every_outside_string_is_escaped() -> None:
    event = mlp_task().events[0]
    events = [
        event | {"type": HOSTILE, "time": HOSTILE, "actor": HOSTILE, "reason": HOSTILE},
        event | {"type": "refused", "name": HOSTILE, "gate": {"reasons": [HOSTILE]}},
    ]
    outside = {"action": HOSTILE, "deployed": HOSTILE, "production": HOSTILE, "events": events}
    tasks = [
        mlp_task(f"A{HOSTILE}", model=HOSTILE, **outside),
        replace(ridge_task(), name=f"B{HOSTILE}", model=HOSTILE),
    ]
    policy = POLICY | {"set": {"time": "2026-11-24T10:00", "actor": HOSTILE, "reason": HOSTILE}}
    page = render(TabularRecord(tasks, policy | {"ceilings": {HOSTILE: 1.0}}, error=HOSTILE), RUN)

    assert not re.search(r"<script|<img", page)
    for task in tasks:
        part = section(page, task.name)
        assert f"<h2>{html.escape(task.name)}</h2>" in part
        assert all(title.startswith(f"{task.name}: ") for title in chart_titles(part))
    escaped = html.escape(HOSTILE)
    assert f'<span class="tag {escaped}">{escaped}</span>' in page
    assert f'<p class="alert">{escaped}</p>' in page


def test_the_page_needs_nothing_from_outside() -> None:
    page = render(TabularRecord([mlp_task(), ridge_task()], POLICY), RUN)

    assert not re.search(r"https?:|//|<script|<link|<img|@import|url\(", page)
    assert set(re.findall(r'(?:src|href)="([^"]*)"', page)) == {"#task-Q1", "#task-Q2"}


# An mlp small enough to train in a moment, so that every chart of a task has data.
TINY_MLP = FAST | {"train": {"model": "mlp", "hidden": [8], "epochs": 4, "patience": 10}}


def test_the_report_stage_after_the_real_stages_shows_every_task(tmp_path: Path) -> None:
    write_params(tmp_path, TINY_MLP)
    Registry(tmp_path / "store").init()
    pipeline(tmp_path)
    args = ("models", "eval", "reports/tabular/deploy.json", "report/index.html")
    made = stage(tmp_path, "report", *args, "--report", "reports/report.json")
    assert made.returncode == 0, made.stderr

    page = (tmp_path / "report" / "index.html").read_text()
    assert re.search(r'<p class="run">Date: [\d-]+ · Commit: .+ · Data root: data</p>', page)
    tasks = [f"Q{i}" for i in range(1, 6)]
    assert re.findall(r'<section class="task" id="task-([^"]+)">', page) == tasks
    for task in tasks:
        part = section(page, task)
        r2 = json.loads((tmp_path / "eval" / "tasks" / task / "summary.json").read_text())["r2"]
        assert chart_titles(part) == [
            f"{task}: predicted against actual (R² {r2:.3f})",
            f"{task}: residuals",
            f"{task}: loss per epoch",
            f"{task}: learning rate per epoch",
        ]
        assert f"production tabular_{task}_mlp:v1" in part
        assert part.count('class="tag promoted"') == 1  # its one production event
    report = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert report["built"] == tasks and report["devices"]["Q1"]["model"] == "mlp"
    assert "report: 5 tasks -> report/index.html" in made.stderr

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    with Browser(chromium, tmp_path / "profile") as browser:
        charts, requests = browser.open(tmp_path / "report" / "index.html", CHARTS)
    for task in tasks:
        drawn = [c for c in charts if c["section"] == f"task-{task}"]
        assert len(drawn) == 4 and all(c["width"] > 0 and c["marks"] > 0 for c in drawn)
    assert requests and all(url.startswith("file://") for url in requests)


def test_the_report_stage_without_a_deploy_report_names_it(tmp_path: Path) -> None:
    write_params(tmp_path, FAST)
    Registry(tmp_path / "store").init()
    args = ("models", "eval", "reports/tabular/deploy.json", "report/index.html")
    made = stage(tmp_path, "report", *args)
    assert made.returncode == 2
    assert "reports/tabular/deploy.json: no deploy report" in made.stderr
    assert "Traceback" not in made.stderr and not (tmp_path / "report").exists()
