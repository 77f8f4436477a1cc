"""The fleet report: the HTML builder, the stage under `dvc repro`, and the page in a browser."""

from __future__ import annotations

import fcntl
import html
import json
import os
import re
import select
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipelines import fleet
from pipelines.errors import ParamError
from pipelines.params import load_params
from pipelines.report import (
    ANOMALY,
    NORMAL,
    DeviceRecord,
    FleetRecord,
    Run,
    gather,
    git_commit,
    render,
    this_run,
)
from registry.api import Registry
from tests.patience import HANG_S
from tests.pipeline_repo import copy_repo, run

POLICY = {"floors": {"auc": 0.9}, "rollback_factor": 2.0, "set": None}
NORMAL_SCORES, ANOMALY_SCORES = (0.1, 0.2, 0.3), (0.7, 0.8, 0.9)
RUN = Run("2026-11-24", "05df9e2", "workspace", "data/demo")


def full_device(name: str = "LT-2", **changes: Any) -> DeviceRecord:
    """A trained, evaluated and promoted device with both kinds of test clips."""
    clips = [{"file": f"n{i}.wav", "label": 0, "score": s} for i, s in enumerate(NORMAL_SCORES)]
    clips += [{"file": f"a{i}.wav", "label": 1, "score": s} for i, s in enumerate(ANOMALY_SCORES)]
    fields: dict[str, Any] = {
        "detector": "convae",
        "evaluation": {"auc": 0.95, "pauc": 0.9, "threshold": 0.5, "test_clips": 6},
        "scores": clips,
        "roc": [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.0, "tpr": 1.0}, {"fpr": 1.0, "tpr": 1.0}],
        "history": [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e} for e in (1, 2, 3)],
        "action": "promoted",
        "deployed": f"v2 registered; promoted from v1; production acoustic_{name}_convae:v2",
        "production": f"acoustic_{name}_convae:v2",
        "events": [
            {
                "type": "promoted",
                "time": "2026-11-24T10:00:00.000000+00:00",
                "actor": "ci",
                "reason": "auto_promote by the deploy stage",
                "name": f"acoustic_{name}_convae",
                "version": 2,
                "from_version": 1,
                "to_version": 2,
                "alias": "production",
            }
        ],
    }
    return DeviceRecord(name, **(fields | changes))


def fitted_device() -> DeviceRecord:
    """twfr-pca: fitted in one pass, so no loss history."""
    return full_device("FAN-7", detector="twfr-pca", history=[])


def untested_device() -> DeviceRecord:
    """No labelled test clips: no AUC, no scores, no ROC."""
    evaluation = {"threshold": 0.4, "test_clips": 0}
    return full_device("PMP-3", evaluation=evaluation, scores=[], roc=[])


def section(page: str, device: str) -> str:
    start = page.index(f'<section class="device" id="device-{html.escape(device)}">')
    return page[start : page.index("</section>", start)]


def chart_titles(part: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'<svg [^>]*aria-label="([^"]*)"', part)]


def test_every_device_has_its_sections_with_its_name_on_every_chart() -> None:
    devices = [full_device(), fitted_device(), untested_device()]
    page = render(FleetRecord("acoustic", devices, POLICY), RUN)

    for d in devices:
        part = section(page, d.name)
        assert f"<h2>{d.name}</h2>" in part
        assert "<h3>Production history</h3>" in part
        assert all(title.startswith(f"{d.name}: ") for title in chart_titles(part))
        assert f'href="#device-{d.name}"' in section_of_fleet(page)
    assert chart_titles(section(page, "LT-2")) == [
        "LT-2: ROC of test clips (AUC 0.950)",
        "LT-2: test clip scores",
        "LT-2: loss per epoch",
    ]
    # train and validation are two series, told apart by colour, dash and a legend
    loss = svg_of(section(page, "LT-2"), "LT-2: loss per epoch")
    assert loss.count("<polyline") == 2 and 'stroke-dasharray="5 3"/>' in loss
    assert ">train</text>" in loss and ">validation</text>" in loss


def test_a_detector_without_a_training_loop_says_so_instead_of_a_loss_chart() -> None:
    page = render(FleetRecord("acoustic", [fitted_device()], POLICY), RUN)

    part = section(page, "FAN-7")
    assert "loss per epoch" not in " ".join(chart_titles(part))
    assert "FAN-7: no loss per epoch: the twfr-pca detector has no training loop" in part
    assert len(chart_titles(part)) == 2  # ROC and histogram are still drawn


def test_a_missing_chart_is_a_line_of_text_not_an_empty_chart_sized_box(tmp_path: Path) -> None:
    """A detector without a training loop left a box as large as a chart, a third of the
    page's width, around the one sentence that says there is no loss curve."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    page = tmp_path / "index.html"
    page.write_text(render(FleetRecord("acoustic", [fitted_device()], POLICY), RUN))
    with Browser(chromium, tmp_path / "profile") as browser:
        heights, _ = browser.open(page, HEIGHTS)
    assert heights["chart"] > 200  # a chart drawn beside it, for scale
    assert heights["note"] < heights["chart"] / 4  # a line or two of text


def test_a_device_without_test_clips_has_no_roc_nor_histogram_and_says_why() -> None:
    page = render(FleetRecord("acoustic", [untested_device()], POLICY), RUN)

    part = section(page, "PMP-3")
    assert chart_titles(part) == ["PMP-3: loss per epoch"]
    assert "PMP-3: no ROC curve (no test clips" in part
    assert "PMP-3: no score histogram (no labelled test clips)" in part
    assert 'class="threshold"' not in part
    assert "Not measured against every floor (no labelled test clips): PMP-3" in page


def test_the_threshold_is_a_labelled_line_between_the_two_kinds_of_clips() -> None:
    page = render(FleetRecord("acoustic", [full_device()], POLICY), RUN)

    svg = svg_of(section(page, "LT-2"), "LT-2: test clip scores")
    normal, anomalous = bars(svg, NORMAL), bars(svg, ANOMALY)
    assert len(normal) == 3 and len(anomalous) == 3  # one clip per bin at these scores
    assert max(right for _, right in normal) < threshold_x(svg) < min(a for a, _ in anomalous)
    assert ">threshold 0.5</text>" in svg
    assert ">clip score (mean of its windows), log scale</text>" in svg
    assert ">test clips</text>" in svg


def test_the_normal_clips_and_the_threshold_spread_out_beside_far_higher_anomalies() -> None:
    """Anomalies score up to a hundred times the normal: on a linear axis every normal clip
    and the threshold were in the first bar, and the margin between them did not show."""
    scores = [(0, s) for s in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)] + [(1, s) for s in (5, 20, 100)]
    clips = [
        {"file": f"{i}.wav", "label": label, "score": s} for i, (label, s) in enumerate(scores)
    ]
    evaluation = {"auc": 1.0, "pauc": 1.0, "threshold": 1.0}
    page = render(
        FleetRecord("acoustic", [full_device(scores=clips, evaluation=evaluation)], POLICY), RUN
    )

    svg = svg_of(section(page, "LT-2"), "LT-2: test clip scores")
    normal, anomalous = bars(svg, NORMAL), bars(svg, ANOMALY)
    assert len(normal) >= 4  # their spread shows, not one bar
    spread = max(right for _, right in normal) - min(left for left, _ in normal)
    assert spread > 0.1 * (360 - 56 - 14)  # a tenth of the plot; one bar was 7 px
    assert max(right for _, right in normal) < threshold_x(svg) < min(a for a, _ in anomalous)
    ticks = re.findall(r'text-anchor="middle">([\d.]+)</text>', svg)
    assert {"1", "10", "100"} <= set(ticks)  # the powers of ten, evenly apart


def test_a_clip_that_scored_zero_is_counted_in_the_first_bin_and_said() -> None:
    clips = [
        {"file": "a.wav", "label": 0, "score": 0.0},
        {"file": "b.wav", "label": 1, "score": 5.0},
    ]
    page = render(FleetRecord("acoustic", [full_device(scores=clips)], POLICY), RUN)

    svg = svg_of(section(page, "LT-2"), "LT-2: test clip scores")
    assert min(left for left, _ in bars(svg, NORMAL)) == 56.0  # the plot's left edge
    assert "log scale; 1 scored 0, in the first bin</text>" in svg


def test_the_fleet_summary_names_devices_below_the_floors_and_the_runs_decisions() -> None:
    low = full_device(
        "B-9",
        evaluation={"auc": 0.6, "pauc": 0.5, "threshold": 0.5},
        action="refused",
        deployed="v3 registered; refused by the gate: auc 0.600 < floor 0.9; production kept",
    )
    error = "fleet-wide degradation: every candidate was refused by the gate"
    page = render(FleetRecord("acoustic", [full_device(), low], POLICY, error), RUN)

    fleet_part = section_of_fleet(page)
    below = fleet_part[fleet_part.index("Below the gate") : fleet_part.index("What the deploy")]
    assert "B-9: auc 0.600 &lt; 0.9" in below and "LT-2" not in below
    assert "B-9: v3 registered; refused by the gate" in fleet_part
    assert f'<p class="alert">{error}</p>' in fleet_part
    chart = svg_of(fleet_part, "AUC per device")
    assert chart.count("<rect") == 2 and 'class="floor"' in chart
    assert ">gate floor 0.9</text>" in chart


HOSTILE = '<script>x</script>"><img src=x onerror=1>'


def hostile_fleet() -> FleetRecord:
    """Outside text at every place the page shows some: device names (of a device judged, one
    below the floors, one without test clips, one without a training loop), detectors,
    actions, the deploy stage's lines, models, the registry's events (type, time, actor,
    reason, gate reasons, versions), the policy (metrics, who set it, why), the family, the
    fleet's error."""
    event = full_device().events[0] | {"name": HOSTILE, "replaced": HOSTILE}
    events = [
        event | {"type": HOSTILE, "time": HOSTILE, "actor": HOSTILE, "reason": HOSTILE},
        event | {"type": "refused", "gate": {"reasons": [HOSTILE]}},
    ]
    judged = {"action": HOSTILE, "deployed": HOSTILE, "production": HOSTILE, "events": events}
    devices = [
        full_device(f"A{HOSTILE}", detector=HOSTILE, **judged),
        full_device(f"B{HOSTILE}", evaluation={"auc": 0.5, "pauc": 0.5, "threshold": 0.5}),
        replace(untested_device(), name=f"C{HOSTILE}"),
        replace(fitted_device(), name=f"D{HOSTILE}", detector=HOSTILE),
    ]
    policy = {
        "floors": {"auc": 0.9, HOSTILE: 0.1},
        "rollback_factor": 2.0,
        "set": {"time": "2026-11-24T10:00", "actor": HOSTILE, "reason": HOSTILE},
    }
    return FleetRecord(HOSTILE, devices, policy, error=HOSTILE)


def test_the_header_says_which_run_the_page_is_of() -> None:
    page = render(FleetRecord("acoustic", [full_device()], POLICY), RUN)

    header = page[page.index("<header>") : page.index("</header>")]
    assert "<h1>Fleet report: acoustic</h1>" in header
    line = "Date: 2026-11-24 · Commit: 05df9e2 · Experiment: workspace · Data root: data/demo"
    assert f'<p class="run">{line}</p>' in header


def test_the_run_is_the_reproducible_day_the_commit_and_dvcs_experiment(tmp_path: Path) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "base"], check=True)
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    env = {"SOURCE_DATE_EPOCH": "1764633599", "DVC_EXP_NAME": "exp-lucky"}  # 23:59:59 UTC

    found = this_run("data/demo", env, tmp_path)

    assert found == Run("2025-12-01", head.stdout.strip(), "exp-lucky", "data/demo")


def test_outside_an_experiment_and_a_repository_the_run_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above it
    (tmp_path / "plain").mkdir()

    found = this_run("data", {}, tmp_path / "plain")

    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", found.date)  # today's: the day, no time of day
    assert found.experiment == "workspace"
    assert (
        git_commit(tmp_path / "plain")
        == found.commit
        == "none (not a git repository, or no commit yet)"
    )


def test_a_source_date_epoch_that_is_no_number_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ParamError, match="SOURCE_DATE_EPOCH 'yesterday': expected whole seconds"):
        this_run("data", {"SOURCE_DATE_EPOCH": "yesterday"}, tmp_path)


def test_every_outside_string_is_escaped() -> None:
    page = render(hostile_fleet(), Run("2026-11-24", "05df9e2", HOSTILE, HOSTILE))

    assert not re.search(r"<script|<img", page)
    escaped = html.escape(HOSTILE)
    assert escaped in page
    names = [d.name for d in hostile_fleet().devices]
    for name in names:
        assert chart_titles(section(page, name))[0].startswith(f"{name}: ")
        assert f"<h2>{html.escape(name)}</h2>" in section(page, name)
    not_judged = "Not measured against every floor (no labelled test clips): "
    assert html.escape(not_judged + ", ".join(names)) in page
    assert f'<span class="tag {escaped}">{escaped}</span>' in page


def test_the_page_needs_nothing_from_outside() -> None:
    page = render(FleetRecord("acoustic", [full_device(), untested_device()], POLICY), RUN)

    assert not re.search(r"https?:|//|<script|<link|<img|@import|url\(", page)
    assert set(re.findall(r'(?:src|href)="([^"]*)"', page)) == {"#device-LT-2", "#device-PMP-3"}


def test_gather_joins_the_stages_outputs_and_an_empty_registry(tmp_path: Path) -> None:
    eval_dir, models_dir = tmp_path / "eval", tmp_path / "models"
    write_device(eval_dir / "LT-2", {"summary.json": {"auc": 0.8, "threshold": 0.5}})
    history = [{"epoch": 1, "train_loss": 0.5, "val_loss": None}]
    write_device(
        models_dir / "LT-2",
        {"summary.json": {"architecture": {"type": "convae"}}, "history.json": history},
    )
    deployed = {
        "devices": {"GONE-1": {"status": "failed", "error": "no clips"}},
        "production": {},
    }
    (tmp_path / "deploy.json").write_text(json.dumps(deployed))

    found = gather(eval_dir, models_dir, tmp_path / "deploy.json", Registry(tmp_path / "s"), "a")

    assert [d.name for d in found.devices] == ["GONE-1", "LT-2"]
    gone, lt2 = found.devices
    assert gone.action == "failed" and gone.deployed.startswith("failed: no clips")
    assert lt2.detector == "convae" and lt2.history == history and lt2.evaluation["auc"] == 0.8
    assert lt2.scores == [] and lt2.production is None and lt2.events == []
    part = section(render(found, RUN), "LT-2")
    assert "LT-2: loss per epoch (no validation split)" in chart_titles(part)


def test_a_device_not_in_data_root_is_named_and_kept_out_of_the_fleet(tmp_path: Path) -> None:
    """A device in production whose folder left data.root: one line under its own heading,
    no row, no bar, no section of its own."""
    shipped = {"model": "acoustic_FAN-7_twfr-pca:v1", "status": "unchanged"}
    deployed = {"devices": {}, "production": {"FAN-7": shipped}, "not_in_data": ["FAN-7"]}
    (tmp_path / "deploy.json").write_text(json.dumps(deployed))

    found = gather(
        tmp_path / "eval", tmp_path / "models", tmp_path / "deploy.json", Registry(tmp_path), "a"
    )
    page = render(found, RUN)

    assert found.devices == []
    assert found.not_in_data == [
        "FAN-7: not in data.root: no run of it, not in the fleet's figures; production "
        "acoustic_FAN-7_twfr-pca:v1 still exported (`registry retire acoustic_FAN-7_twfr-pca`"
        " takes it out of the fleet)"
    ]
    assert "<h3>Not in data.root</h3>" in page and 'id="device-FAN-7"' not in page
    assert page.count("FAN-7") == 3  # only its line: the device, its version, the command


def test_the_report_stage_renders_in_a_browser_with_no_request_leaving(
    tiny_built: Path, tmp_path: Path
) -> None:
    repo = copy_repo(tiny_built, tmp_path / "repo")

    page = (repo / "report" / "index.html").read_text()
    root = load_params(repo / "params.yaml").data.root
    made = r"Date: [\d-]+ · Commit: [0-9a-f]{7,} · Experiment: workspace · Data root: "
    assert re.search(f'<p class="run">{made}{re.escape(root)}</p>', page)
    for device in ("A-1", "B-2"):
        part = section(page, device)
        assert len(chart_titles(part)) == 3
        assert f"acoustic_{device}_convae:v1" in part
        # the registry's production events only: one promotion, not its registration
        assert part.count('class="tag promoted"') == 1 and "tag registered" not in part
    plots = json.loads(run(repo, "dvc", "plots", "show", "--json").stdout)["data"]
    per_device = {
        k: p
        for k, p in plots.items()
        if re.search(r"/(roc|histogram|metrics)/", k) and k.startswith(("logs/", "eval/"))
    }
    titles = [p[0]["content"]["title"]["text"] for p in per_device.values()]
    # loss (train, val), learning rate, ROC and histogram per device, each titled with it
    assert len(titles) == 10 and all(re.search(r"/(A-1|B-2)[/.]", t) for t in titles)
    assert not any("smooth" in json.dumps(p) for p in plots.values())

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    with Browser(chromium, tmp_path / "profile") as browser:
        charts, requests = browser.open(repo / "report" / "index.html", CHARTS)
    for device in ("A-1", "B-2"):
        drawn = [c for c in charts if c["section"] == f"device-{device}"]
        assert len(drawn) == 3
        assert all(c["title"].startswith(f"{device}: ") and c["width"] > 0 for c in drawn)
        assert all(c["marks"] > 0 for c in drawn)  # lines and bars drawn, not empty frames
    assert requests and all(url.startswith("file://") for url in requests)


def test_the_browser_check_sees_a_request_that_would_leave(tmp_path: Path) -> None:
    """The check above can fail: a page that loads a script from a CDN is caught."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    page = tmp_path / "cdn.html"
    page.write_text('<html><script src="https://cdn.example.invalid/vega.js"></script></html>')
    with Browser(chromium, tmp_path / "profile") as browser:
        _, requests = browser.open(page, "document.title")
    assert "https://cdn.example.invalid/vega.js" in requests


# ------------------------------------------------------------------------------ helpers


def section_of_fleet(page: str) -> str:
    return page[page.index('<section id="fleet">') : page.index('<section class="device"')]


def svg_of(part: str, title: str) -> str:
    start = part.index(f'aria-label="{html.escape(title)}"')
    return part[start : part.index("</svg>", start)]


def bars(svg: str, color: str) -> list[tuple[float, float]]:
    """The left and right of each of a histogram's bars of `color`."""
    found = re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" [^>]*fill="(#\w+)"', svg)
    return [(float(x), float(x) + float(w)) for x, w, fill in found if fill == color]


def threshold_x(svg: str) -> float:
    return float(re.search(r'<line class="threshold" x1="([\d.]+)"', svg).group(1))


def write_device(folder: Path, files: dict[str, Any]) -> None:
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content))
    (folder / fleet.STAMP).write_text("fingerprint")


# Every chart as the browser laid it out: its section, title, width and drawn marks.
CHARTS = """[...document.querySelectorAll("svg")].map(svg => ({
  section: svg.closest("section").id,
  title: svg.getAttribute("aria-label"),
  width: svg.getBoundingClientRect().width,
  marks: svg.querySelectorAll("polyline, rect[fill^='#']").length,
}))"""


# How tall the note that FAN-7 has no loss curve stands on the page (the box it is in, when
# it is in one), beside a chart's.
HEIGHTS = """(() => {
  const note = [...document.querySelectorAll("#device-FAN-7 .note")]
    .find(n => n.textContent.includes("no loss per epoch"));
  const height = e => e.getBoundingClientRect().height;
  return {note: height(note.closest(".charts > *") || note),
          chart: height(document.querySelector("#device-FAN-7 .chart"))};
})()"""


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
    NUL-separated JSON on fds 3 and 4), so no websocket client is needed. A proxy that
    answers nothing is set, so that a request to the outside could not succeed either."""

    def __init__(self, chromium: str, profile: Path) -> None:
        (to_read, self._to), (self._from, from_write) = os.pipe(), os.pipe()
        # numbered above 4, so that neither end is overwritten by the other's redirection
        to_read, from_write = (_above_4(fd) for fd in (to_read, from_write))
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        flags += [f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9"]
        command = f"exec {chromium} {' '.join(flags)} --remote-debugging-pipe "
        self._process = subprocess.Popen(
            ["bash", "-c", command + f"3<&{to_read} 4>&{from_write}"],
            pass_fds=(to_read, from_write),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_read)
        os.close(from_write)
        self._buffer, self._id, self.events = b"", 0, []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call("Browser.close")
            self._process.wait(10)
        finally:
            if self._process.poll() is None:
                self._process.kill()
            os.close(self._to)
            os.close(self._from)

    def open(self, page: Path, expression: str) -> tuple[Any, list[str]]:
        """Load `page` in a new tab; the value of `expression` there, and every URL requested."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        tab = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Network.enable", tab)
        self.call("Page.enable", tab)
        self.call("Page.navigate", tab, url=page.resolve().as_uri())
        self._next(lambda m: m.get("method") == "Page.loadEventFired" and m["sessionId"] == tab)
        value = self.call("Runtime.evaluate", tab, expression=expression, returnByValue=True)
        requests = [
            e["params"]["request"]["url"]
            for e in self.events
            if e["method"] == "Network.requestWillBeSent" and e.get("sessionId") == tab
        ]
        return value["result"]["value"], requests

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        message |= {"sessionId": session} if session else {}
        os.write(self._to, json.dumps(message).encode() + b"\0")
        answer = self._next(lambda m: m.get("id") == self._id)
        if "error" in answer:
            raise AssertionError(f"{method}: {answer['error']}")
        return answer["result"]

    def _next(self, wanted: Any, timeout: float = HANG_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "method" in message:
                    self.events.append(message)
                if wanted(message):
                    return message
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from], [], [], left)[0]:
                raise AssertionError(f"chromium said nothing for {timeout:g} s")
            chunk = os.read(self._from, 1 << 20)
            if not chunk:
                raise AssertionError("chromium exited")
            self._buffer += chunk


def _above_4(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved
