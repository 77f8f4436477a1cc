"""Fault injection for the tests: kill -9 a worker at a random moment of its work.

Workers come from a forkserver that has imported what they need once, so each try costs a
fork, not an interpreter start, and dozens of tries run in seconds.
"""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Callable
from typing import Any

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
    if not ready.wait(60):
        worker.kill()
        raise RuntimeError("the worker never started")
    ready.clear()
    worker.join(rng.uniform(0, within))
    worker.kill()
    worker.join()
