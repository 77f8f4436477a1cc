"""pipelines.acoustic.data: which files each device folder layout contributes, what is
skipped under the data root and why, and decoding (whole or in blocks)."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from pipelines.acoustic.data import (
    DeviceSources,
    Skipped,
    decode,
    discover,
    read_blocks,
)
from pipelines.errors import ClipError, DataError

RATE = 16000
EXTENSIONS = (".wav", ".flac")


def _touch(root: Path, *relative: str) -> list[Path]:
    paths = []
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")  # discover lists files; it never reads them
        paths.append(path)
    return paths


def _wav_bytes(y: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, y, rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


def _sine_noise(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 440 * t)
    columns = [mono + 0.01 * rng.standard_normal(len(t)) for _ in range(channels)]
    return np.stack(columns, axis=1) if channels > 1 else columns[0]


def test_every_layout(tmp_path: Path) -> None:
    dev = tmp_path / "LT-2"
    flat = _touch(dev, "a.wav", "b.flac")
    legacy = _touch(dev, "20261101/c.wav")
    dated = _touch(dev, "20261102/normal/d.wav", "20261102/normal/e.flac")
    verified = _touch(dev, "verified_normal/v1.wav", "verified_normal/v2.wav")
    normal = _touch(dev, "test/normal/n.wav")
    anomaly = _touch(dev, "test/anomaly/x.wav", "test/anomaly/y.wav")
    _touch(
        dev,
        "current/recording.wav",  # a recorder may still be writing here
        "archive/old.wav",  # not a date folder
        "2026110/short-date.wav",
        "202611011/long-date.wav",
        "20261102/other/f.wav",  # only normal/ inside a date folder
        "20261102/anomaly/g.wav",
        "test/h.wav",  # test clips need a label folder
        "verified_normal/nested/i.wav",
        "notes.txt",
        "20261101/readme.md",
    )
    found = discover(tmp_path, EXTENSIONS)
    assert list(found.devices) == ["LT-2"] and found.skipped == ()
    got = found.devices["LT-2"]
    assert got == DeviceSources(
        device="LT-2",
        recorded=tuple(sorted(flat + legacy + dated)),
        verified=tuple(verified),
        test_normal=tuple(normal),
        test_anomaly=tuple(anomaly),
    )
    assert got.all_files == got.recorded + got.verified + got.test_normal + got.test_anomaly


def test_devices_are_sorted_and_independent(tmp_path: Path) -> None:
    _touch(tmp_path, "PMP-3/p.wav", "FAN-7/verified_normal/f.wav")
    (tmp_path / "LT-2").mkdir()  # an empty device is still a device
    sources = discover(tmp_path, EXTENSIONS).devices
    assert list(sources) == ["FAN-7", "LT-2", "PMP-3"]
    assert sources["LT-2"].all_files == ()
    assert sources["FAN-7"].verified == (tmp_path / "FAN-7" / "verified_normal" / "f.wav",)
    assert sources["FAN-7"].recorded == ()
    assert sources["PMP-3"].recorded == (tmp_path / "PMP-3" / "p.wav",)


def test_hidden_folders_and_root_files_are_ignored(tmp_path: Path) -> None:
    _touch(tmp_path, "LT-2/a.wav", ".cache/x.wav", ".git/config", "README.md")
    found = discover(tmp_path, EXTENSIONS)
    assert list(found.devices) == ["LT-2"] and found.skipped == ()


def test_extension_filter_is_case_insensitive(tmp_path: Path) -> None:
    files = _touch(tmp_path, "LT-2/a.WAV", "LT-2/b.Flac", "LT-2/c.wav")
    _touch(tmp_path, "LT-2/d.mp3", "LT-2/e.wav.txt", "LT-2/wav")
    assert discover(tmp_path, EXTENSIONS).devices["LT-2"].recorded == tuple(sorted(files))
    only_wav = discover(tmp_path, (".wav",)).devices["LT-2"].recorded
    assert only_wav == (tmp_path / "LT-2" / "a.WAV", tmp_path / "LT-2" / "c.wav")


@pytest.mark.parametrize("name", ["bad_name", "a b", "-lead"])
def test_an_invalid_device_folder_is_skipped_with_its_reason(tmp_path: Path, name: str) -> None:
    _touch(tmp_path, "LT-2/a.wav", f"{name}/b.wav")
    found = discover(tmp_path, EXTENSIONS)
    assert list(found.devices) == ["LT-2"]
    [(path, reason)] = found.skipped
    assert path == tmp_path / name
    assert reason.startswith(f"device folder {name!r} is not a valid device code")


def test_a_missing_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as caught:
        discover(root, EXTENSIONS)
    assert "data.root" in str(caught.value)
    assert str(root) in str(caught.value)


def test_a_file_as_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "file"
    root.write_text("not a folder")
    with pytest.raises(DataError, match=r"data\.root"):
        discover(root, EXTENSIONS)


def _link(link: Path, target: str | Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


def _skipped(sources: DeviceSources, root: Path) -> dict[str, str]:
    return {path.relative_to(root).as_posix(): reason for path, reason in sources.skipped}


def test_a_dated_folder_linking_to_its_device_reads_each_clip_once(tmp_path: Path) -> None:
    clips = _touch(tmp_path, "LT-2/a.wav", "LT-2/b.wav")
    _link(tmp_path / "LT-2" / "20261101", ".")  # LT-2/20261101/a.wav is LT-2/a.wav
    _link(tmp_path / "LT-2" / "20261102", "..")  # the root: no clips, no device's folder
    got = discover(tmp_path, EXTENSIONS).devices["LT-2"]
    assert got.recorded == tuple(clips)
    assert _skipped(got, tmp_path) == {"LT-2/20261101": "same folder as LT-2"}


def test_a_clip_reachable_by_two_paths_is_listed_once(tmp_path: Path) -> None:
    [clip] = _touch(tmp_path, "LT-2/20261101/a.wav")
    os.link(clip, tmp_path / "LT-2" / "hard.wav")  # a hard link: no symlink to notice
    _link(tmp_path / "LT-2" / "20261102" / "normal" / "again.wav", clip)
    _link(tmp_path / "LT-2" / "verified_normal", "20261101")  # a folder seen already
    got = discover(tmp_path, EXTENSIONS).devices["LT-2"]
    assert got.all_files == (tmp_path / "LT-2" / "hard.wav",)  # the flat folder comes first
    assert _skipped(got, tmp_path) == {
        "LT-2/20261101/a.wav": "same file as LT-2/hard.wav",
        "LT-2/20261102/normal/again.wav": "same file as LT-2/hard.wav",
        "LT-2/verified_normal": "same folder as LT-2/20261101",
    }


def test_links_that_cannot_be_followed_are_skipped_with_their_reason(tmp_path: Path) -> None:
    [clip] = _touch(tmp_path, "LT-2/a.wav")
    dev = tmp_path / "LT-2"
    _link(dev / "loop.wav", "loop.wav")
    _link(dev / "ping.wav", "pong.wav"), _link(dev / "pong.wav", "ping.wav")
    _link(dev / "gone.flac", tmp_path / "nowhere.flac")
    _link(dev / "20261101", "20261101")  # a folder that is a loop
    _link(dev / "test" / "anomaly", "../../../unmounted")  # a dangling folder
    _link(tmp_path / "FAN-7", "/no/such/disk/FAN-7")  # a device on a disk not mounted
    found = discover(tmp_path, EXTENSIONS)
    assert list(found.devices) == ["LT-2"]
    got = found.devices["LT-2"]
    assert got.all_files == (clip,)
    loop, missing = "(Too many levels of symbolic links)", "(No such file or directory)"
    assert _skipped(got, tmp_path) == {
        "LT-2/20261101": f"link to 20261101 cannot be followed {loop}",
        "LT-2/gone.flac": f"link to {tmp_path / 'nowhere.flac'} cannot be followed {missing}",
        "LT-2/loop.wav": f"link to loop.wav cannot be followed {loop}",
        "LT-2/ping.wav": f"link to pong.wav cannot be followed {loop}",
        "LT-2/pong.wav": f"link to ping.wav cannot be followed {loop}",
        "LT-2/test/anomaly": f"link to ../../../unmounted cannot be followed {missing}",
    }
    assert found.skipped == (
        Skipped(tmp_path / "FAN-7", f"link to /no/such/disk/FAN-7 cannot be followed {missing}"),
    )


def test_entries_named_like_clips_that_are_not_files_are_skipped(tmp_path: Path) -> None:
    [clip] = _touch(tmp_path, "LT-2/a.wav")
    (tmp_path / "LT-2" / "folder.wav").mkdir()
    os.mkfifo(tmp_path / "LT-2" / "pipe.wav")  # reading it would wait for a writer forever
    got = discover(tmp_path, EXTENSIONS).devices["LT-2"]
    assert got.all_files == (clip,)
    assert _skipped(got, tmp_path) == {
        "LT-2/folder.wav": "not a regular file",
        "LT-2/pipe.wav": "not a regular file",
    }


def test_links_leaving_the_root_are_read(tmp_path: Path) -> None:
    outside = _touch(tmp_path / "disk", "LT-2/a.wav", "b.wav")
    root = tmp_path / "root"
    _link(root / "LT-2", outside[0].parent)  # a device folder on another disk
    _link(root / "FAN-7" / "b.wav", outside[1])
    sources = discover(root, EXTENSIONS).devices
    assert sources["LT-2"].recorded == (root / "LT-2" / "a.wav",)
    assert sources["FAN-7"].recorded == (root / "FAN-7" / "b.wav",)
    assert not sources["LT-2"].skipped and not sources["FAN-7"].skipped


def test_without_moves_files_to_skipped(tmp_path: Path) -> None:
    a, b, v = _touch(tmp_path, "LT-2/a.wav", "LT-2/b.wav", "LT-2/verified_normal/v.wav")
    got = discover(tmp_path, EXTENSIONS).devices["LT-2"]
    less = got.without([Skipped(b, "cannot read"), Skipped(v, "cannot read")])
    assert less.recorded == (a,) and less.verified == ()
    assert less.skipped == (Skipped(b, "cannot read"), Skipped(v, "cannot read"))


def _clip_error(data: bytes, path: Path) -> ClipError:
    with pytest.raises(ClipError) as caught:
        decode(data, path, RATE)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: ")
    return caught.value


def test_decode_empty_bytes(tmp_path: Path) -> None:
    assert _clip_error(b"", tmp_path / "empty.wav").reason == "empty file"


def test_decode_garbage(tmp_path: Path) -> None:
    error = _clip_error(b"RIFF not really a wave file at all" * 10, tmp_path / "junk.wav")
    assert error.reason.startswith("cannot decode audio")


def test_decode_a_header_without_samples(tmp_path: Path) -> None:
    data = _wav_bytes(np.zeros(0, dtype=np.float32), RATE)
    assert _clip_error(data, tmp_path / "hollow.wav").reason == "no audio samples"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_decode_non_finite_samples(tmp_path: Path, bad: float) -> None:
    y = _sine_noise(0.5, RATE).astype(np.float32)
    y[100] = bad
    data = _wav_bytes(y, RATE, subtype="FLOAT")
    assert _clip_error(data, tmp_path / "nan.wav").reason == "contains NaN or infinite samples"


def test_decode_silence(tmp_path: Path) -> None:
    data = _wav_bytes(np.zeros(RATE, dtype=np.float32), RATE)
    assert _clip_error(data, tmp_path / "quiet.wav").reason == "silent (peak below 1e-6)"


def test_decode_mono_at_the_target_rate_is_unchanged() -> None:
    y = _sine_noise(0.5, RATE).astype(np.float32)
    out = decode(_wav_bytes(y, RATE, subtype="FLOAT"), Path("x.wav"), RATE)
    assert out.dtype == np.float32
    assert out.ndim == 1
    assert out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, y)


def test_decode_stereo_44k1_is_downmixed_and_resampled() -> None:
    rate, seconds = 44100, 1.5
    y = _sine_noise(seconds, rate, channels=2, seed=3)
    y[:, 1] *= 0.5  # the channels differ: a downmix is their mean
    out = decode(_wav_bytes(y, rate, subtype="FLOAT"), Path("stereo.wav"), RATE)
    assert out.dtype == np.float32
    assert out.ndim == 1
    expected = len(y) * RATE / rate
    assert abs(len(out) - expected) <= 1
    # The 440 Hz tone survives at 0.75 of its amplitude (mean of 1 and 0.5).
    spectrum = np.abs(np.fft.rfft(out)) / (len(out) / 2)
    freqs = np.fft.rfftfreq(len(out), 1 / RATE)
    assert freqs[np.argmax(spectrum)] == pytest.approx(440.0, abs=1.0)
    assert spectrum.max() == pytest.approx(0.3 * 0.75, rel=0.05)


@pytest.mark.parametrize(
    ("rate", "seconds"), [(44100, 1.5), (32000, 2.0), (22050, 0.37), (8000, 1.0)]
)
def test_decode_resamples_as_librosa_does_by_default(rate: int, seconds: float) -> None:
    y = _sine_noise(seconds, rate, seed=5).astype(np.float32)
    expected = librosa.resample(y, orig_sr=rate, target_sr=RATE)
    got = decode(_wav_bytes(y, rate, subtype="FLOAT"), Path("x.wav"), RATE)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("rate", [48000, 16000])
def test_blocks_of_a_long_stereo_clip_are_its_whole_decoding(tmp_path: Path, rate: int) -> None:
    y = _sine_noise(7.3, rate, channels=2, seed=6)
    y[:, 1] *= 0.5
    path = tmp_path / "long.wav"
    sf.write(path, y, rate, subtype="FLOAT")
    samples, _ = sf.read(path, dtype="float32")
    whole = librosa.resample(samples.mean(axis=1), orig_sr=rate, target_sr=RATE)
    blocks = list(read_blocks(path, RATE, block=rate // 3))  # 22 blocks and a partial one
    assert len(blocks) >= 22
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    np.testing.assert_allclose(np.concatenate(blocks), whole, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(np.concatenate(blocks), decode(path.read_bytes(), path, RATE))


def test_reading_in_blocks_holds_a_few_blocks_not_the_clip(tmp_path: Path) -> None:
    rate, block = 48000, 1 << 15
    y = _sine_noise(64 * block / rate, rate, channels=2)
    path = tmp_path / "long.wav"
    sf.write(path, y, rate)
    tracemalloc.start()
    try:
        samples = sum(len(b) for b in read_blocks(path, RATE, block))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert samples == -(-len(y) * RATE // rate)
    one_block = block * 2 * 4  # float32 stereo
    assert peak < 4 * one_block < y.size * 4 / 8  # the whole clip as float32: 64 blocks


def test_a_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    path = tmp_path / "gone.wav"
    with pytest.raises(ClipError) as caught:
        next(read_blocks(path, RATE))
    assert caught.value.path == path
    assert caught.value.reason == "cannot read (No such file or directory)"


def test_decode_flac() -> None:
    y = _sine_noise(0.25, RATE)
    out = decode(_wav_bytes(y, RATE, fmt="FLAC"), Path("clip.flac"), RATE)
    assert len(out) == len(y)
    np.testing.assert_allclose(out, y, atol=1e-4)  # 16-bit quantisation
