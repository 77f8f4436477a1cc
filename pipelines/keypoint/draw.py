"""Points drawn on a copy of a captcha: the true ones as green rings, the predicted ones as
red crosses, each labelled (gap, slider), so that a reader sees at once how far off it is."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

TRUE, PREDICTED = (40, 220, 90), (240, 50, 50)
NAMES = ("gap", "slider")


def draw(
    image: Image.Image,
    predicted: Sequence[float],
    true: Sequence[float] | None = None,
) -> Image.Image:
    """A copy of `image` (RGB) with the points (gap x, y, slider x, y, in its pixels)."""
    out = image.convert("RGB")  # always a copy
    pen = ImageDraw.Draw(out)
    r = max(3, round(min(out.size) / 40))
    for i, name in enumerate(NAMES):
        if true is not None:
            x, y = true[2 * i], true[2 * i + 1]
            pen.ellipse((x - r, y - r, x + r, y + r), outline=TRUE, width=2)
        x, y = predicted[2 * i], predicted[2 * i + 1]
        pen.line((x - r, y, x + r, y), fill=PREDICTED, width=2)
        pen.line((x, y - r, x, y + r), fill=PREDICTED, width=2)
        pen.text((x + r + 2, y - r - 2), name, fill=PREDICTED)
    return out


def save_drawn(
    source: Path, out: Path, predicted: Sequence[float], true: Sequence[float] | None = None
) -> Path:
    """`source` drawn on and written as a PNG at `out` (never over `source`)."""
    if out.resolve() == source.resolve():
        raise ValueError(f"{out}: would overwrite the captcha it is drawn from")
    with Image.open(source) as image:
        draw(image, predicted, true).save(out, format="PNG")
    return out
