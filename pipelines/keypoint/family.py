"""The keypoint family as the registry sees it: its artifact kinds, bundle layout and comparison.

A version is one site's network (`scope`: the site). Its model.pth is the network's tensors;
its `inference` settings say what the network is (`architecture`: model.py, the input's
normalisation included) and what it reads (`height` x `width`, the letterboxed 4-channel
input of data.py). eval_images.npy and eval_coords.npy are some of its own validation
captchas (uint8, in that input) and their true points, on which the gate compares it with the
production holder.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

from registry.errors import IncomparableError
from registry.families import Version

# torch comes with training and versions, imported by the functions that load a model: the
# registry reads this module's POLICY and ARTIFACTS for commands that load none.
if TYPE_CHECKING:
    from pipelines.keypoint.training import TrainedSite

ARTIFACTS = {
    "model": "model.pth",
    "eval_images": "eval_images.npy",
    "eval_coords": "eval_coords.npy",
}
CHECKPOINTS: tuple[str, ...] = ()  # the engine's resume point stays with the run
# The gate while no policy was set: seed 002's selection metric and its error, in pixels of
# the captcha (its targets are stricter: hit@5 > 99 %, MAE < 2 px).
POLICY = {"floors": {"hit_le_5px": 95.0}, "ceilings": {"mae_px": 3.0}}
INFERENCE = ("architecture", "height", "width")
LAYOUT = {"model.pth": "model"}  # the bundle: file -> artifact kind (bundle.py reads it back)


def bundle(version: Version) -> tuple[dict[str, str], dict[str, Any]]:
    """The inference layout (bundle file -> artifact kind) and the manifest's settings. The
    network locates the points of one blank captcha first, from its safely loaded weights:
    nothing ships that would not load or not predict."""
    from pipelines.keypoint.training import predict_site

    site = trained(version)
    try:
        out = predict_site(site, np.zeros((1, 4, site.height, site.width), dtype=np.uint8))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a missing tensor, a shape
        raise ValueError(
            f"{version.ref}: its weights do not make a network of its architecture reading "
            f"{site.height}x{site.width} captchas ({exc!r})"
        ) from exc
    if out.shape != (1, 4) or not np.isfinite(out).all():
        raise ValueError(f"{version.ref}: locates {out!r} in a captcha, not two finite points")
    settings = {
        "site": version.meta["scope"],
        "architecture": site.architecture,
        "height": site.height,
        "width": site.width,
    }
    return dict(LAYOUT), settings


def compare(candidate: Version, holder: Version) -> tuple[float, float]:
    """(candidate MAE, holder MAE) in input pixels on the candidate's validation captchas.
    Networks that read another input size see other pixels: IncomparableError (the gate
    compares metrics)."""
    sites = [trained(v) for v in (candidate, holder)]
    sizes = [(s.height, s.width) for s in sites]
    if sizes[0] != sizes[1]:
        raise IncomparableError(
            f"{candidate.ref} reads {sizes[0][0]}x{sizes[0][1]} captchas, "
            f"{holder.ref} reads {sizes[1][0]}x{sizes[1][1]}"
        )
    images, coords = _array(candidate, "eval_images"), _array(candidate, "eval_coords")
    if images.shape[1:] != (4, *sizes[0]) or coords.shape != (len(images), 4):
        raise ValueError(
            f"{candidate.ref}: eval_images {images.shape} and eval_coords {coords.shape} are "
            "not its captchas and their points"
        )
    from pipelines.keypoint.metrics import keypoint_metrics
    from pipelines.keypoint.training import predict_site

    c, h = (keypoint_metrics(predict_site(s, images), coords)["mae_px"] for s in sites)
    return c, h


def trained(version: Version) -> TrainedSite:
    """The version as a trained site (without its split, which is not stored: prediction
    never reads it)."""
    from pipelines import versions
    from pipelines.keypoint.training import TrainedSite
    from pipelines.split import Split

    inference = version.inference(INFERENCE, "register it with them")
    return TrainedSite(
        inference["architecture"],
        versions.tensors(version),
        int(inference["height"]),
        int(inference["width"]),
        Split(*(np.empty(0, dtype=np.int64) for _ in range(3))),
    )


def _array(version: Version, kind: str) -> np.ndarray:
    return np.load(io.BytesIO(version.read(kind)), allow_pickle=False)
