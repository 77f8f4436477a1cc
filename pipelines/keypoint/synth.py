"""A deterministic synthetic slider captcha: the keypoint family's demo sites.

A captcha is a background with a gap the shape of a jigsaw piece in its right part, and the
piece itself (the background's pixels under the gap, with a bevelled border) at its left
edge, at another height; the network finds both centres. Written in data.py's layout:

    {folder}/images/{i:05d}.png  the captchas, style.height x style.width RGB
    {folder}/labels.jsonl        gap_coords, slider_coords, has_rotation, has_noise, image

Backgrounds are crops of the two photographs scikit-learn ships (china.jpg, flower.jpg; no
download) at a random position and zoom, flipped at random and colour-jittered (brightness,
contrast, saturation, a small hue turn), or, so that a network cannot learn two photographs
by heart, procedural textures: gradients with low-frequency colour blobs, stripes and
checks, fractal value noise through a random palette, and random filled shapes.

The piece is a rounded square (side `style.piece` x the height, its corners rounded at
random) with one or two round knobs on random sides and maybe one blank (an inward notch),
drawn from its signed distance, so that every edge is anti-aliased and every shape's
bounding box is known exactly. The gap is drawn as a shadow (the background darkened, maybe
with an inset edge), an outline (a light or dark ring), or either (`gap="mixed"`); the piece
and the gap are turned by one small angle when rotated (3-15 degrees either way).

The labels are the centres of the shapes' bounding boxes, the point each shape is drawn
around, to 0.01 px: in pixels of the image, x right and y down, pixel (i, j) covering
[i, i+1) x [j, j+1). The same label and drawing come from one set of numbers, so that the
coverage masks' bounding boxes centre on the labels to well under a pixel (the tests check).

Captcha i is drawn from its own random stream, np.random.default_rng([seed, i]): the same
(seed, i, style) gives the same pixels, whatever the count; PNGs are written by Pillow with
fixed options and no time stamp, so the same arguments give the same bytes.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipelines.keypoint.data import IMAGES, write_labels

PHOTOS = ("china.jpg", "flower.jpg")  # scikit-learn's sample images, inside its wheel
# zlib's fastest level and run-length matching: a noisy captcha compresses little, so
# the encoder's time is what counts. Fixed options: the same pixels give the same bytes.
_PNG = {"format": "PNG", "compress_level": 1, "compress_type": zlib.Z_RLE}
_KNOB = (0.15, 0.2)  # a knob's radius, in body sides
_KNOB_OFFSET = 0.55  # a knob's centre beyond its side (a blank's: inside), in radii
_CORNER = (0.08, 0.2)  # the body's corner radius, in body sides
# A piece's farthest point from its body's centre, in body sides (a knob's far edge): its
# bounding box is at most twice that across, whatever the angle.
_EXTENT = 0.5 + (1 + _KNOB_OFFSET) * _KNOB[1]
_ANGLE = (3.0, 15.0)  # a rotated piece's angle, degrees, either way
_SIDES = ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))  # right, bottom, left, top
_LIGHT = (-math.sqrt(0.5), -math.sqrt(0.5))  # bevels are lit from the top left
_PAD = 4  # pixels drawn around a shape's box: its anti-aliased edge, ring and halo
_SLIDER_ZONE = 0.15  # the piece's centre lies within this share of the width from the left
_GAP_FROM = 0.3  # the gap's centre lies right of this share of the width
_SEPARATION = 4  # pixels at least between the piece's box and the gap's


@dataclass(frozen=True)
class SiteStyle:
    """How one synthetic site's captchas look. `piece` is the range of the piece's body side
    as a share of the height (knobs add up to a third of the side on theirs); `rotation`,
    `noise`, `photos` and `distractor` are the probabilities, per captcha, of a rotated piece
    and gap, Gaussian pixel noise, a photograph's crop as the background (else a texture)
    and a faint second shape that is not the gap."""

    height: int = 256
    width: int = 512
    gap: Literal["shadow", "outline", "mixed"] = "mixed"
    piece: tuple[float, float] = (0.17, 0.25)
    rotation: float = 0.3
    noise: float = 0.3
    photos: float = 0.7
    distractor: float = 0.2

    def __post_init__(self) -> None:
        if self.height < 32 or self.width < 32:
            raise ValueError(f"captcha size {self.height} x {self.width}: expected 32 or more")
        if self.gap not in ("shadow", "outline", "mixed"):
            raise ValueError(f"gap {self.gap!r}: expected shadow, outline or mixed")
        low, high = self.piece
        if not 0 < low <= high:
            raise ValueError(f"piece {self.piece}: expected 0 < low <= high (shares of height)")
        half = _EXTENT * high * self.height  # the largest piece's half box, pixels
        if 2 * half + 2 * _PAD > self.height or 4 * half + 2 * _PAD + _SEPARATION > self.width:
            raise ValueError(
                f"piece {self.piece}: a piece of {high:g} x {self.height} px does not fit "
                f"twice side by side in {self.height} x {self.width}: expected a smaller share"
            )
        for key in ("rotation", "noise", "photos", "distractor"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"{key} {getattr(self, key)}: expected a probability, 0 to 1")


class Captcha(NamedTuple):
    """One drawn captcha and what it was drawn from: `image` and `clean` (the background
    alone) are (H, W, 3) uint8, the masks (H, W) float32 coverage from 0 to 1 of the gap's
    and the piece's shapes, `record` its labels line."""

    image: np.ndarray
    clean: np.ndarray
    gap_mask: np.ndarray
    piece_mask: np.ndarray
    gap_style: Literal["shadow", "outline"]
    photo: bool
    record: dict[str, Any]


@dataclass(frozen=True)
class _Shape:
    """A jigsaw piece around its body's centre, turned by `angle` (radians, image axes)."""

    side: float
    corner: float
    knob: float
    knobs: tuple[int, ...]  # indices into _SIDES
    blanks: tuple[int, ...]
    angle: float

    def _turned(self, x: float, y: float) -> tuple[float, float]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        return c * x - s * y, s * x + c * y

    def box(self) -> tuple[float, float, float, float]:
        """The turned shape's bounding box around the body's centre: x0, x1, y0, y1 (exact:
        the rounded square's and the knobs' extremes; a blank never reaches one)."""
        inner = self.side / 2 - self.corner
        c, s = abs(math.cos(self.angle)), abs(math.sin(self.angle))
        reach = inner * (c + s) + self.corner
        x0, x1, y0, y1 = -reach, reach, -reach, reach
        for side in self.knobs:
            x, y = self._turned(*self._centre(side, outward=True))
            x0, x1 = min(x0, x - self.knob), max(x1, x + self.knob)
            y0, y1 = min(y0, y - self.knob), max(y1, y + self.knob)
        return x0, x1, y0, y1

    def distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The signed distance (negative inside) at points relative to the body's centre."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        u, v = c * x + s * y, c * y - s * x  # into the unturned shape's frame
        inner = self.side / 2 - self.corner
        qx, qy = np.abs(u) - inner, np.abs(v) - inner
        d = (
            np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
            + np.minimum(np.maximum(qx, qy), 0)
            - self.corner
        )
        for side in self.knobs:
            kx, ky = self._centre(side, outward=True)
            d = np.minimum(d, np.hypot(u - kx, v - ky) - self.knob)
        for side in self.blanks:
            kx, ky = self._centre(side, outward=False)
            d = np.maximum(d, self.knob - np.hypot(u - kx, v - ky))
        return d

    def _centre(self, side: int, outward: bool) -> tuple[float, float]:
        nx, ny = _SIDES[side]
        reach = self.side / 2 + (1 if outward else -1) * _KNOB_OFFSET * self.knob
        return nx * reach, ny * reach


class _Placed(NamedTuple):
    """A shape drawn around (cx, cy): its window in the image, and there its signed
    distance and coverage."""

    rows: slice
    cols: slice
    d: np.ndarray
    alpha: np.ndarray


def generate_site(folder: Path, count: int, seed: int, style: SiteStyle = SiteStyle()) -> None:
    """Write `count` captchas and their labels into `folder` (made if missing). Only its own
    files are written (images/NNNNN.png, labels.jsonl, last); nothing is removed."""
    if count < 1:
        raise ValueError(f"count {count}: expected at least one captcha")
    (folder / IMAGES).mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(count):
        captcha = render(index, seed, style)
        Image.fromarray(captcha.image).save(folder / captcha.record["image"], **_PNG)
        records.append(captcha.record)
    write_labels(folder, records)


def render(index: int, seed: int, style: SiteStyle = SiteStyle()) -> Captcha:
    """Captcha `index` of a site made with `seed`, and the masks it was drawn with."""
    rng = np.random.default_rng([seed, index])
    height, width = style.height, style.width
    photo = bool(rng.random() < style.photos)
    clean = _photo(rng, height, width) if photo else _texture(rng, height, width)
    rotated = bool(rng.random() < style.rotation)
    shape = _random_shape(rng, style, rotated)
    gap_style = style.gap if style.gap != "mixed" else ("shadow", "outline")[rng.integers(2)]

    gap_xy, slider_xy, half = _positions(rng, shape, height, width)

    canvas = clean.copy()
    if rng.random() < style.distractor:
        _distract(canvas, rng, style, gap_xy, slider_xy, half)
    gap = _place(shape, *gap_xy, canvas.shape)
    if gap_style == "shadow":
        # as a real captcha draws its gap: visible on any background, a dark translucent fill
        # with a rim (a fainter one was a guess for a person too, bench/README.md)
        _shadow(canvas, gap, rng, strength=rng.uniform(0.5, 0.8), rim=0.8)
    else:
        _outline(canvas, gap, rng, strength=rng.uniform(0.7, 1.0))
    piece = _place(shape, *slider_xy, canvas.shape)
    _paste_piece(
        canvas, clean, piece, rng, shift=(gap_xy[0] - slider_xy[0], gap_xy[1] - slider_xy[1])
    )
    noisy = bool(rng.random() < style.noise)
    if noisy:
        sigma = rng.uniform(3.0, 12.0)
        canvas += sigma * rng.standard_normal(canvas.shape, dtype=np.float32)

    record = {
        "image": f"{IMAGES}/{index:05d}.png",
        "gap_coords": list(gap_xy),
        "slider_coords": list(slider_xy),
        "has_rotation": rotated,
        "has_noise": noisy,
    }
    return Captcha(
        image=_to_uint8(canvas),
        clean=_to_uint8(clean),
        gap_mask=_full_mask(gap, canvas.shape),
        piece_mask=_full_mask(piece, canvas.shape),
        gap_style=gap_style,
        photo=photo,
        record=record,
    )


def _positions(
    rng: np.random.Generator, shape: _Shape, height: int, width: int
) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
    """The gap's and the piece's centres (to 0.01 px: what the labels say is what is drawn)
    and the shape's half box: the piece near the left edge, the gap right of it, apart."""
    x0, x1, y0, y1 = shape.box()
    half_w, half_h = (x1 - x0) / 2, (y1 - y0) / 2
    margin = _PAD / 2  # the box stays this far inside the image, its edge drawn whole
    slider_x = half_w + margin + rng.uniform(0, max(0.0, _SLIDER_ZONE * width - half_w - margin))
    gap_low = max(_GAP_FROM * width, slider_x + 2 * half_w + _SEPARATION)
    gap_x = rng.uniform(gap_low, max(gap_low, width - half_w - margin))
    gap_y, slider_y = rng.uniform(half_h + margin, height - half_h - margin, size=2)
    gap = (round(float(gap_x), 2), round(float(gap_y), 2))
    slider = (round(float(slider_x), 2), round(float(slider_y), 2))
    return gap, slider, (half_w, half_h)


def _random_shape(rng: np.random.Generator, style: SiteStyle, rotated: bool) -> _Shape:
    side = rng.uniform(*style.piece) * style.height
    order = rng.permutation(4)
    knobs = int(rng.integers(1, 3))
    blanks = int(rng.random() < 0.5)
    angle = 0.0
    if rotated:
        angle = math.radians(rng.uniform(*_ANGLE)) * (1 if rng.random() < 0.5 else -1)
    return _Shape(
        side=side,
        corner=rng.uniform(*_CORNER) * side,
        knob=rng.uniform(*_KNOB) * side,
        knobs=tuple(int(s) for s in order[:knobs]),
        blanks=tuple(int(s) for s in order[knobs : knobs + blanks]),
        angle=angle,
    )


def _place(shape: _Shape, cx: float, cy: float, size: tuple[int, ...]) -> _Placed:
    """`shape` with its bounding box centred on (cx, cy), evaluated at the pixel centres of
    its window (the box and _PAD around it, within the image)."""
    height, width = size[:2]
    x0, x1, y0, y1 = shape.box()
    body_x, body_y = cx - (x0 + x1) / 2, cy - (y0 + y1) / 2  # the box's centre is (cx, cy)
    c0 = max(0, math.floor(body_x + x0 - _PAD))
    c1 = min(width, math.ceil(body_x + x1 + _PAD))
    r0 = max(0, math.floor(body_y + y0 - _PAD))
    r1 = min(height, math.ceil(body_y + y1 + _PAD))
    xs = (np.arange(c0, c1, dtype=np.float32) + 0.5 - body_x)[None, :]
    ys = (np.arange(r0, r1, dtype=np.float32) + 0.5 - body_y)[:, None]
    d = shape.distance(xs, ys).astype(np.float32)
    alpha = np.clip(0.5 - d, 0.0, 1.0)  # a pixel's coverage, from the distance at its centre
    return _Placed(slice(r0, r1), slice(c0, c1), d, alpha)


def _shade(d: np.ndarray) -> np.ndarray:
    """How much each point's outward normal faces the light, -1 to 1."""
    dy, dx = np.gradient(d)
    norm = np.hypot(dx, dy) + 1e-6
    return (dx * _LIGHT[0] + dy * _LIGHT[1]) / norm


def _band(placed: _Placed, width: float) -> np.ndarray:
    """The coverage within `width` px inside the shape's edge: its coverage less its erosion
    by a disc. From the coverage, not the distance: the distance of a union of shapes is too
    small inside where they join (a knob's neck), and would draw an edge across it."""
    alpha = placed.alpha
    reach = int(width)
    padded = np.pad(alpha, reach)  # beyond the window: not covered
    eroded = alpha.copy()
    rows, cols = alpha.shape
    for dy in range(-reach, reach + 1):  # a few dozen offsets, each a whole-window minimum
        for dx in range(-reach, reach + 1):
            if dy * dy + dx * dx <= width * width:
                shifted = padded[reach + dy : reach + dy + rows, reach + dx : reach + dx + cols]
                np.minimum(eroded, shifted, out=eroded)
    return alpha - eroded


def _shadow(
    canvas: np.ndarray, gap: _Placed, rng: np.random.Generator, strength: float, rim: float
) -> None:
    window = canvas[gap.rows, gap.cols]
    window *= (1 - strength * gap.alpha)[..., None]
    if rng.random() < rim:  # an inset edge: a hole's rim, dark where the light comes from
        band = _band(gap, rng.uniform(1.0, 2.5))
        window += (rng.uniform(30, 80) * band * -_shade(gap.d))[..., None]


def _outline(canvas: np.ndarray, gap: _Placed, rng: np.random.Generator, strength: float) -> None:
    window = canvas[gap.rows, gap.cols]
    window *= (1 - rng.uniform(0.0, 0.25) * gap.alpha)[..., None]  # a faint tint inside
    half = rng.uniform(0.75, 1.5)  # the ring's half width, centred on the edge
    ring = strength * np.clip(half + 0.5 - np.abs(gap.d), 0.0, 1.0)[..., None]
    colour = rng.uniform(210, 255) if rng.random() < 0.6 else rng.uniform(0, 50)
    window *= 1 - ring
    window += ring * colour


def _paste_piece(
    canvas: np.ndarray,
    clean: np.ndarray,
    piece: _Placed,
    rng: np.random.Generator,
    shift: tuple[float, float],
) -> None:
    """The background under the gap (`shift` px away), bevelled, over a soft drop shadow."""
    height, width = canvas.shape[:2]
    dx, dy = round(shift[0]), round(shift[1])  # a whole-pixel copy: the mask is the exact part
    rows = np.clip(np.arange(piece.rows.start, piece.rows.stop) + dy, 0, height - 1)
    cols = np.clip(np.arange(piece.cols.start, piece.cols.stop) + dx, 0, width - 1)
    content = clean[rows[:, None], cols[None, :]]
    band = _band(piece, rng.uniform(1.0, 3.0))
    if rng.random() < 0.6:
        edge = 128 + 127 * _shade(piece.d)  # a bevel: light top left, dark bottom right
    else:
        edge = np.full_like(piece.d, rng.uniform(200, 255))
    mix = (rng.uniform(0.6, 0.95) * band)[..., None]
    content = content * (1 - mix) + mix * edge[..., None]
    window = canvas[piece.rows, piece.cols]
    if rng.random() < 0.7:
        halo = np.clip(1 - piece.d / rng.uniform(2.0, 4.0), 0.0, 1.0)
        window *= (1 - rng.uniform(0.3, 0.6) * halo)[..., None]
    alpha = piece.alpha[..., None]
    window *= 1 - alpha
    window += alpha * content


def _distract(
    canvas: np.ndarray,
    rng: np.random.Generator,
    style: SiteStyle,
    gap: tuple[float, float],
    slider: tuple[float, float],
    half: tuple[float, float],
) -> None:
    """A faint second shape away from the gap and the piece: not every shadow is the gap."""
    shape = _random_shape(rng, style, rotated=bool(rng.random() < style.rotation))
    x0, x1, y0, y1 = shape.box()
    own_w, own_h = (x1 - x0) / 2, (y1 - y0) / 2
    height, width = canvas.shape[:2]
    for _ in range(8):  # a few tries; a crowded captcha goes without one
        cx = rng.uniform(own_w + _PAD, width - own_w - _PAD)
        cy = rng.uniform(own_h + _PAD, height - own_h - _PAD)
        clear = all(
            abs(cx - ox) > own_w + half[0] + _PAD or abs(cy - oy) > own_h + half[1] + _PAD
            for ox, oy in (gap, slider)
        )
        if clear:
            placed = _place(shape, cx, cy, canvas.shape)
            if rng.random() < 0.5:
                _shadow(canvas, placed, rng, strength=rng.uniform(0.12, 0.3), rim=0.5)
            else:
                _outline(canvas, placed, rng, strength=rng.uniform(0.2, 0.45))
            return


def _photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A crop of a photograph at a random place and zoom, flipped maybe, colour-jittered."""
    photo = _photos()[int(rng.integers(len(PHOTOS)))]
    pw, ph = photo.size
    widest = min(pw, ph * width / height)  # the largest crop of the captcha's aspect
    cw = widest * rng.uniform(0.4, 1.0)
    ch = cw * height / width
    x0, y0 = rng.uniform(0, pw - cw), rng.uniform(0, ph - ch)
    crop = photo.resize((width, height), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    pixels = np.asarray(crop, dtype=np.float32)
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    return _jitter(pixels, rng)


@functools.cache
def _photos() -> tuple[Image.Image, ...]:
    from sklearn.datasets import load_sample_image  # slow to import: only when needed

    return tuple(Image.fromarray(load_sample_image(name)) for name in PHOTOS)


def _jitter(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and a hue turn: one 3x3 matrix and an offset."""
    brightness, contrast = rng.uniform(0.75, 1.25), rng.uniform(0.7, 1.3)
    saturation, hue = rng.uniform(0.6, 1.4), rng.uniform(-0.35, 0.35)
    luma = np.array([[0.299, 0.587, 0.114]] * 3)
    saturate = saturation * np.eye(3) + (1 - saturation) * luma
    k = np.full(3, 1 / math.sqrt(3))  # the grey axis: a hue turn is a rotation about it
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    turn = math.cos(hue) * np.eye(3) + math.sin(hue) * cross + (1 - math.cos(hue)) * np.outer(k, k)
    matrix = (brightness * contrast * turn @ saturate).astype(np.float32)
    offset = np.float32(brightness * (1 - contrast) * pixels.mean())
    return pixels @ matrix.T + offset


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A procedural background of one of four kinds, with fine value noise over it."""
    kind = int(rng.integers(4))
    base = _gradient(rng, height, width)
    if kind == 0:  # a gradient with low-frequency colour blobs
        out = base
        for _ in range(2):
            out = out + _noise(rng, height, width, cells=3, octaves=3)[..., None] * _colour(
                rng, -90, 90
            )
    elif kind == 1:  # stripes or checks
        out = _stripes(rng, height, width, base)
    elif kind == 2:  # fractal value noise through a random palette
        field = _noise(rng, height, width, cells=int(rng.integers(2, 8)), octaves=4)
        field = (field - field.min()) / (np.ptp(field) + 1e-6)
        palette = np.stack([_colour(rng, 0, 255) for _ in range(3)])
        low = np.clip(2 * field, 0, 1)[..., None]
        high = np.clip(2 * field - 1, 0, 1)[..., None]
        out = palette[0] + (palette[1] - palette[0]) * low + (palette[2] - palette[1]) * high
    else:  # random filled shapes: edges and corners, as a photograph has
        out = _shapes(rng, base)
    fine = _noise(rng, height, width, cells=int(rng.integers(16, 48)), octaves=1)
    return (out + rng.uniform(5, 25) * fine[..., None]).astype(np.float32)


def _gradient(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    a, b = _colour(rng, 0, 255), _colour(rng, 0, 255)
    turn = rng.uniform(0, 2 * math.pi)
    xs = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    ys = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None] * (height / width)
    t = np.clip(xs * math.cos(turn) + ys * math.sin(turn) + 0.5, 0, 1)[..., None]
    return a + (b - a) * t


def _stripes(rng: np.random.Generator, height: int, width: int, base: np.ndarray) -> np.ndarray:
    turn = rng.uniform(0, math.pi)
    periods = rng.uniform(3, 30)
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    scale = 2 * math.pi * periods / width
    along = (xs * math.cos(turn) + ys * math.sin(turn)) * scale + rng.uniform(0, 2 * math.pi)
    wave = np.sin(along)
    if rng.random() < 0.4:  # checks: the product with a wave across
        across = (ys * math.cos(turn) - xs * math.sin(turn)) * scale
        wave = wave * np.sin(across + rng.uniform(0, 2 * math.pi))
    t = ((np.tanh(rng.uniform(1, 8) * wave) + 1) / 2)[..., None]
    other = _colour(rng, 0, 255)
    return base * (1 - t) + other * t


def _shapes(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    height, width = base.shape[:2]
    image = Image.fromarray(_to_uint8(base))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(8, 30))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.02, 0.2) * width, rng.uniform(0.02, 0.3) * height
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        outline = tuple(int(v) for v in rng.integers(0, 256, 3)) if rng.random() < 0.3 else None
        kind = int(rng.integers(3))
        if kind == 0:
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill, outline=outline)
        elif kind == 1:
            draw.rectangle((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill, outline=outline)
        else:
            corners = int(rng.integers(3, 7))
            turns = np.sort(rng.uniform(0, 2 * math.pi, corners))
            points = [(cx + rx * math.cos(t), cy + ry * math.sin(t)) for t in turns]
            draw.polygon(points, fill=fill, outline=outline)
    if rng.random() < 0.6:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.5))))
    return np.asarray(image, dtype=np.float32)


def _noise(
    rng: np.random.Generator, height: int, width: int, cells: int, octaves: int
) -> np.ndarray:
    """Value noise, about -1 to 1: random grids of `cells` (then 2x, 4x...) across the
    width, each upsampled bicubically to the image, summed with halving weights."""
    total = np.zeros((height, width), dtype=np.float32)
    weight = 1.0
    for octave in range(octaves):
        across = cells * 2**octave + 1
        down = max(2, round(across * height / width) + 1)
        grid = rng.uniform(-1, 1, (down, across)).astype(np.float32)
        field = Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC)
        total += weight * np.asarray(field, dtype=np.float32)
        weight /= 2
    return total / (2 - weight * 2)  # the weights' sum: about -1 to 1 again


def _colour(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    return rng.uniform(low, high, 3).astype(np.float32)


def _full_mask(placed: _Placed, size: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(size[:2], dtype=np.float32)
    mask[placed.rows, placed.cols] = placed.alpha
    return mask


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    rounded = np.rint(pixels)
    np.clip(rounded, 0, 255, out=rounded)  # in place: a captcha's worth of floats, not two
    return rounded.astype(np.uint8)
