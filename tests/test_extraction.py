"""The extract stage's library: one array per device, the split, the scale, the fingerprints."""

from __future__ import annotations

import logging
import tracemalloc
from datetime import date
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import pytest
import soundfile as sf

from pipelines import fleet
from pipelines.acoustic import data, extraction, features
from pipelines.acoustic.synth import generate_fleet
from pipelines.params import SplitParams, parse_params
from tests.pipeline_repo import TINY, merge

PARAMS = parse_params(TINY)
RATE = PARAMS.data.sample_rate
DEFAULT = parse_params({})  # what a fleet extracts with when params.yaml says nothing
# A regular file that every read fails on (EIO), even for root, who may read a mode-000 file.
UNREADABLE = Path("/proc/self/mem")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    generate_fleet(tmp_path / "data", PARAMS.generate, PARAMS.data.sample_rate)
    return tmp_path / "data"


def extract(root: Path, out: Path, params=PARAMS) -> dict[str, fleet.Outcome]:
    return fleet.run_stage(out, extraction.plan(root, params), extraction.build, 1, "extract")


def test_one_array_per_device_with_its_index(root: Path, tmp_path: Path) -> None:
    outcomes = extract(root, tmp_path / "features")
    assert {d: o.status for d, o in outcomes.items()} == {"A-1": "built", "B-2": "built"}
    train, test, index = extraction.load_device(tmp_path / "features" / "A-1")
    f = PARAMS.features
    assert train.shape[1:] == test.shape[1:] == (f.n_mels, f.frames)
    assert train.dtype == np.float32
    assert len(index["train_clip_of_window"]) == len(index["validation"]) == len(train)
    assert len(index["test_clip_of_window"]) == len(test)
    roles = {c["role"] for c in index["train_clips"]}
    assert roles == {"recorded", "verified"}
    assert {c["role"] for c in index["test_clips"]} == {"normal", "anomaly"}
    assert all(len(c["sha256"]) == 64 for c in index["train_clips"] + index["test_clips"])
    per_clip = len(features.window_starts(6 * RATE, *features.window_samples(f, RATE)))
    assert len(train) == 5 * per_clip == outcomes["A-1"].summary["windows"]  # 5 clips of 6 s


def test_windows_are_kept_in_decibels_without_a_scale(root: Path, tmp_path: Path) -> None:
    """The scale is a model's: the features hold what the audio measured."""
    extract(root, tmp_path / "features")
    train, test, index = extraction.load_device(tmp_path / "features" / "A-1")
    f = PARAMS.features
    for windows in (train, test):
        audio = windows[:, :, : features.audio_frames(f, RATE)]
        lowest, peak = audio.min(axis=(1, 2)), audio.max(axis=(1, 2))
        assert (lowest >= peak - f.top_db - 1e-3).all()  # each window floored at top_db
        assert float(windows.max() - windows.min()) > 1  # decibels, not a 0..1 scale
    assert "scale" not in index
    assert not (tmp_path / "features" / "A-1" / "scale.npy").exists()


def test_default_params_keep_each_windows_absolute_level(tmp_path: Path) -> None:
    """A clip 20 dB louder than another (the same noise, x10) gives windows 20 dB higher."""
    rate = DEFAULT.data.sample_rate
    y = 0.03 * np.random.default_rng(5).standard_normal(18 * rate)
    device = tmp_path / "data" / "L-1"
    for folder, gain in (("20261101", 1.0), ("verified_normal", 10.0)):
        (device / folder).mkdir(parents=True)
        sf.write(device / folder / "clip.wav", gain * y, rate, subtype="FLOAT")
    assert extract(tmp_path / "data", tmp_path / "features", DEFAULT)["L-1"].status == "built"
    train, _, index = extraction.load_device(tmp_path / "features" / "L-1")
    assert [c["role"] for c in index["train_clips"]] == ["recorded", "verified"]
    clip_of = np.asarray(index["train_clip_of_window"])
    audio = train[:, :, : features.audio_frames(DEFAULT.features, rate)]
    quiet, loud = audio[clip_of == 0], audio[clip_of == 1]
    assert len(quiet) == len(loud) == 3
    np.testing.assert_allclose(loud - quiet, 20.0, atol=0.01)


def test_each_clip_is_decoded_once_per_extraction(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted at soundfile: every file whose samples are read (a header read for its
    sample rate and channels is no decoding)."""
    read: dict[int, sf.SoundFile] = {}

    class Counted(sf.SoundFile):
        def read(self, *args: Any, **kwargs: Any) -> Any:
            read.setdefault(id(self), self)
            return super().read(*args, **kwargs)

    monkeypatch.setattr(sf, "SoundFile", Counted)
    jobs = extraction.plan(root, PARAMS)
    outcomes = fleet.run_stage(tmp_path / "features", jobs, extraction.build, 1, "extract")
    assert {o.status for o in outcomes.values()} == {"built"}
    clips = sorted(str(path) for job in jobs for path in job.inputs.sources.all_files)
    assert len(clips) == 2 * (2 * 2 + 1 + 3 + 3)  # each device's days, verified and test clips
    assert sorted(f.name for f in read.values()) == clips


def test_an_override_of_a_device_not_in_the_fleet_is_named_and_the_fleet_goes_on(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overrides = {"devices": {"A-1": {"epochs": 2}, "C-3": {"epochs": 2}}}
    with caplog.at_level(logging.WARNING):
        jobs = extraction.plan(root, parse_params(merge(TINY, overrides)))
    assert [job.device for job in jobs] == ["A-1", "B-2"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"params.yaml: devices: C-3 is not a device of the fleet (no folder C-3 under {root}); "
        "its overrides are not used"
    ]


def test_unchanged_devices_are_skipped_and_a_changed_clip_rebuilds_its_device(
    root: Path, tmp_path: Path
) -> None:
    extract(root, tmp_path / "features")
    assert {o.status for o in extract(root, tmp_path / "features").values()} == {"unchanged"}
    clip = next((root / "B-2" / "verified_normal").iterdir())
    y, rate = sf.read(clip)
    sf.write(clip, y * 0.5, rate)
    outcomes = extract(root, tmp_path / "features")
    assert outcomes["A-1"].status == "unchanged" and outcomes["B-2"].status == "built"


def test_a_param_change_rebuilds_every_device(root: Path, tmp_path: Path) -> None:
    extract(root, tmp_path / "features")
    changed = parse_params(merge(TINY, {"features": {"top_db": 60.0}}))
    assert {o.status for o in extract(root, tmp_path / "features", changed).values()} == {"built"}


def test_quality_filter_drops_a_loud_recorded_clip_but_never_a_verified_one(
    root: Path, tmp_path: Path
) -> None:
    dated = root / "A-1" / "20261103"
    dated.mkdir()
    rate = PARAMS.data.sample_rate
    rng = np.random.default_rng(0)
    for i in range(10):  # normal days vary in level, as the generated ones do
        level = 0.02 + 0.004 * i
        sf.write(dated / f"quiet_{i}.wav", level * rng.standard_normal(6 * rate), rate)
    sf.write(dated / "loud.wav", 0.8 * rng.standard_normal(6 * rate).clip(-1, 1), rate)
    sf.write(
        root / "A-1" / "verified_normal" / "loud.wav",
        0.8 * rng.standard_normal(6 * rate).clip(-1, 1),
        rate,
    )
    outcomes = extract(root, tmp_path / "features")
    assert outcomes["A-1"].summary["quality_filtered"] == ["A-1/20261103/loud.wav"]
    _, _, index = extraction.load_device(tmp_path / "features" / "A-1")
    assert "A-1/verified_normal/loud.wav" in {c["file"] for c in index["train_clips"]}


def test_validation_is_drawn_by_whole_clips() -> None:
    clip_of_window = np.repeat(np.arange(10), 5)
    mask = extraction.validation_mask(clip_of_window, SplitParams(val_fraction=0.2, min_windows=20))
    assert mask.sum() == 10
    for clip in range(10):
        assert len(set(mask[clip_of_window == clip])) == 1  # a clip is all in or all out


def test_validation_needs_enough_windows_and_keeps_a_training_clip() -> None:
    p = SplitParams(val_fraction=0.5, min_windows=20)
    assert not extraction.validation_mask(np.zeros(19, int), p).any()
    one_clip = extraction.validation_mask(np.zeros(40, int), p)
    assert one_clip.sum() == 20  # a single long clip is split by window
    two = extraction.validation_mask(np.repeat([0, 1], [30, 10]), SplitParams(val_fraction=0.9))
    assert 0 < two.sum() < 40


def test_validation_split_is_seeded() -> None:
    clips = np.repeat(np.arange(20), 3)
    a = extraction.validation_mask(clips, SplitParams(seed=1))
    assert np.array_equal(a, extraction.validation_mask(clips, SplitParams(seed=1)))
    assert not np.array_equal(a, extraction.validation_mask(clips, SplitParams(seed=2)))


def test_features_match_the_definition_end_to_end(root: Path, tmp_path: Path) -> None:
    extract(root, tmp_path / "features")
    train, _, index = extraction.load_device(tmp_path / "features" / "A-1")
    first = index["train_clips"][0]
    y, rate = sf.read(root / first["file"], dtype="float32")
    expected = features.reference_log_mel_windows(y, rate, PARAMS.features)
    got = train[np.asarray(index["train_clip_of_window"]) == 0]
    assert np.abs(got - expected).max() < 1e-3  # dB


def test_clips_read_on_threads_come_back_in_order_with_the_unusable_ones_skipped(
    root: Path,
) -> None:
    job = next(j for j in extraction.plan(root, PARAMS) if j.device == "A-1")
    broken = root / "A-1" / "broken.wav"
    broken.write_bytes(b"RIFF not audio")
    files = [(path, "recorded") for path in job.inputs.sources.all_files]
    files.insert(1, (broken, "recorded"))
    one = extraction.read_clips(files, job.inputs, threads=1)
    two = extraction.read_clips(files, job.inputs, threads=2)
    assert (
        [c.file for c in two[0]]
        == [c.file for c in one[0]]
        == [f"A-1/{p.relative_to(root / 'A-1').as_posix()}" for p, _ in files if p != broken]
    )
    for a, b in zip(one[0], two[0], strict=True):
        assert np.array_equal(a.windows, b.windows) and a.rms == b.rms
    reason = "cannot decode audio (Format not recognised.)"
    assert two[1] == one[1] == [{"file": "A-1/broken.wav", "reason": reason}]


def _summary(outcomes: dict[str, fleet.Outcome], device: str) -> dict:
    assert outcomes[device].status == "built", outcomes[device].error
    return outcomes[device].summary


@pytest.mark.skipif(not UNREADABLE.is_file(), reason="needs Linux's /proc/self/mem")
def test_an_unreadable_clip_is_skipped_and_the_fleet_goes_on(root: Path, tmp_path: Path) -> None:
    (root / "A-1" / "20261101" / "eio.wav").symlink_to(UNREADABLE)
    outcomes = extract(root, tmp_path / "features")
    skipped = _summary(outcomes, "A-1")["skipped"]
    assert skipped == [
        {"file": "A-1/20261101/eio.wav", "reason": "cannot read (Input/output error)"}
    ]
    assert _summary(outcomes, "B-2")["skipped"] == []
    _, _, index = extraction.load_device(tmp_path / "features" / "A-1")
    assert index["skipped"] == skipped


def test_odd_entries_are_reported_and_each_clip_is_read_once(root: Path, tmp_path: Path) -> None:
    before = _summary(extract(root, tmp_path / "before"), "A-1")
    device = root / "A-1"
    (device / "20261101" / "normal").symlink_to("..")  # the device folder, again
    (device / "20261109").symlink_to("20261102")  # and those of 20261102/normal
    (device / "gone.wav").symlink_to("nowhere.wav")
    (device / "loop.wav").symlink_to("loop.wav")
    got = _summary(extract(root, tmp_path / "features"), "A-1")
    assert got["windows"] == before["windows"] and got["train_clips"] == before["train_clips"]
    assert {s["file"]: s["reason"] for s in got["skipped"]} == {
        "A-1/20261101/normal": "same folder as A-1",
        "A-1/20261109": "same folder as A-1/20261102",
        "A-1/20261109/normal": "same folder as A-1/20261102/normal",
        "A-1/gone.wav": "link to nowhere.wav cannot be followed (No such file or directory)",
        "A-1/loop.wav": "link to loop.wav cannot be followed (Too many levels of symbolic links)",
    }
    (device / "loop.wav").unlink()  # what is skipped is part of the fingerprint
    outcomes = extract(root, tmp_path / "features")
    assert outcomes["A-1"].status == "built" and outcomes["B-2"].status == "unchanged"


@pytest.mark.parametrize("rate", [48000, 16000])
def test_a_long_stereo_clip_is_read_in_blocks_with_the_whole_clips_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rate: int
) -> None:
    block = 1 << 14
    rng = np.random.default_rng(rate)
    y = 0.1 * rng.standard_normal((200 * block, 2)).astype(np.float32)  # 200 blocks, 26 MB
    path = tmp_path / "data" / "L-1" / "long.wav"
    path.parent.mkdir(parents=True)
    sf.write(path, y, rate, subtype="FLOAT")
    monkeypatch.setattr(data, "BLOCK", block)
    job = extraction.plan(tmp_path / "data", PARAMS)[0]
    tracemalloc.start()
    try:
        [clip], skipped = extraction.read_clips([(path, "recorded")], job.inputs, threads=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert skipped == []
    whole = librosa.resample(y.mean(axis=1), orig_sr=rate, target_sr=RATE)
    expected = features.log_mel_windows(whole, RATE, PARAMS.features)
    assert clip.windows.shape == expected.shape
    assert float(np.abs(clip.windows - expected).max()) < 1e-4  # dB
    assert clip.rms == pytest.approx(features.probe_rms(whole, RATE, PARAMS.quality), rel=1e-6)
    # A few blocks, the FFT's working arrays (4 MB) and the windows: not the clip.
    assert peak < y.nbytes / 4


# ------------------------------------------------------------------ the day's data
def _roles(index: dict) -> list[tuple[str, str]]:
    return [(c["role"], Path(c["file"]).parts[1]) for c in index["train_clips"]]


def test_a_day_trains_on_its_own_folder_and_verified_normal(root: Path, tmp_path: Path) -> None:
    params = parse_params(merge(TINY, {"data": {"day": "20261102"}}))
    outcomes = extract(root, tmp_path / "features", params)
    assert outcomes["A-1"].summary["day"] == "20261102"
    _, _, index = extraction.load_device(tmp_path / "features" / "A-1")
    assert index["day"] == "20261102"
    assert _roles(index) == [("recorded", "20261102")] * 2 + [("verified", "verified_normal")]
    assert {c["role"] for c in index["test_clips"]} == {"normal", "anomaly"}


def test_days_ago_counts_back_from_today() -> None:
    today = date(2026, 11, 3)
    assert data.resolve_day("1 days ago", today) == "20261102"
    assert data.resolve_day("0 day ago", today) == "20261103"
    assert data.resolve_day("20261101", today) == "20261101"
    assert data.resolve_day("all", today) is None


def test_a_day_without_clips_is_skipped_with_its_reason(root: Path, tmp_path: Path) -> None:
    params = parse_params(merge(TINY, {"data": {"day": "20261105"}}))
    outcomes = extract(root, tmp_path / "features", params)
    assert {o.status for o in outcomes.values()} == {"skipped"}
    assert outcomes["A-1"].error == "no clips recorded on 20261105"


def test_fewer_usable_clips_than_the_minimum_skip_the_device(root: Path, tmp_path: Path) -> None:
    params = parse_params(merge(TINY, {"data": {"day": "20261101", "min_clips": 4}}))
    outcomes = extract(root, tmp_path / "features", params)
    assert outcomes["A-1"].status == "skipped"
    assert outcomes["A-1"].error == "3 usable clips on 20261101, fewer than data.min_clips = 4"


def test_sampling_keeps_a_seeded_share_and_records_the_rest(root: Path, tmp_path: Path) -> None:
    one_clip = TINY["generate"]["clip_sec"] / 3600  # hours
    sampled = merge(TINY, {"data": {"day": "20261102", "sample_hours": one_clip}})
    chosen = {}
    for run, seed in enumerate((0, 0, 1, 2, 3)):
        params = parse_params(merge(sampled, {"data": {"sample_seed": seed}}))
        extract(root, tmp_path / f"features-{run}", params)
        _, _, index = extraction.load_device(tmp_path / f"features-{run}" / "A-1")
        recorded = [c["file"] for c in index["train_clips"] if c["role"] == "recorded"]
        assert len(recorded) == len(index["sampled_out"]) == 1  # one of the day's two
        assert [c["role"] for c in index["train_clips"]][-1] == "verified"  # never sampled
        chosen[run] = recorded[0]
    assert chosen[0] == chosen[1]  # seeded
    assert len(set(chosen.values())) == 2  # and another seed may pick the other clip
