"""What the registry asks of a model family, found through an entry point, never imported by name.

The registry stores a version's files as opaque, verified artifacts. A family (e.g.
`acoustic`, in `pipelines/acoustic/family.py`) is found through the entry point group
`registry.families` and declares which files a version of it has:
- `ARTIFACTS`: artifact kind -> its file in a folder to register (`model` -> its weights file); a
  registered file is stored as `{name}_v{N}_{kind}{suffix}`; `model` is the one every family has;
- `CHECKPOINTS`: the kinds kept under `checkpoints/` (for resuming a training, never shipped).
- `POLICY` (optional): the gate its versions meet while no policy applying to them was ever
  set in the store, as `{"floors": {metric: bound}, "ceilings": {...}, "rollback_factor": x}`
  (the acoustic family: `auc >= 0.9`); without one, the gate's neutral default (no bounds).
A folder of a family that is not installed is stored as it is: each regular file `{kind}.{ext}`.
Two things need to know what is inside the files, and the family provides both:
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

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from registry.errors import ArtifactError

GROUP = "registry.families"
REQUIRED = "model"  # the artifact kind every version has
CHECKPOINTS = "checkpoints"  # the store's folder of the kinds a family keeps for resuming
_FILE = re.compile(r"([a-z][a-z0-9_]*)\.[a-z0-9]+")  # {kind}.{ext}: a kind is part of a file name


@dataclass(frozen=True)
class Version:
    meta: dict[str, Any]
    read: Callable[[str], bytes]  # artifact kind -> its verified bytes

    @property
    def ref(self) -> str:
        """NAME:vN, as a message names the version."""
        return f"{self.meta['name']}:v{self.meta['version']}"

    def inference(self, keys: Collection[str], remedy: str) -> dict[str, Any]:
        """The inference settings registered with the version (`register(extra=...)`),
        holding at least `keys`; ValueError naming the version and `remedy` otherwise."""
        found = self.meta.get("inference")
        if not isinstance(found, dict) or not set(keys) <= set(found):
            raise ValueError(
                f"{self.ref} has no inference settings recorded ({', '.join(keys)}); {remedy}"
            )
        return found


class Family(Protocol):
    ARTIFACTS: Mapping[str, str]
    CHECKPOINTS: Collection[str]

    def bundle(self, version: Version) -> tuple[dict[str, str], dict[str, Any]]: ...

    def compare(self, candidate: Version, holder: Version) -> tuple[float, float]: ...


def installed() -> dict[str, Callable[[], Family]]:
    """Family name -> a loader of its module, for every installed family."""
    from importlib.metadata import entry_points  # here: commands that find no family start faster

    return {point.name: point.load for point in entry_points(group=GROUP)}


def find(name: str, families: Mapping[str, Family] | None = None) -> Family | None:
    if families is not None:
        return families.get(name)
    loader = installed().get(name)
    return loader() if loader else None


@dataclass(frozen=True)
class Artifact:
    """One file of a folder to register, and where the store keeps it."""

    kind: str
    source: Path
    checkpoint: bool = False


def artifacts(folder: Path, family: Family | None) -> list[Artifact]:
    """The files of `folder` as artifacts of `family` (None: a family that is not installed,
    whose files are taken as they are); ArtifactError naming the file otherwise."""
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: not a folder of artifacts to register")
    present = sorted(p.name for p in folder.iterdir())
    odd = [
        name for name in present if (folder / name).is_symlink() or not (folder / name).is_file()
    ]
    if odd:
        raise ArtifactError(f"{folder}: {', '.join(odd)} is not a regular file")
    declared = dict(family.ARTIFACTS) if family else {}
    if family is None:
        by_file = {name: match[1] for name in present if (match := _FILE.fullmatch(name))}
    else:
        by_file = {file: kind for kind, file in declared.items()}
    extra = [name for name in present if name not in by_file]
    if extra:
        expected = ", ".join(declared.values()) if family else "files named {kind}.{ext}"
        raise ArtifactError(
            f"{folder}: unexpected file(s) {', '.join(extra)}; expected only {expected}"
        )
    if REQUIRED not in {by_file[name] for name in present}:
        raise ArtifactError(f"{folder}: missing {declared.get(REQUIRED, REQUIRED + '.*')}")
    kept = set(family.CHECKPOINTS) if family else set()
    found = [Artifact(by_file[name], folder / name, by_file[name] in kept) for name in present]
    kinds = [a.kind for a in found]
    twice = sorted({kind for kind in kinds if kinds.count(kind) > 1})
    if twice:
        raise ArtifactError(f"{folder}: more than one file of kind {twice[0]}")
    bad = [kind for kind in kinds if not _FILE.fullmatch(f"{kind}.x")]
    if bad:
        raise ArtifactError(
            f"{folder}: artifact kind {bad[0]!r} is not a name of lower-case letters, digits and _"
        )
    return found
