"""A stage's devices built on a Dask cluster (`fleet.executor: dask`), by its workers.

DVC still defines the pipeline and runs each stage in one process; that process plans,
prunes and reports, and is the only one to open the model store. The workers build devices
exactly as the local pool does (`fleet.build_one`: each in {out}/.partial/{device}/, renamed
into place when whole), several per task, since the scheduler pays about a millisecond per
task. They read the data and write the outputs at the paths the stage gives, so every machine
must mount them at the same path: the stage checks from each worker before it submits
anything. A worker that dies mid-task has its task rerun on another; a device whose build was
started again says so (`fleet.Outcome.attempts`, the stage report's `retried`).
"""

from __future__ import annotations

import math
import os
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pipelines import fleet
from pipelines.errors import ClusterError
from pipelines.fleet import BuildFn, Job, Outcome, build_one, read_stamp, share_of_cores

if TYPE_CHECKING:
    from distributed import Client
    from tqdm import tqdm

    from pipelines.params import FleetParams

ADDRESS_VARIABLE = "DASK_SCHEDULER_ADDRESS"  # Dask's own; it wins over fleet.scheduler
CONNECT_S = 10  # an unreachable scheduler is said this soon, before any work
TASKS_PER_WORKER = 4  # batches per worker when fleet.scopes_per_task is 0: uneven devices
# still balance, and the scheduler's cost per task stays small
IN_FLIGHT = 2  # tasks per worker submitted at once: what `prepare` loads stays bounded


@dataclass(frozen=True)
class Cluster:
    address: str
    per_task: int  # devices per task; 0: TASKS_PER_WORKER tasks per worker
    shared: tuple[Path, ...]  # what every worker must see: the stage's inputs, its folder
    # what the stage's process adds to a job before it goes to a worker: what no worker may
    # read itself (a fine-tuning's parent, from the model store); its error fails that device
    prepare: Callable[[Job], Job] | None = None


def of(
    p: FleetParams,
    shared: Sequence[Path],
    env: Mapping[str, str] = os.environ,
    prepare: Callable[[Job], Job] | None = None,
) -> Cluster | None:
    """The cluster a stage's devices go to, or None to build them in local processes. A
    cluster that cannot take them (no scheduler answers, no worker, a worker that cannot see
    `shared` or the stage's folder) raises ClusterError now, before the stage writes anything."""
    if p.executor == "local":
        return None
    address = env.get(ADDRESS_VARIABLE) or p.scheduler
    if not address:
        raise ClusterError(
            f"fleet.executor is dask but no scheduler is named: set fleet.scheduler or "
            f"${ADDRESS_VARIABLE} (tcp://HOST:8786)"
        )
    paths = (*(Path(s).absolute() for s in shared), Path.cwd())
    found = Cluster(address, p.scopes_per_task, paths, prepare)
    with _connect(address) as client:
        _checked_workers(client, found.shared)
    return found


def build_all(
    cluster: Cluster, todo: list[Job], build: BuildFn, out: Path, swap: bool, bar: tqdm
) -> Iterator[tuple[Job, Outcome]]:
    """Each job built on the cluster, as each batch comes back. Ctrl-C cancels them all."""
    from distributed import as_completed

    if not todo:
        return
    out = out.absolute()
    with _connect(cluster.address) as client:
        hosts = _checked_workers(client, cluster.shared)  # workers may have come and gone
        per_task = cluster.per_task or math.ceil(len(todo) / (TASKS_PER_WORKER * len(hosts)))
        sharing = _sharing(hosts)
        pending = iter(_batches(todo, per_task))
        in_flight: dict[Any, list[Job]] = {}
        done = as_completed(loop=client.loop)

        def submit() -> Iterator[tuple[Job, Outcome]]:
            """The next batch to a worker; its devices `prepare` failed come back at once."""
            batch, failed = _prepared(next(pending, []), cluster.prepare)
            if batch:
                future = client.submit(
                    _build_batch, batch, build, out, swap, Path.cwd(), sharing, pure=False
                )
                in_flight[future] = batch
                done.add(future)
            yield from failed

        bar.set_postfix_str(f"{len(hosts)} workers")
        try:
            for _ in range(IN_FLIGHT * len(hosts)):
                yield from _counted(submit(), bar)
            for future in done:
                yield from _counted(_results(future, in_flight.pop(future)), bar)
                yield from _counted(submit(), bar)
        except KeyboardInterrupt:
            client.cancel(list(in_flight))
            raise


def _prepared(
    batch: list[Job], prepare: Callable[[Job], Job] | None
) -> tuple[list[Job], list[tuple[Job, Outcome]]]:
    """`batch` as `prepare` makes it, and the outcomes of its devices `prepare` failed."""
    if prepare is None:
        return batch, []
    ready, failed = [], []
    for job in batch:
        try:
            ready.append(prepare(job))
        except Exception as exc:  # one device's parent stops no other
            failed.append((job, fleet.failure(job, 0.0, exc)))
    return ready, failed


def _counted(outcomes: Iterable[tuple[Job, Outcome]], bar: tqdm) -> Iterator[tuple[Job, Outcome]]:
    for job, outcome in outcomes:
        bar.update()
        yield job, outcome


def _results(future: Any, batch: list[Job]) -> list[tuple[Job, Outcome]]:
    """A task's outcomes; a task the cluster gave up on (its workers kept dying) fails its
    devices, not the stage."""
    try:
        return future.result()
    except Exception as exc:
        lost = f"its Dask task was lost: {type(exc).__name__}: {exc}"
        return [(job, Outcome(job.device, "failed", error=lost)) for job in batch]


def _connect(address: str) -> Client:
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(
            f"fleet.executor dask: no scheduler answers at {address} ({exc}); start one "
            "with `dask scheduler`, or point fleet.scheduler or $DASK_SCHEDULER_ADDRESS at it"
        ) from exc


def _checked_workers(client: Client, paths: Sequence[Path]) -> dict[str, str]:
    """Worker address -> its host, once every worker sees `paths` and runs one thread."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    if not workers:
        raise ClusterError(
            f"fleet.executor dask: the scheduler at {client.scheduler.address} has no workers; "
            "start them with `dask worker ADDRESS --nthreads 1`"
        )
    threaded = [w for w, info in workers.items() if info["nthreads"] != 1]
    if threaded:
        raise ClusterError(
            f"dask worker {threaded[0]} runs {workers[threaded[0]]['nthreads']} threads: start "
            "workers with `--nthreads 1` (a device's build sets its process's threads and folder)"
        )
    unseen = {w: m for w, m in client.run(_missing, [str(p) for p in paths]).items() if m}
    if unseen:
        worker, missing = next(iter(unseen.items()))
        raise ClusterError(
            f"dask worker {worker} cannot see {missing[0]}: every machine must mount the data "
            "and the project at the same path"
        )
    return {w: urlparse(w).hostname or w for w in workers}


def _missing(paths: list[str]) -> list[str]:
    return [p for p in paths if not os.path.exists(p)]


def _sharing(hosts: dict[str, str]) -> dict[str, int]:
    """Host -> how many workers share its cores."""
    return dict(Counter(hosts.values()))


def _batches(todo: list[Job], size: int) -> list[list[Job]]:
    return [todo[i : i + size] for i in range(0, len(todo), size)]


def _build_batch(
    jobs: list[Job], build: BuildFn, out: Path, swap: bool, cwd: Path, sharing: dict[str, int]
) -> list[tuple[Job, Outcome]]:
    """On a worker: each job built as the local pool builds it, from the stage's folder
    (its jobs' paths are relative to it), with this host's share of the cores."""
    from distributed import get_worker

    host = urlparse(get_worker().address).hostname or socket.gethostname()
    cores = share_of_cores(sharing.get(host, 1))
    before = Path.cwd()
    os.chdir(cwd)
    try:
        return [(job, _built(replace(job, cores=cores), build, out, swap)) for job in jobs]
    finally:
        os.chdir(before)


def _built(job: Job, build: BuildFn, out: Path, swap: bool) -> Outcome:
    """A job's outcome; one an earlier run of this task finished (its worker died later in
    the task) is not built again."""
    if read_stamp(out / job.device) == job.fingerprint:
        return Outcome(
            job.device, "built", summary=fleet.read_json(out / job.device / "summary.json")
        )
    return build_one(job, build, out, swap)
