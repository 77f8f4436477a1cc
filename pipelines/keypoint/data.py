"""Where the keypoint family's sites live, and reading one site's labelled captchas.

One folder per site (a captcha source: the family's scope, one model per site) under the data
root, named after the site (a device code: letters, digits, '.' and '-', starting with a
letter or digit):

    {root}/{site}/labels.jsonl      one JSON object per line, one line per captcha
    {root}/{site}/images/*.png|jpg  the captcha images, of any size

A labels line, its keys exactly these (the two flags optional, false when absent):

    {"image": "images/00017.png", "gap_coords": [x, y], "slider_coords": [x, y],
     "has_rotation": false, "has_noise": true}

`image` is a path relative to the site folder; an absolute path, a '..' and a path that
resolves (through symlinks) outside the folder are refused. The coordinates are the centres
of the gap and of the slider piece, in the image's own pixels: x right, y down, floats
allowed, pixel (i, j) covering [i, i+1) x [j, j+1), so that the image spans [0, W] x [0, H].

The network's input is a (4, H, W) uint8 array of fixed size (params data.height, .width):

    channels 0-2  R, G, B: the image letterboxed into H x W: scaled by one factor (keeping
                  its aspect ratio, bilinear through Pillow) to fit inside, and placed at
                  the top-left corner; the rest, right and below, is padding of value 0
    channel 3     the padding mask: 255 where the pixel comes from the captcha, 0 where it
                  is padding, so that the network sees where the image ends

A captcha of exactly H x W has scale 1 and a mask of all 255. Any mode Pillow reads (L, P,
RGBA, CMYK, 16-bit...) becomes RGB; transparent pixels are composited onto black. The
labels' coordinates are given to training in input pixels (original * scale, Letterbox) and
predictions are mapped back with the sample's scale. EXIF orientation is not applied: the
labels name the pixels as stored.

Sites that cannot be read are skipped and reported by name (find_sites); so is each labels
line that cannot be used, in one line naming the file and the line (counted from 1). A site
with no usable captcha at all is a SiteError. Reading never writes under the root.

`write_labels` is the one writer of labels.jsonl (synth.py uses it): sorted keys, one object
a line, so that the same records give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from pipelines.errors import DataError
from pipelines.keypoint.errors import SampleError, SiteError
from registry.errors import InvalidNameError
from registry.naming import check_device_code

SUFFIXES = (".png", ".jpg", ".jpeg")
LABELS = "labels.jsonl"
IMAGES = "images"
_REQUIRED = ("image", "gap_coords", "slider_coords")
_FLAGS = ("has_rotation", "has_noise")
_KEYS = f"{', '.join(_REQUIRED)} ({' and '.join(_FLAGS)} optional)"
_FORMATS = ("PNG", "JPEG")  # the only decoders Pillow is allowed to try
_SIXTEEN_BIT = 257  # 65535 / 255: a 16-bit grey level to an 8-bit one


class Skipped(NamedTuple):
    """Something under the data root, or a labels line, that is not used, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Letterbox:
    """How an image of `width` x `height` pixels was put into the network's input: scaled by
    `scale` and placed at the top-left corner. Coordinates map by that one factor."""

    scale: float
    width: int
    height: int

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """The image's coordinates (any shape: (..., 2) or (N, 4)) in input pixels."""
        return np.multiply(xy, self.scale)

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        """Input-pixel coordinates (a prediction) back in the image's own pixels."""
        return np.divide(xy, self.scale)


@dataclass(frozen=True)
class Samples:
    """One site's captchas, in the labels file's order: `images` (N, 4, H, W) uint8 (RGB and
    the padding mask), `coords` (N, 4) float32 gap_x, gap_y, slider_x, slider_y in input
    pixels, `files` the labels' image strings, `scales` (N,) float32 (input / original)."""

    images: np.ndarray
    coords: np.ndarray
    files: tuple[str, ...]
    scales: np.ndarray
    has_rotation: np.ndarray
    has_noise: np.ndarray

    def __len__(self) -> int:
        return len(self.files)

    def take(self, indices: Iterable[int] | np.ndarray) -> Samples:
        """The samples at `indices` (a split's rows), in that order."""
        index = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices), np.intp)
        return Samples(
            self.images[index],
            self.coords[index],
            tuple(self.files[i] for i in index),
            self.scales[index],
            self.has_rotation[index],
            self.has_noise[index],
        )


class _Label(NamedTuple):
    image: str
    coords: tuple[float, float, float, float]  # gap x, y, slider x, y in the image's pixels
    has_rotation: bool
    has_noise: bool


class _Twice(ValueError):
    """A JSON object that names one key twice (json.loads would keep the last silently)."""


def find_sites(root: Path) -> tuple[dict[str, Path], list[Skipped]]:
    """Map each site under `root` to its folder; skip and report what is not one site's."""
    if not root.is_dir():
        raise DataError(
            f"data root {str(root)!r} does not exist or is not a folder: expected a folder "
            f"with one {{site}}/ folder per site, holding {LABELS} and {IMAGES}/"
        )
    sites = {}
    skipped = []
    for entry in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if not entry.is_dir():
            skipped.append(Skipped(entry, f"not a folder: expected {{site}}/{LABELS}"))
            continue
        try:
            site = check_device_code(entry.name, where="site name")
        except InvalidNameError as exc:
            skipped.append(Skipped(entry, str(exc)))
            continue
        if (entry / LABELS).is_file():
            sites[site] = entry
        else:
            skipped.append(
                Skipped(entry, f"no {LABELS}: expected one JSON object per captcha in it")
            )
    return sites, skipped


def letterbox(image: Image.Image, height: int, width: int) -> tuple[np.ndarray, Letterbox]:
    """An image of any mode and size as the (4, H, W) uint8 input, and its letterbox."""
    rgb = _rgb(image)
    w, h = rgb.size
    scale = min(height / h, width / w)
    # The content's size in input pixels, never above H x W; the source box is the part of
    # the image those pixels cover at exactly `scale`, so that a point x lands on x * scale
    # (Pillow maps a box onto the output's extent), not on x * (inner / w).
    inner_w = min(width, max(1, math.floor(w * scale + 1e-6)))
    inner_h = min(height, max(1, math.floor(h * scale + 1e-6)))
    array = np.zeros((4, height, width), dtype=np.uint8)
    if scale == 1:
        scaled = rgb  # the pixels as they are (inner_w, inner_h == w, h)
    else:
        box = (0.0, 0.0, min(w, inner_w / scale), min(h, inner_h / scale))
        scaled = rgb.resize((inner_w, inner_h), Image.Resampling.BILINEAR, box=box)
    array[:3, :inner_h, :inner_w] = np.asarray(scaled, dtype=np.uint8).transpose(2, 0, 1)
    array[3, :inner_h, :inner_w] = 255
    return array, Letterbox(scale, w, h)


def load_image(path: Path, height: int, width: int) -> tuple[np.ndarray, Letterbox]:
    """The image at `path` as the (4, H, W) uint8 input, and its letterbox."""
    try:
        with Image.open(path, formats=_FORMATS) as image:
            image.load()
            return letterbox(image, height, width)
    except Exception as exc:  # Pillow's decoders raise many types for a broken file
        reason = str(exc).replace(f" {str(path)!r}", "") or type(exc).__name__  # named once
        raise SampleError(path, f"not a readable PNG or JPEG image: {reason}") from exc


def read_site(folder: Path, height: int, width: int) -> tuple[Samples, list[Skipped]]:
    """One site's usable captchas, letterboxed into H x W, and the lines skipped, in order."""
    site = folder.name
    labels = folder / LABELS
    if not labels.is_file():
        raise SiteError(site, f"no {LABELS}: expected one JSON object per captcha", labels)
    try:
        lines = labels.read_bytes().split(b"\n")
    except OSError as exc:
        raise SiteError(site, f"cannot read ({exc.strerror or exc})", labels) from exc
    capacity = sum(1 for line in lines if line.strip())
    images = np.zeros((capacity, 4, height, width), dtype=np.uint8)
    coords, scales, files, flags = [], [], [], []
    skipped: list[Skipped] = []
    first: dict[Path, int] = {}  # each image's resolved path, and the line that labels it
    inside = folder.resolve()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue  # a blank line (the file's last newline) is no sample
        try:
            label = _parse(raw)
            path = _image_path(folder, inside, label.image)
            if path in first:
                raise ValueError(f"image {label.image!r} is labelled already on line {first[path]}")
            array, box = load_image(folder / label.image, height, width)
            _check_inside(label, box)
        except ValueError as exc:
            skipped.append(Skipped(labels, f"line {number}: {exc}"))
            continue
        except SampleError as exc:
            skipped.append(Skipped(exc.path, f"line {number}: {exc.reason}"))
            continue
        first[path] = number
        images[len(files)] = array
        coords.append(box.to_input(np.array(label.coords, dtype=np.float64)))
        scales.append(box.scale)
        files.append(label.image)
        flags.append((label.has_rotation, label.has_noise))
    if not files:
        if not skipped:
            raise SiteError(
                site, f"no captcha: expected one JSON object a line, e.g. {_example()}", labels
            )
        first_skip = skipped[0]
        raise SiteError(
            site,
            f"no usable captcha: {len(skipped)} line(s) skipped; the first: "
            f"{first_skip.path}: {first_skip.reason}",
            labels,
        )
    if len(files) < capacity:
        images = images[: len(files)].copy()  # a copy: the unused rows' memory is freed
    flag_array = np.array(flags, dtype=bool).reshape(-1, 2)
    samples = Samples(
        images=images,
        coords=np.array(coords, dtype=np.float32).reshape(-1, 4),
        files=tuple(files),
        scales=np.array(scales, dtype=np.float32),
        has_rotation=flag_array[:, 0].copy(),
        has_noise=flag_array[:, 1].copy(),
    )
    return samples, skipped


def digest(folder: Path) -> str:
    """The sha256 of a site's files (every regular, not hidden file under `folder`, by its
    relative path and bytes): a stage fingerprints its work by it, so that a changed label or
    image trains the site again and nothing else does."""
    total = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        hidden = any(part.startswith(".") for part in relative.parts)
        if hidden or path.is_symlink() or not path.is_file():
            continue
        total.update(relative.as_posix().encode() + b"\0")
        total.update(hashlib.sha256(path.read_bytes()).digest())
    return total.hexdigest()


def write_labels(folder: Path, records: list[dict[str, Any]]) -> None:
    """Write folder/labels.jsonl atomically: one record a line, sorted keys, '\\n' endings;
    no NaN or infinity (the reader refuses them)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(record, sort_keys=True, allow_nan=False) + "\n" for record in records)
    partial = folder / f".{LABELS}.partial"
    with open(partial, "w", encoding="utf-8", newline="\n") as out:
        out.write(text)
    os.replace(partial, folder / LABELS)  # a reader sees the old file or the whole new one


def _parse(raw: bytes) -> _Label:
    """One labels line's values, or ValueError saying what is wrong with it."""
    try:
        text = raw.decode("utf-8-sig")  # an editor may start the file with a BOM
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start + 1}): expected a JSON object") from None
    try:
        record = json.loads(text, object_pairs_hook=_no_twice)
    except _Twice:
        raise
    except json.JSONDecodeError as exc:  # its line is the string's: always 1, so not given
        raise ValueError(
            f"not JSON ({exc.msg}, column {exc.colno}): expected an object like {_example()}"
        ) from None
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc}): expected an object like {_example()}") from None
    if not isinstance(record, dict):
        raise ValueError(f"a JSON {type(record).__name__}: expected an object like {_example()}")
    if missing := [key for key in _REQUIRED if key not in record]:
        raise ValueError(f"missing key {_listed(missing)}: expected keys {_KEYS}")
    if extra := sorted(key for key in record if key not in _REQUIRED + _FLAGS):
        raise ValueError(f"unknown key {_listed(extra)}: expected keys {_KEYS}")
    image = record["image"]
    if not isinstance(image, str) or not image.strip():
        raise ValueError(f"image {image!r}: expected a path relative to the site folder")
    flags = []
    for key in _FLAGS:
        value = record.get(key, False)
        if not isinstance(value, bool):
            raise ValueError(f"{key} {json.dumps(value)}: expected true or false")
        flags.append(value)
    gap = _point(record, "gap_coords")
    slider = _point(record, "slider_coords")
    return _Label(image, (*gap, *slider), *flags)


def _no_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if twice := sorted({key for key in keys if keys.count(key) > 1}):
        raise _Twice(f"key {_listed(twice)} given twice: expected each key once")
    return dict(pairs)


def _point(record: dict[str, Any], key: str) -> tuple[float, float]:
    value = record[key]
    numbers = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )
    if not numbers or not all(math.isfinite(v) for v in value):
        raise ValueError(f"{key} {json.dumps(value)}: expected [x, y], two finite numbers")
    return float(value[0]), float(value[1])


def _image_path(folder: Path, inside: Path, image: str) -> Path:
    """The resolved path of a labels line's image, refused if it may leave the folder."""
    pure = PurePosixPath(image)
    if pure.is_absolute() or Path(image).is_absolute():
        raise ValueError(f"image {image!r} is an absolute path: expected one relative to {folder}")
    if ".." in pure.parts or ".." in Path(image).parts:
        raise ValueError(f"image {image!r} holds '..': expected a path inside {folder}")
    if pure.suffix.lower() not in SUFFIXES:
        raise ValueError(f"image {image!r}: expected a .png, .jpg or .jpeg file")
    resolved = (folder / image).resolve()
    if not resolved.is_relative_to(inside):
        raise ValueError(f"image {image!r} resolves outside the site folder (to {resolved})")
    if not resolved.exists():
        raise SampleError(folder / image, "no such image: expected the file the line names")
    if not resolved.is_file():
        raise SampleError(folder / image, "not a regular file: expected a PNG or JPEG image")
    return resolved


def _check_inside(label: _Label, box: Letterbox) -> None:
    for key, (x, y) in (("gap_coords", label.coords[:2]), ("slider_coords", label.coords[2:])):
        if not (0 <= x <= box.width and 0 <= y <= box.height):
            raise ValueError(
                f"{key} [{x:g}, {y:g}] is outside the image ({box.width} x {box.height}): "
                f"expected 0 <= x <= {box.width} and 0 <= y <= {box.height}"
            )


def _rgb(image: Image.Image) -> Image.Image:
    """Any mode as 8-bit RGB; transparent pixels onto black (the padding's value)."""
    if image.mode.startswith("I;16"):
        grey = np.asarray(image, dtype=np.float64) / _SIXTEEN_BIT  # 16-bit grey to 8-bit
        image = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8))
    elif image.mode in ("I", "F"):
        grey = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8))
    if "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        black = Image.new("RGB", rgba.size, (0, 0, 0))
        black.paste(rgba, mask=rgba.getchannel("A"))
        return black
    return image if image.mode == "RGB" else image.convert("RGB")


def _example() -> str:
    return '{"image": "images/00001.png", "gap_coords": [x, y], "slider_coords": [x, y]}'


def _listed(keys: list[str]) -> str:
    return ", ".join(repr(key) for key in keys)
