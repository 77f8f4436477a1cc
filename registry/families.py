"""What the registry asks of a model family, found through an entry point, never imported by name.

The registry stores a version's files as opaque, verified artifacts. Two things need to know
what is inside them, and a family (e.g. `acoustic`, in `pipelines/acoustic/family.py`)
provides both through the entry point group `registry.families`:
- `bundle(version) -> (files, manifest)`: the inference layout, bundle file -> artifact kind,
  and what the manifest must say besides the sha256 of each file; it loads the weights safely
  (weights_only) before anything is shipped, and raises on any problem;
- `compare(candidate, holder) -> (candidate_error, holder_error)`: both models' error on the
  candidate's own evaluation data, for the gate's degradation check; or IncomparableError
  (registry.errors) when the two errors are on different scales (two types of model for
  one device): the gate then compares the two versions' metrics.
Each receives `Version`s whose `read` returns an artifact's bytes only after checking them
against the sha256 recorded at registration. A family that is not installed exports nothing
and compares nothing: the registry refuses, naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

GROUP = "registry.families"


@dataclass(frozen=True)
class Version:
    meta: dict[str, Any]
    read: Callable[[str], bytes]  # artifact kind -> its verified bytes


class Family(Protocol):
    def bundle(self, version: Version) -> tuple[dict[str, str], dict[str, Any]]: ...

    def compare(self, candidate: Version, holder: Version) -> tuple[float, float]: ...


def installed() -> dict[str, Callable[[], Family]]:
    """Family name -> a loader of its module, for every installed family."""
    return {point.name: point.load for point in entry_points(group=GROUP)}


def find(name: str, families: Mapping[str, Family] | None = None) -> Family | None:
    if families is not None:
        return families.get(name)
    loader = installed().get(name)
    return loader() if loader else None
