"""pipelines.keypoint.data: which folders under the root are sites, reading a site's labelled
captchas letterboxed into the network's input, and the one line for every line skipped."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.errors import DataError
from pipelines.keypoint import synth
from pipelines.keypoint.data import (
    LABELS,
    Letterbox,
    Samples,
    Skipped,
    find_sites,
    letterbox,
    load_image,
    read_site,
    write_labels,
)
from pipelines.keypoint.errors import SampleError, SiteError

H, W = 64, 128  # the input size most tests read at


def _image(path: Path, size: tuple[int, int] = (W, H), colour=(200, 100, 50), mode="RGB") -> str:
    """An image file of `size` (width, height); its path relative to the site folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return f"{path.parent.name}/{path.name}"


def _line(image: str, gap=(90.0, 30.0), slider=(20.0, 40.0), **flags: bool) -> dict:
    return {"image": image, "gap_coords": list(gap), "slider_coords": list(slider), **flags}


def _write(folder: Path, lines: list[dict | str]) -> Path:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (folder / LABELS).write_text(text)
    return folder / LABELS


def _tree(folder: Path) -> str:
    """A hash of every path, kind and content under `folder`."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_symlink():
            digest.update(b"link:" + str(path.readlink()).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_find_sites_skips_and_reports_what_is_not_a_site(tmp_path: Path) -> None:
    for name in ("shop", "bank-2.eu", "_draft"):
        (tmp_path / name).mkdir()
        _write(tmp_path / name, [])
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / ".cache").mkdir()  # hidden: not read, not reported

    sites, skipped = find_sites(tmp_path)

    assert sites == {"bank-2.eu": tmp_path / "bank-2.eu", "shop": tmp_path / "shop"}
    assert all(isinstance(s, Skipped) for s in skipped)
    reasons = {s.path.name: s.reason for s in skipped}
    assert set(reasons) == {"_draft", "empty", "notes.txt"}
    assert "site name '_draft' is not a valid" in reasons["_draft"]
    assert "no labels.jsonl" in reasons["empty"]
    assert "not a folder" in reasons["notes.txt"]


def test_a_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data root '.*nowhere' does not exist.*labels.jsonl"):
        find_sites(tmp_path / "nowhere")


def test_a_generated_site_reads_back_at_another_size(tmp_path: Path) -> None:
    style = synth.SiteStyle(height=160, width=320)
    synth.generate_site(tmp_path, count=3, seed=0, style=style)
    records = [json.loads(line) for line in (tmp_path / LABELS).read_text().splitlines()]

    samples, skipped = read_site(tmp_path, 256, 512)

    assert skipped == [] and len(samples) == 3
    assert samples.files == tuple(r["image"] for r in records)
    assert samples.images.shape == (3, 4, 256, 512) and samples.images.dtype == np.uint8
    assert samples.coords.dtype == samples.scales.dtype == np.float32
    np.testing.assert_array_equal(samples.scales, np.float32(1.6))
    assert (samples.images[:, 3] == 255).all()  # the same aspect: it fills the input
    labelled = np.array([r["gap_coords"] + r["slider_coords"] for r in records])
    np.testing.assert_allclose(samples.coords, labelled * 1.6, rtol=1e-6)
    np.testing.assert_array_equal(samples.has_rotation, [r["has_rotation"] for r in records])
    np.testing.assert_array_equal(samples.has_noise, [r["has_noise"] for r in records])


def test_an_image_of_another_aspect_is_letterboxed_top_left(tmp_path: Path) -> None:
    # 300 x 100: the width limits the scale (512/300 < 256/100); 170 rows of image, then pad
    image = _image(tmp_path / "images" / "wide.png", size=(300, 100), colour=(10, 200, 30))
    _write(tmp_path, [_line(image, gap=(150.0, 50.0), slider=(300.0, 100.0))])

    samples, skipped = read_site(tmp_path, 256, 512)

    scale = 512 / 300
    assert skipped == []
    assert math.isclose(samples.scales[0], scale, rel_tol=1e-6)
    np.testing.assert_allclose(samples.coords[0], [256, 50 * scale, 512, 100 * scale], rtol=1e-6)
    mask = samples.images[0, 3]
    inner = math.floor(100 * scale)
    assert (mask[:inner] == 255).all() and (mask[inner:] == 0).all()
    assert (samples.images[0, :3, inner:] == 0).all()  # padding is 0
    np.testing.assert_array_equal(samples.images[0, :3, :inner, :].mean(axis=(1, 2)), [10, 200, 30])


def test_a_point_lands_on_its_coordinate_times_the_scale(tmp_path: Path) -> None:
    # a bright block centred on (11, 7) in a 50 x 30 image: its centroid in the input
    pixels = np.zeros((30, 50, 3), dtype=np.uint8)
    pixels[5:9, 9:13] = 255
    path = tmp_path / "dot.png"
    Image.fromarray(pixels).save(path)

    array, box = load_image(path, 256, 512)

    assert (box.width, box.height) == (50, 30) and math.isclose(box.scale, 256 / 30)
    weight = array[0].astype(float)
    rows, cols = np.indices(weight.shape)
    centroid = (
        ((cols + 0.5) * weight).sum() / weight.sum(),
        ((rows + 0.5) * weight).sum() / weight.sum(),
    )
    np.testing.assert_allclose(centroid, box.to_input(np.array([11.0, 7.0])), atol=0.05)
    inner = math.floor(50 * box.scale)  # 426 columns of image, the rest padding
    assert (array[3, :, :inner] == 255).all() and (array[3, :, inner:] == 0).all()


def test_letterbox_maps_coordinates_both_ways() -> None:
    box = Letterbox(scale=1.6, width=320, height=160)
    coords = np.array([[100.0, 50.0, 20.0, 40.0], [320.0, 160.0, 0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(box.to_input(coords), coords * 1.6)
    assert box.to_input(coords).dtype == np.float32
    np.testing.assert_allclose(box.to_original(box.to_input(coords)), coords, rtol=1e-6)
    points = np.ones((2, 3, 2))
    assert box.to_original(points).shape == (2, 3, 2)


def test_every_bad_line_is_skipped_and_reported(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    site = tmp_path / "shop"
    good = _image(site / "images" / "good.png")
    other = _image(site / "images" / "other.png")
    (site / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (site / "images" / "notes.txt").write_text("")
    _image(outside / "secret.png")
    (site / "images" / "link.png").symlink_to(outside / "secret.png")
    lines: list[dict | str] = [
        _line(good, has_rotation=True),  # 1
        "{not json",  # 2
        {"image": good, "gap_coords": [1, 2]},  # 3
        {**_line(good), "extra": 1},  # 4
        _line(other, gap=(W + 1, 10)),  # 5
        _line("images/../images/good.png"),  # 6
        _line(str(site / "images" / "good.png")),  # 7
        _line("images/link.png"),  # 8
        _line("images/broken.png"),  # 9
        _line("images/missing.png"),  # 10
        _line(good),  # 11: labelled already
        '{"image": "images/other.png", "gap_coords": [NaN, 1], "slider_coords": [1, 1]}',  # 12
        _line(other, slider=(True, 1)),  # 13
        "",  # blank: no sample, not reported
        [1, 2],  # 15
        _line(other, has_noise="yes"),  # 16
        _line("images/notes.txt"),  # 17
        '{"image": "images/other.png", "image": "images/good.png", "gap_coords": [1, 1], '
        '"slider_coords": [1, 1]}',  # 18
        _line(other, has_noise=True),  # 19
    ]
    labels = site / LABELS
    labels.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )
    before = _tree(tmp_path)

    samples, skipped = read_site(site, H, W)

    assert _tree(tmp_path) == before  # reading writes nothing, anywhere
    assert samples.files == (good, other)
    np.testing.assert_array_equal(samples.has_rotation, [True, False])
    np.testing.assert_array_equal(samples.has_noise, [False, True])
    images = site / "images"
    expected = {
        2: (labels, "not JSON (Expecting property name enclosed in double quotes, column 2)"),
        3: (labels, "missing key 'slider_coords'"),
        4: (labels, "unknown key 'extra'"),
        5: (labels, f"gap_coords [{W + 1}, 10] is outside the image (128 x 64)"),
        6: (labels, "holds '..'"),
        7: (labels, "is an absolute path"),
        8: (labels, "resolves outside the site folder"),
        9: (images / "broken.png", "not a readable PNG or JPEG image"),
        10: (images / "missing.png", "no such image"),
        11: (labels, "labelled already on line 1"),
        12: (labels, "gap_coords [NaN, 1]: expected [x, y], two finite numbers"),
        13: (labels, "slider_coords [true, 1]: expected [x, y]"),
        15: (labels, "a JSON list: expected an object"),
        16: (labels, 'has_noise "yes": expected true or false'),
        17: (labels, "expected a .png, .jpg or .jpeg file"),
        18: (labels, "key 'image' given twice"),
    }
    assert [int(s.reason.split(":")[0].removeprefix("line ")) for s in skipped] == list(expected)
    for entry, (number, (path, words)) in zip(skipped, expected.items(), strict=True):
        assert entry.path == path, entry
        assert entry.reason.startswith(f"line {number}: ") and words in entry.reason, entry
        assert "\n" not in entry.reason


def test_a_symlink_inside_the_site_is_followed(tmp_path: Path) -> None:
    good = _image(tmp_path / "images" / "good.png")
    (tmp_path / "images" / "alias.png").symlink_to(tmp_path / good)
    _write(tmp_path, [_line("images/alias.png")])
    samples, skipped = read_site(tmp_path, H, W)
    assert skipped == [] and samples.files == ("images/alias.png",)


def test_a_site_with_no_usable_captcha_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SiteError, match=r"no labels\.jsonl") as caught:
        read_site(tmp_path, H, W)
    assert caught.value.site == tmp_path.name
    _write(tmp_path, [_line("images/missing.png"), "{"])
    with pytest.raises(SiteError, match=r"no usable captcha: 2 line\(s\) skipped.*line 1: no such"):
        read_site(tmp_path, H, W)
    _write(tmp_path, [])
    with pytest.raises(SiteError, match="no captcha: expected one JSON object a line"):
        read_site(tmp_path, H, W)


@pytest.mark.parametrize(
    ("mode", "colour", "rgb"),
    [
        ("L", 100, (100, 100, 100)),
        ("RGBA", (200, 100, 50, 255), (200, 100, 50)),
        ("RGBA", (200, 100, 50, 0), (0, 0, 0)),  # transparent: onto black
        ("LA", (80, 255), (80, 80, 80)),
        ("1", 1, (255, 255, 255)),
        ("I;16", 65535, (255, 255, 255)),
        ("P", 3, None),  # a palette's colour, whichever
    ],
)
def test_any_image_mode_becomes_rgb(tmp_path: Path, mode: str, colour, rgb) -> None:
    path = tmp_path / "images" / "x.png"
    _image(path, size=(W, H), colour=colour, mode=mode)
    array, box = load_image(path, H, W)
    assert array.shape == (4, H, W) and array.dtype == np.uint8 and box.scale == 1
    assert (array[3] == 255).all()
    with Image.open(path) as image:
        expected = rgb if rgb is not None else image.convert("RGB").getpixel((0, 0))
    assert tuple(array[:3, 0, 0]) == tuple(expected)


def test_a_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    Image.new("CMYK", (W, H), (0, 0, 0, 0)).save(path, format="JPEG", quality=95)
    array, _ = load_image(path, H, W)
    assert (np.abs(array[:3].astype(int) - 255) <= 2).all()  # no ink: white


def test_an_unreadable_image_is_a_sample_error(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(b"GIF89a not a png")
    with pytest.raises(SampleError) as caught:
        load_image(path, H, W)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: not a readable PNG or JPEG image: ")


def test_samples_take_keeps_the_rows_together(tmp_path: Path) -> None:
    synth.generate_site(tmp_path, count=4, seed=1, style=synth.SiteStyle(height=H, width=W))
    samples, _ = read_site(tmp_path, H, W)
    part = samples.take([3, 1])
    assert isinstance(part, Samples) and len(part) == 2
    assert part.files == (samples.files[3], samples.files[1])
    np.testing.assert_array_equal(part.images, samples.images[[3, 1]])
    np.testing.assert_array_equal(part.coords, samples.coords[[3, 1]])


def test_write_labels_writes_sorted_keys_one_line_each(tmp_path: Path) -> None:
    write_labels(tmp_path, [{"image": "a.png", "gap_coords": [1, 2]}, {"b": 1, "a": True}])
    data = (tmp_path / LABELS).read_bytes()
    assert data == b'{"gap_coords": [1, 2], "image": "a.png"}\n{"a": true, "b": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == [LABELS]  # no partial file left
    with pytest.raises(ValueError):
        write_labels(tmp_path, [{"gap_coords": [math.nan, 1]}])


def test_letterbox_of_an_image_in_memory() -> None:
    array, box = letterbox(Image.new("RGB", (32, 64), (1, 2, 3)), H, W)
    assert box == Letterbox(scale=1.0, width=32, height=64)
    assert (array[3, :, :32] == 255).all() and (array[3, :, 32:] == 0).all()
