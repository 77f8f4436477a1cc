"""A site's exported bundle, and captchas located with it (`fleet score`).

A bundle is what `registry export` writes for a keypoint version (family.bundle):
  {site}/model.pth     the network's tensors
  {site}/bundle.json   the model (NAME:vN), its architecture (normalisation included), the
                       input size it reads, and the sha256 of each file
Every file is checked against its sha256 before it is read, and the weights are loaded with
`weights_only=True` (pipelines/versions.py): the network is the one the gate compared. Each image is
letterboxed into the network's input as training saw it (data.load_image), and its points are
given back in the image's own pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pipelines import versions
from pipelines.families import Scored
from pipelines.keypoint import card, data, draw, family, training
from pipelines.keypoint.errors import SampleError
from pipelines.keypoint.objective import predict

POINTS = ("gap_x", "gap_y", "slider_x", "slider_y")
HEADER = ("file", *POINTS, "error")


def load(folder: Path) -> tuple[dict[str, Any], training.TrainedSite]:
    """The bundle's manifest and its network; IntegrityError naming what is wrong."""
    manifest, version = versions.shipped(
        folder, card.FAMILY, card.SCOPE, family.INFERENCE, family.LAYOUT
    )
    return manifest, family.trained(version)


def score(
    bundle: Path, inputs: Sequence[Path], store: Path | None = None, draw_to: Path | None = None
) -> Scored:
    """Each PNG or JPEG captcha -> the gap's and the slider's centre, in its pixels; with
    `draw_to`, a copy of each with its points drawn (draw_to/{name}.png). A file that cannot
    be read is that file's failure, in one line; the others are located. `store` is not read:
    an image names no site."""
    manifest, site = load(bundle)
    if draw_to is not None:
        draw_to.mkdir(parents=True, exist_ok=True)
    net = training.network(site)  # built once: each image is one prediction of it
    keys = (*HEADER, "drawn") if draw_to is not None else HEADER
    records: list[dict[str, Any]] = []
    for path in inputs:
        record = dict.fromkeys(keys) | {"file": str(path)}
        try:
            image, box = data.load_image(path, site.height, site.width)
        except SampleError as exc:
            records.append(record | {"error": exc.reason})
            continue
        points = box.to_original(predict(net, torch.from_numpy(image[None]), 1)[0])
        record |= dict(zip(POINTS, points.tolist(), strict=True))
        if draw_to is not None:
            record["drawn"] = str(draw.save_drawn(path, draw_to / f"{path.stem}.png", points))
        records.append(record)
    table = [[_cell(r[key]) for key in HEADER] for r in records]
    title = f"site {manifest['site']}: {manifest['model']} ({site.height}x{site.width} input)"
    return Scored(title, HEADER, table, records, [], any(r["error"] for r in records))


def _cell(value: Any) -> Any:
    return f"{value:.1f}" if isinstance(value, float) else value
