"""pipelines.keypoint.synth: the demo sites' slider captchas, in the family's layout and readable
by read_site, reproducible to the byte, and labelled exactly where the gap and piece are drawn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_erosion

from pipelines.keypoint import synth
from pipelines.keypoint.data import read_site

SMALL = synth.SiteStyle(height=64, width=128)
QUIET = synth.SiteStyle(height=128, width=256, noise=0.0, distractor=0.0, rotation=0.5)
SQUARE = np.ones((3, 3), dtype=bool)  # erosion by one pixel in every direction, diagonals too


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _box_centre(mask: np.ndarray) -> tuple[float, float]:
    """The centre of a coverage mask's bounding box, to a fraction of a pixel: an edge
    pixel's coverage says how far into it the shape reaches."""
    centre = []
    for axis in (0, 1):  # x: the most covered pixel of each column; y: of each row
        profile = mask.max(axis=axis)
        first, last = np.nonzero(profile)[0][[0, -1]]
        low, high = first + 1 - profile[first], last + profile[last]
        centre.append(float(low + high) / 2)
    return centre[0], centre[1]


def test_a_site_is_written_in_the_familys_layout(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    synth.generate_site(tmp_path, count=5, seed=0, style=SMALL)
    assert sorted(_files(tmp_path)) == [
        *(f"images/0000{i}.png" for i in range(5)),
        "labels.jsonl",
        "notes.txt",
    ]
    assert (tmp_path / "notes.txt").read_text() == "mine"  # not its file: left alone
    lines = (tmp_path / "labels.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["image"] for r in records] == [f"images/0000{i}.png" for i in range(5)]
    assert all(list(r) == sorted(r) for r in map(json.loads, lines))
    assert {tuple(sorted(r)) for r in records} == {
        ("gap_coords", "has_noise", "has_rotation", "image", "slider_coords")
    }
    with Image.open(tmp_path / "images/00000.png") as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (128, 64))

    samples, skipped = read_site(tmp_path, 64, 128)
    assert skipped == [] and len(samples) == 5
    assert (samples.scales == 1).all() and (samples.images[:, 3] == 255).all()
    expected = [r["gap_coords"] + r["slider_coords"] for r in records]
    np.testing.assert_array_equal(samples.coords, np.array(expected, dtype=np.float32))
    with Image.open(tmp_path / "images/00003.png") as image:
        np.testing.assert_array_equal(samples.images[3, :3].transpose(1, 2, 0), np.asarray(image))


def test_the_same_arguments_give_the_same_bytes(tmp_path: Path) -> None:
    synth.generate_site(tmp_path / "a", count=4, seed=7, style=SMALL)
    synth.generate_site(tmp_path / "b", count=4, seed=7, style=SMALL)
    synth.generate_site(tmp_path / "c", count=4, seed=8, style=SMALL)
    synth.generate_site(tmp_path / "d", count=2, seed=7, style=SMALL)
    first, again, other = (_files(tmp_path / name) for name in "abc")
    assert first == again
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first if name != "images")
    fewer = _files(tmp_path / "d")  # captcha i is its own stream: the count changes nothing
    assert all(fewer[name] == first[name] for name in fewer if name.endswith(".png"))


def test_the_labels_are_the_centres_of_the_drawn_shapes() -> None:
    for index in range(40):
        captcha = synth.render(index, 3, QUIET)
        for mask, key in ((captcha.gap_mask, "gap_coords"), (captcha.piece_mask, "slider_coords")):
            np.testing.assert_allclose(_box_centre(mask), captcha.record[key], atol=0.1)
            rows, cols = np.nonzero(mask)  # the whole shape inside the image
            assert rows.min() > 0 and cols.min() > 0
            assert rows.max() < QUIET.height - 1 and cols.max() < QUIET.width - 1
        gap_x, gap_y = captcha.record["gap_coords"]
        slider_x, slider_y = captcha.record["slider_coords"]
        assert 0.3 * QUIET.width <= gap_x <= QUIET.width and 0 <= gap_y <= QUIET.height
        assert 0 <= slider_x <= 0.15 * QUIET.width and 0 <= slider_y <= QUIET.height
        gap_cols = np.nonzero(captcha.gap_mask.max(axis=0))[0]
        piece_cols = np.nonzero(captcha.piece_mask.max(axis=0))[0]
        assert piece_cols.max() < gap_cols.min()  # the piece is left of the gap, apart


def test_the_gap_is_drawn_under_its_mask_and_the_piece_is_its_content() -> None:
    for index in range(20):
        captcha = synth.render(index, 5, QUIET)
        image, clean = captcha.image.astype(float), captcha.clean.astype(float)
        gap = binary_erosion(captcha.gap_mask == 1, SQUARE, iterations=4)  # well inside the edge
        if captcha.gap_style == "shadow":
            assert image[gap].mean() < 0.8 * clean[gap].mean() + 1
        else:
            edge = (captcha.gap_mask > 0) & (captcha.gap_mask < 1)
            assert np.abs(image[edge] - clean[edge]).mean() > 20
        # the piece shows the background under the gap, moved by whole pixels
        (gap_x, gap_y), (slider_x, slider_y) = (
            captcha.record["gap_coords"],
            captcha.record["slider_coords"],
        )
        rows, cols = np.nonzero(binary_erosion(captcha.piece_mask == 1, SQUARE, iterations=4))
        moved = clean[rows + round(gap_y - slider_y), cols + round(gap_x - slider_x)]
        np.testing.assert_allclose(image[rows, cols], moved, atol=1)


def test_flags_are_recorded_and_drawn() -> None:
    def records(**style: object) -> list[dict]:
        chosen = synth.SiteStyle(height=64, width=128, **style)
        return [synth.render(i, 0, chosen).record for i in range(12)]

    assert all(r["has_rotation"] and not r["has_noise"] for r in records(rotation=1, noise=0))
    assert all(r["has_noise"] and not r["has_rotation"] for r in records(rotation=0, noise=1))
    mixed = records(rotation=0.5, noise=0.5)
    assert {r["has_rotation"] for r in mixed} == {r["has_noise"] for r in mixed} == {True, False}
    # noise is in the pixels: the same captcha without it differs, and only by noise
    style = synth.SiteStyle(height=64, width=128, noise=1.0)
    noisy = synth.render(1, 0, style).image.astype(float)
    clean = synth.render(1, 0, synth.SiteStyle(height=64, width=128, noise=0.0)).image
    difference = noisy - clean
    assert 2 < difference.std() < 15


def test_mixed_draws_both_gap_styles_and_both_backgrounds() -> None:
    drawn = [synth.render(i, 0, SMALL) for i in range(24)]
    assert {c.gap_style for c in drawn} == {"shadow", "outline"}
    assert {c.photo for c in drawn} == {True, False}
    only = synth.SiteStyle(height=64, width=128, gap="outline", photos=0.0)
    drawn = [synth.render(i, 0, only) for i in range(8)]
    assert {c.gap_style for c in drawn} == {"outline"} and not any(c.photo for c in drawn)
    photos = synth.SiteStyle(height=64, width=128, photos=1.0)
    assert all(synth.render(i, 0, photos).photo for i in range(4))


def test_textures_and_photos_vary() -> None:
    textures = synth.SiteStyle(height=64, width=128, photos=0.0)
    backgrounds = [synth.render(i, 0, textures).clean.astype(float) for i in range(8)]
    means = [b.mean(axis=(0, 1)) for b in backgrounds]
    assert min(float(b.std()) for b in backgrounds) > 3  # never a flat fill
    assert np.ptp(np.array(means), axis=0).max() > 40  # different colours


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"height": 16}, "expected 32 or more"),
        ({"gap": "dotted"}, "expected shadow, outline or mixed"),
        ({"piece": (0.3, 0.2)}, "expected 0 < low <= high"),
        ({"piece": (0.2, 0.6)}, "does not fit"),
        ({"noise": 1.5}, "noise 1.5: expected a probability"),
        ({"photos": -0.1}, "photos -0.1: expected a probability"),
    ],
)
def test_a_style_that_cannot_be_drawn_is_refused(change: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        synth.SiteStyle(**change)


def test_count_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="count 0"):
        synth.generate_site(tmp_path, count=0, seed=0)
    assert list(tmp_path.iterdir()) == []
