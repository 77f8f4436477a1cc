"""The keypoint family's demo data (stage generate): each site of `generate.sites`, its own
synthetic slider captchas (synth.py) at the network's input size, in the family's layout."""

from __future__ import annotations

from pathlib import Path

from pipelines.keypoint import synth
from pipelines.keypoint.params import KeypointParams


def generate(root: Path, params: KeypointParams) -> dict[str, str]:
    """Write every demo site under `root`; what was written, per site."""
    g, d = params.generate, params.data
    style = synth.SiteStyle(
        height=d.height, width=d.width, gap=g.gap, rotation=g.rotation, noise=g.noise
    )
    written = {}
    for i, site in enumerate(g.sites):
        # each site its own captchas: a seed of its own, drawn alike
        synth.generate_site(root / site, g.count, g.seed + 1000 * i, style)
        written[site] = f"{g.count} captchas in {root / site}"
    return written
