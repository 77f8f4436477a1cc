"""A family's versions as its registry module and its bundle reader take them: the weights of
a registered version as plain tensors, and an exported bundle as a registry `Version`.

Both read through the registry's checks: a version's bytes are sha256-checked by
`Version.read`, a bundle's files by `registry.export.read_bundle`, and weights are loaded
with `weights_only=True` (registry.loading).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from registry import export
from registry.errors import IntegrityError, InvalidNameError
from registry.families import Version
from registry.loading import state_dict
from registry.naming import parse_ref


def tensors(version: Version) -> dict[str, torch.Tensor]:
    """The version's model.pth, a mapping of names to tensors; ValueError otherwise."""
    loaded = state_dict(version.read("model"), version.ref)
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ValueError(f"{version.ref}: model.pth is not a mapping of names to tensors")
    return loaded


def shipped(
    folder: Path, family: str, scope: str, inference: Collection[str], layout: Mapping[str, str]
) -> tuple[dict[str, Any], Version]:
    """The bundle in `folder` (its manifest names the model, its `scope` and its `inference`
    settings; `layout` maps its files to artifact kinds) as its manifest and a Version whose
    `read` returns each file's checked bytes; IntegrityError naming what is wrong."""
    bundle = export.read_bundle(folder)
    manifest = bundle.manifest
    try:
        ref = parse_ref(manifest["model"])
        settings = {key: manifest[key] for key in inference}
        meta = {"name": str(ref.name), "version": ref.version, "scope": manifest[scope]}
    except (KeyError, TypeError, InvalidNameError) as exc:
        raise IntegrityError(
            f"{bundle.folder}: its manifest lacks a {family} model's settings ({exc})"
        ) from exc
    files = {kind: file for file, kind in layout.items()}
    version = Version(meta | {"inference": settings}, lambda kind: bundle.read(files[kind]))
    return manifest, version
