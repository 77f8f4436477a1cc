"""Fault injection for the tests: kill -9 a worker at a random moment of its work.

Workers come from a forkserver that has imported what they need once, so each try costs a
fork, not an interpreter start, and dozens of tries run in seconds. The moments are drawn over
the time the work takes now (`span`), so they fall all through it whatever the machine's load.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.patience import HANG_S

PROJECT = Path(__file__).resolve().parents[1]

PRELOAD = ["registry.api", "tests.registry_helpers"]


def context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _loop(ready: Any, work: Callable[..., None], args: tuple[Any, ...]) -> None:
    ready.set()
    while True:
        work(*args)


def kill_during(
    work: Callable[..., None], args: tuple[Any, ...], rng: random.Random, within: float
) -> None:
    """Run `work(*args)` over and over in a worker process and SIGKILL it after a random
    delay in [0, within) seconds from the moment it starts working."""
    ctx = context()
    ready = ctx.Event()
    worker = ctx.Process(target=_loop, args=(ready, work, args), daemon=True)
    worker.start()
    if not ready.wait(HANG_S):
        worker.kill()
        raise RuntimeError("the worker never started")
    ready.clear()
    worker.join(rng.uniform(0, within))
    worker.kill()
    worker.join()


def _once(ready: Any, done: Any, work: Callable[..., None], args: tuple[Any, ...]) -> None:
    ready.set()
    work(*args)
    done.set()


def span(work: Callable[..., None], args: tuple[Any, ...]) -> float:
    """Seconds one `work(*args)` takes in a worker at the machine's present load: the `within`
    of `kill_during` for kills that land anywhere in it (a calibration, not a check)."""
    ctx = context()
    ready, done = ctx.Event(), ctx.Event()
    worker = ctx.Process(target=_once, args=(ready, done, work, args), daemon=True)
    worker.start()
    if not ready.wait(600):
        worker.kill()
        raise RuntimeError("the worker never started")
    start = time.monotonic()
    finished = done.wait(600)
    took = time.monotonic() - start
    worker.join()
    if not finished:
        raise RuntimeError("the work never finished")
    return took


def start_killable(args: Sequence[str], cwd: Path) -> subprocess.Popen:
    """`python ARGS` with this project importable, in a session of its own, so that
    `os.killpg(process.pid, SIGKILL)` kills it and nothing else; its stderr is piped."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=os.environ | {"PYTHONPATH": str(PROJECT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def kill_when(process: subprocess.Popen, ready: Callable[[], bool]) -> None:
    """Once `ready()` (the process still running until then), kill -9 its whole session."""
    deadline = time.monotonic() + HANG_S
    while not ready():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the process made no progress"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
