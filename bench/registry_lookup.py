"""Benchmark: registry lookups at 10,000 versions, against resolving without the index.

Run by hand from the repository root (not in CI, not in tests):

    .venv/bin/python -m bench.registry_lookup [--models 100] [--versions-per-model 100]
        [--runs 10] [--calls 1000] [--reference-calls 100] [--store DIR] [--keep] [--json OUT]

Builds a store the way the deploy stage fills one: `--models` devices (D-000, D-001, ...)
times `--versions-per-model` versions, every one through `Registry.register` (artifacts
copied and fsynced, metadata, versions.json, events.jsonl, index), one round of the fleet at
a time, with `promote` and `rollback` through the API so that aliases have a history. With
`--store DIR` an existing store is reused (nothing is built); an empty or missing DIR is
built and kept.

Then times, on the same store:

    cold CLI    `registry show NAME@production --json`, `registry list --alias production
                --json`, `registry history NAME --json`: a fresh process each run
    API         `Registry(store).get(ref)` in this process, a fresh Registry per call

Reference beside each: the registry without its index, as a plain-file or tag-scan registry
answers (GTO reads git tags the same way): replay events.jsonl (`events.read` +
`events.alias_stacks`) to find who holds the alias, then read that version's metadata JSON.
Its CLI is our `registry` CLI with Registry.get and Registry.list swapped for those, in a
fresh process like ours, so both pay the same start-up. The ratio is the reference's median
over ours.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry import events
from registry.api import Registry
from registry.errors import NotFoundError
from registry.naming import parse_ref
from registry.store import Store, read_json

PROJECT = Path(__file__).resolve().parents[1]
REGISTRY = Path(sys.executable).parent / "registry"  # the venv's console script
FAMILY, MODEL_TYPE = "acoustic", "convae"
ACTOR = "bench"
MODEL_BYTES = 4096  # artifacts are not read by a lookup; small keeps the build about fsyncs
# The reference's command line: our `registry` CLI, typer and all, with the lookups it makes
# swapped for the index-free ones; it takes the same arguments and prints the same JSON.
REFERENCE_CLI = """
import sys
from registry import cli
from bench.registry_lookup import use_reference
use_reference()
sys.argv[0] = "registry"
cli.main()
"""


# ---------------------------------------------------------------- the reference: no index
def _holders(records: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    return {key: stack[-1] for key, stack in events.alias_stacks(records).items()}


def _with_aliases(
    meta: dict[str, Any], holders: dict[tuple[str, str], int], name: str
) -> dict[str, Any]:
    held = sorted(a for (n, a), v in holders.items() if n == name and v == meta["version"])
    return meta | {"aliases": held}


def reference_get(root: str | Path, ref: str) -> dict[str, Any]:
    """NAME@alias, NAME:vN or NAME by replaying events.jsonl, then the metadata file."""
    store = Store(root)
    parsed = parse_ref(ref)
    records = events.read(store.events_file)
    holders = _holders(records)
    version = parsed.version
    if parsed.alias:
        version = holders.get((parsed.name, parsed.alias))
        if version is None:
            raise NotFoundError(f"{parsed.name} has no alias {parsed.alias!r}")
    if version is None:
        live: dict[int, bool] = {}
        for record in records:
            if record["name"] == parsed.name and record["type"] in (
                events.REGISTERED,
                events.ARCHIVED,
            ):
                live[record["version"]] = record["type"] == events.REGISTERED
        version = max((v for v, alive in live.items() if alive), default=None)
    path = store.metadata(parsed.name, version) if version else None
    if path is None or not path.is_file():
        raise NotFoundError(f"{ref}: no such model version in {store.root}")
    return _with_aliases(read_json(path, "metadata"), holders, parsed.name)


def reference_list_alias(root: str | Path, alias: str) -> list[dict[str, Any]]:
    """Every version holding `alias`, by replaying events.jsonl and reading metadata files."""
    store = Store(root)
    holders = _holders(events.read(store.events_file))
    found = sorted((n, v) for (n, a), v in holders.items() if a == alias)
    return [
        _with_aliases(read_json(store.metadata(n, v), "metadata"), holders, n) for n, v in found
    ]


def use_reference() -> None:
    """Make Registry.get and Registry.list (by alias) answer without the index."""

    def get(self: Registry, ref: str) -> dict[str, Any]:
        return reference_get(self.store.root, ref)

    def list_(
        self: Registry,
        name: str | None = None,
        scope: str | None = None,
        alias: str | None = None,
        experiment: str | None = None,
    ) -> list[dict[str, Any]]:
        if name is not None or scope is not None or experiment is not None or alias is None:
            raise NotImplementedError("the reference lists by alias only")
        return reference_list_alias(self.store.root, alias)

    setattr(Registry, "get", get)  # noqa: B010
    setattr(Registry, "list", list_)  # noqa: B010


# ---------------------------------------------------------------------- building the store
def model_names(models: int) -> list[str]:
    return [f"{FAMILY}_D-{m:03d}_{MODEL_TYPE}" for m in range(models)]


def build_store(root: Path, models: int, versions: int) -> dict[str, Any]:
    """Register models x versions through `Registry.register`, one fleet round at a time.

    Per model: production takes v1 and every v with v % 20 == 10; staging every v with
    v % 10 == 5; even-numbered models roll production back after v45 and v95.
    """
    import numpy as np

    from pipelines.params import Params, as_dict

    p = Params()
    params = {"features": as_dict(p.features), "train": as_dict(p.train), "split": as_dict(p.split)}
    inference = {
        "sample_rate": p.data.sample_rate,
        "features": as_dict(p.features),
        "architecture": {"channels": list(p.train.channels), "latent_channels": 8},
    }
    registry = Registry(root, actor=ACTOR)
    registry.init()
    names = model_names(models)
    counts = {"register": 0, "promote": 0, "rollback": 0}
    register_s: list[float] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-artifacts-") as tmp:
        folder = Path(tmp)
        for v in range(1, versions + 1):
            for m, name in enumerate(names):
                # Distinct bytes per version, as retrained weights are.
                seed = f"{name}:v{v}".encode()
                (folder / "model.pth").write_bytes(
                    (seed * (MODEL_BYTES // len(seed) + 1))[:MODEL_BYTES]
                )
                np.save(folder / "scale.npy", np.array([-80.0 + m % 7, v / 10], np.float32))
                np.save(folder / "threshold.npy", np.float64(0.01 + v / 1e4))
                auc = round(0.80 + ((m * 37 + v * 11) % 190) / 1000, 4)
                metrics = {
                    "auc": auc,
                    "pauc": round(auc - 0.1, 4),
                    "precision": 0.9,
                    "recall": 0.8,
                    "f1": 0.85,
                    "threshold": 0.01 + v / 1e4,
                    "val_loss": round(0.02 - v / 1e5, 6),
                    "epochs": 60,
                    "windows": 240,
                }
                t0 = time.perf_counter()
                meta = registry.register(
                    folder,
                    FAMILY,
                    f"D-{m:03d}",
                    MODEL_TYPE,
                    metrics=metrics,
                    params=params,
                    extra={"inference": inference},
                    data_fingerprint=f"{m:04d}{v:04d}" * 8,
                )
                register_s.append(time.perf_counter() - t0)
                if meta.get("existing") or meta["version"] != v:
                    raise RuntimeError(f"{name}: expected v{v}, got {meta['version']}")
                counts["register"] += 1
                if v == 1 or v % 20 == 10:
                    # forced: the bench measures lookups, its weights are not models
                    registry.promote(name, v, "production", reason="bench", force=True)
                    counts["promote"] += 1
                if v % 10 == 5:
                    registry.promote(name, v, "staging", reason="bench")
                    counts["promote"] += 1
                if m % 2 == 0 and v % 50 == 45:
                    registry.rollback(name, "production", reason="bench")
                    counts["rollback"] += 1
            done = counts["register"]
            if done % 1000 < models:
                print(
                    f"  registered {done:6d}  {time.perf_counter() - started:7.1f} s  "
                    f"load {os.getloadavg()[0]:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
    total = time.perf_counter() - started
    block = min(1000, len(register_s))
    return {
        "seconds": round(total, 1),
        "counts": counts,
        "register_ms_mean": round(1000 * statistics.mean(register_s), 2),
        "register_ms_first_1000": round(1000 * statistics.mean(register_s[:block]), 2),
        "register_ms_last_1000": round(1000 * statistics.mean(register_s[-block:]), 2),
    }


def describe_store(root: Path) -> dict[str, Any]:
    records = events.read(Store(root).events_file)
    kinds: dict[str, int] = {}
    for record in records:
        kinds[record["type"]] = kinds.get(record["type"], 0) + 1
    live = {(r["name"], r["version"]) for r in records if r["type"] == events.REGISTERED}
    live -= {(r["name"], r["version"]) for r in records if r["type"] == events.ARCHIVED}
    return {
        "versions": len(live),
        "models": len({n for n, _ in live}),
        "events": len(records),
        "events_by_type": kinds,
        "events_jsonl_bytes": Store(root).events_file.stat().st_size,
        "index_bytes": Store(root).index_file.stat().st_size,
        "files_in_store": sum(1 for _ in root.iterdir()),
    }


# ------------------------------------------------------------------------------- timing
def summary(seconds: list[float], scale: float = 1.0) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "median": round(scale * statistics.median(ordered), 4),
        "p90": round(scale * ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 4),
        "min": round(scale * ordered[0], 4),
        "max": round(scale * ordered[-1], 4),
        "n": len(ordered),
    }


def run_cli(argv: list[str], env: dict[str, str] | None) -> tuple[float, Any]:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=PROJECT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return seconds, json.loads(done.stdout) if done.stdout.strip() else None


CliVariant = tuple[list[str], bool, dict[str, str] | None]  # argv, has a reference, env


def cli_variants(store: Path, name: str, pycache: Path) -> dict[str, CliVariant]:
    """label -> (argv after `registry`, or a whole argv; a reference beside it?; env)."""
    s = str(store)
    cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(pycache)
    show = ["show", f"{name}@production", "--store", s, "--json"]
    imports = [sys.executable, "-c", "import registry.cli"]
    return {
        "show NAME@production": (show, True, None),
        "show NAME@production, bytecode cached": (show, True, cached),
        "list --alias production": (
            ["list", "--alias", "production", "--store", s, "--json"],
            True,
            None,
        ),
        "history NAME": (["history", name, "--store", s, "--json"], False, None),
        "python -c pass": ([sys.executable, "-c", "pass"], False, None),
        "python -c 'import registry.cli'": (imports, False, None),
        "python -c 'import registry.cli', cached": (imports, False, cached),
    }


def measure_cli(store: Path, name: str, runs: int) -> list[dict[str, Any]]:
    """Every round runs every command once, so a load spike costs one round of each."""
    first: dict[str, float] = {}
    times: dict[str, list[float]] = {}
    outputs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as pycache:
        variants = cli_variants(store, name, Path(pycache))
        for round_ in range(runs + 1):  # round 0: the first run after the build, apart
            for label, (argv, has_reference, env) in variants.items():
                commands = {label: argv if argv[0] == sys.executable else [str(REGISTRY), *argv]}
                if has_reference:
                    commands[f"{label} [reference]"] = [sys.executable, "-c", REFERENCE_CLI, *argv]
                for key, command in commands.items():
                    seconds, out = run_cli(command, env)
                    if round_ == 0:
                        first[key] = seconds
                        check_cli(label, out, name)
                        outputs[key] = out
                    else:
                        times.setdefault(key, []).append(seconds)
    for label, (_, has_reference, _) in variants.items():
        if has_reference and outputs[label] != outputs[f"{label} [reference]"]:
            raise RuntimeError(f"{label}: ours and the reference print different JSON")
    rows = []
    for label, (_, has_reference, _) in variants.items():
        row: dict[str, Any] = {"command": label, "first_s": round(first[label], 4)}
        row |= {"ours_s": summary(times[label])}
        if has_reference:
            key = f"{label} [reference]"
            row |= {"reference_first_s": round(first[key], 4), "reference_s": summary(times[key])}
            row["ratio"] = round(row["reference_s"]["median"] / row["ours_s"]["median"], 2)
        rows.append(row)
    return rows


def check_cli(label: str, out: Any, name: str) -> None:
    if label.startswith("show") and out["name"] != name:
        raise RuntimeError(f"{label}: printed {out['name']}")
    if label.startswith("list") and not all("production" in m["aliases"] for m in out):
        raise RuntimeError(f"{label}: a version without production in its aliases")


def time_calls(call: Callable[[int], Any], n: int) -> list[float]:
    seconds = []
    for i in range(n):
        started = time.perf_counter()
        call(i)
        seconds.append(time.perf_counter() - started)
    return seconds


def measure_api(
    store: Path, names: list[str], versions: int, calls: int, reference_calls: int
) -> list[dict[str, Any]]:
    prod = [f"{n}@production" for n in names]
    mid = [f"{n}:v{max(1, versions // 2)}" for n in names]
    # Same answers, or the comparison means nothing.
    for ref in prod:
        if Registry(store, actor=ACTOR).get(ref) != reference_get(store, ref):
            raise RuntimeError(f"{ref}: ours and the reference disagree")
    made = [Registry(store, actor=ACTOR) for _ in range(calls)]  # made before the clock runs
    rows: list[tuple[str, Callable[[int], Any], int, Callable[[int], Any] | None]] = [
        (
            "get NAME@production, fresh Registry made before",
            lambda i: made[i].get(prod[i % len(prod)]),
            calls,
            None,
        ),
        (
            "Registry(store).get(NAME@production)",
            lambda i: Registry(store, actor=ACTOR).get(prod[i % len(prod)]),
            calls,
            lambda i: reference_get(store, prod[i % len(prod)]),
        ),
        (
            "Registry(store).get(NAME:vN)",
            lambda i: Registry(store, actor=ACTOR).get(mid[i % len(mid)]),
            calls,
            lambda i: reference_get(store, mid[i % len(mid)]),
        ),
        (
            "Registry(store).get(NAME) (latest)",
            lambda i: Registry(store, actor=ACTOR).get(names[i % len(names)]),
            calls,
            lambda i: reference_get(store, names[i % len(names)]),
        ),
        (
            "Registry(store).list(alias='production')",
            lambda i: Registry(store, actor=ACTOR).list(alias="production"),
            max(1, calls // 10),
            lambda i: reference_list_alias(store, "production"),
        ),
    ]
    out = []
    for label, ours, n, reference in rows:
        ours(0)  # first call: lazy imports and the OS cache, kept out
        row: dict[str, Any] = {"call": label, "ours_ms": summary(time_calls(ours, n), 1000)}
        if reference is not None:
            reference(0)
            m = max(1, min(reference_calls, n))
            row["reference_ms"] = summary(time_calls(reference, m), 1000)
            row["ratio"] = round(row["reference_ms"]["median"] / row["ours_ms"]["median"], 1)
        out.append(row)
    return out


# ------------------------------------------------------------------------------- running
def run(args: argparse.Namespace) -> dict[str, Any]:
    load = {"start": round(os.getloadavg()[0], 2)}
    tmp: Path | None = None
    if args.store:
        store = args.store.resolve()
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bench-registry-"))
        store = tmp / "store"
    try:
        build = None
        if not Store(store).events_file.exists():
            print(f"building {store} ...", file=sys.stderr, flush=True)
            build = build_store(store, args.models, args.versions_per_model)
            load["after_build"] = round(os.getloadavg()[0], 2)
        shape = describe_store(store)
        names = sorted({m["name"] for m in Registry(store).list(alias="production")})
        versions = shape["versions"] // max(1, shape["models"])
        name = next((n for n in names if "_D-042_" in n), names[len(names) // 2])
        load["before_measuring"] = round(os.getloadavg()[0], 2)
        cli = measure_cli(store, name, args.runs)
        load["after_cli"] = round(os.getloadavg()[0], 2)
        api = measure_api(store, names, versions, args.calls, args.reference_calls)
        load["after_api"] = round(os.getloadavg()[0], 2)
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    show = next(r for r in cli if r["command"] == "show NAME@production")
    cached = next(r for r in cli if r["command"] == "show NAME@production, bytecode cached")
    get = next(r for r in api if r["call"].startswith("Registry(store).get(NAME@"))
    return {
        "store": str(store),
        "kept": args.keep or bool(args.store),
        "shape": shape,
        "name": name,
        "build": build,
        "cli_runs": args.runs,
        "cli": cli,
        "api": api,
        "targets": {
            "cli_show_under_0.5_s": show["ours_s"]["max"] < 0.5,
            "cli_show_median_s": show["ours_s"]["median"],
            "cli_show_max_s": show["ours_s"]["max"],
            "cli_show_median_under_0.15_s": show["ours_s"]["median"] <= 0.15,
            "cli_show_cached_median_s": cached["ours_s"]["median"],
            "api_get_under_10_ms": get["ours_ms"]["median"] < 10,
            "api_get_median_ms": get["ours_ms"]["median"],
            "api_get_max_ms": get["ours_ms"]["max"],
        },
        "load_1min": load,
        "cpus": os.cpu_count(),
        "dont_write_bytecode": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
        "python": sys.version.split()[0],
    }


def print_table(r: dict[str, Any]) -> None:
    s = r["shape"]
    print(
        f"store: {s['models']} models, {s['versions']:,} versions, {s['events']:,} events "
        f"{s['events_by_type']}; events.jsonl {s['events_jsonl_bytes'] / 1e6:.1f} MB, "
        f"index.sqlite {s['index_bytes'] / 1e6:.1f} MB, {s['files_in_store']:,} entries"
    )
    if r["build"]:
        b = r["build"]
        print(
            f"built in {b['seconds']:.0f} s through the API {b['counts']}; register "
            f"{b['register_ms_mean']:.1f} ms mean (first 1000: {b['register_ms_first_1000']:.1f}"
            f", last 1000: {b['register_ms_last_1000']:.1f})"
        )
    else:
        print(f"reused {r['store']} (not built by this run)")
    print(
        f"\ncold CLI: `registry ARGS`, NAME = {r['name']}; a fresh process per run, "
        f"{r['cli_runs']} runs; PYTHONDONTWRITEBYTECODE={r['dont_write_bytecode']}"
    )
    print(
        f"{'':40} {'first':>6} {'median':>7} {'max':>6} {'ref first':>9} {'ref med':>8} "
        f"{'ref max':>8} {'ratio':>6}"
    )
    for row in r["cli"]:
        o = row["ours_s"]
        line = f"{row['command']:40} {row['first_s']:6.3f} {o['median']:7.3f} {o['max']:6.3f}"
        if "reference_s" in row:
            ref = row["reference_s"]
            line += (
                f" {row['reference_first_s']:9.3f} {ref['median']:8.3f} {ref['max']:8.3f} "
                f"{row['ratio']:5.2f}x"
            )
        print(line)
    print("seconds, wall time of subprocess.run; first: round 0, apart from median and max;")
    print("bytecode cached: PYTHONPYCACHEPREFIX=a temp folder (its round 0 compiles all of it)")
    print("\nAPI, in this process, ms per call")
    print(
        f"{'':50} {'calls':>5} {'median':>7} {'p90':>6} {'max':>6} {'ref n':>5} "
        f"{'ref med':>8} {'ref max':>8} {'ratio':>6}"
    )
    for row in r["api"]:
        o = row["ours_ms"]
        line = f"{row['call']:50} {o['n']:5d} {o['median']:7.3f} {o['p90']:6.3f} {o['max']:6.2f}"
        if "reference_ms" in row:
            ref = row["reference_ms"]
            line += f" {ref['n']:5d} {ref['median']:8.2f} {ref['max']:8.2f} {row['ratio']:5.1f}x"
        print(line)
    print("reference: replay events.jsonl (events.read + alias_stacks), read the metadata JSON")
    t = r["targets"]
    print(
        f"\ntargets: `registry show NAME@production` < 0.5 s cold: median {t['cli_show_median_s']}"
        f" s, max {t['cli_show_max_s']} s: {'met' if t['cli_show_under_0.5_s'] else 'NOT met'}"
    )
    print(
        f"         the same <= 0.15 s (median, issue 21): {t['cli_show_median_s']} s: "
        f"{'met' if t['cli_show_median_under_0.15_s'] else 'NOT met'}; bytecode cached "
        f"{t['cli_show_cached_median_s']} s"
    )
    print(
        f"         Registry(store).get(NAME@production) < 10 ms: median "
        f"{t['api_get_median_ms']} ms, max {t['api_get_max_ms']} ms: "
        f"{'met' if t['api_get_under_10_ms'] else 'NOT met'}"
    )
    print(f"load average (1 min): {r['load_1min']}; {r['cpus']} CPUs, Python {r['python']}")
    if r["kept"]:
        print(f"store kept at {r['store']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100, help="devices, one model each")
    parser.add_argument("--versions-per-model", type=int, default=100)
    parser.add_argument("--runs", type=int, default=10, help="cold CLI runs per command")
    parser.add_argument("--calls", type=int, default=1000, help="API calls per row (ours)")
    parser.add_argument("--reference-calls", type=int, default=100, help="API calls, reference")
    parser.add_argument("--store", type=Path, help="reuse this store; built (and kept) if empty")
    parser.add_argument("--keep", action="store_true", help="keep the temp store")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = run(args)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
