"""pipelines.acoustic.features: the fast log-Mel windows equal the per-window definition."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import librosa
import numpy as np
import pytest
from scipy.signal import chirp

from pipelines.acoustic import features
from pipelines.acoustic.features import (
    apply_scale,
    clip_features,
    fit_scale,
    log_mel_windows,
    probe_rms,
    quality_keep,
    reference_log_mel_windows,
    window_samples,
    window_starts,
)
from pipelines.params import FeatureParams, QualityParams

RATE = 16000

# Largest |fast - reference| allowed, in dB. Both paths work in float32 but sum and transform
# in a different order (shared frames, scipy.fft, one matmul with the mel basis), so they
# differ by float32 rounding. That rounding is relative to the window's loudest bins, so it
# shows only in bins 60-80 dB below the peak, just above the top_db floor: there it reaches
# ~2e-4 of the bin's power, ~9e-4 dB (the log chirp below at the default params). A real
# mistake (a frame off by one, a missed edge frame, a wrong reference) costs whole dB.
TOLERANCE_DB = 1e-3

# The hop is on the STFT frame grid (16384 samples = 32 frames of 512), as with the default
# params, so `log_mel_windows` takes its fast path (see `fast_path_only`).
SMALL = FeatureParams(window_sec=2.0, hop_sec=1.024, n_mels=32, frames=64, ref="max")

CONFIGS: dict[str, tuple[FeatureParams, float]] = {
    # name: (params, clip seconds)
    "default": (FeatureParams(), 18.5),
    "ref-max": (replace(FeatureParams(), ref="max"), 18.5),
    "frames-200-crop": (replace(FeatureParams(), frames=200), 18.5),
    "top-db-20": (replace(FeatureParams(), top_db=20.0), 18.5),
    "window-2-hop-1.024": (SMALL, 6.3),
    "window-2-hop-1.024-fixed-top-db-30": (replace(SMALL, ref="fixed", top_db=30.0), 6.3),
    "window-1-hop-0.512-odd-frames": (
        replace(SMALL, window_sec=1.0, hop_sec=0.512, frames=37),
        4.1,
    ),
}


@pytest.fixture
def allow_reference() -> None:
    """Asked for by a test in which `log_mel_windows` is meant to run the reference."""


@pytest.fixture(autouse=True)
def fast_path_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """`log_mel_windows` may not fall back on the per-window reference (the tests call it by
    the name imported above): a test of the fast path that ran the reference would compare
    the reference with itself, and pass whatever became of the fast path."""
    if "allow_reference" in request.fixturenames:
        return

    def refuse(*args: object) -> None:
        raise AssertionError("log_mel_windows fell back on the per-window reference")

    monkeypatch.setattr(features, "reference_log_mel_windows", refuse)


def _signal(kind: str, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    if kind == "sine+noise":
        y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(n)
    elif kind == "chirp":
        y = 0.5 * chirp(t, f0=50, t1=seconds, f1=7000, method="logarithmic")
    elif kind == "silence+click":
        y = np.zeros(n)
        y[n // 2 + 123] = 0.9
    elif kind == "random":
        y = rng.uniform(-1, 1, n)
    else:
        raise ValueError(kind)
    return y.astype(np.float32)


SIGNALS = ["sine+noise", "chirp", "silence+click", "random"]
Compute = Callable[[np.ndarray, int, FeatureParams], np.ndarray]


@pytest.mark.parametrize("kind", SIGNALS)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_fast_windows_equal_the_reference(config: str, kind: str) -> None:
    p, seconds = CONFIGS[config]
    y = _signal(kind, seconds)
    fast = log_mel_windows(y, RATE, p)
    reference = reference_log_mel_windows(y, RATE, p)
    win, hop = window_samples(p, RATE)
    assert fast.shape == reference.shape == ((len(y) - win) // hop + 1, p.n_mels, p.frames)
    assert fast.dtype == np.float32
    assert np.isfinite(fast).all()
    assert float(np.abs(fast - reference).max()) < TOLERANCE_DB


def test_a_hop_off_the_frame_grid_is_the_reference_itself(allow_reference: None) -> None:
    p = replace(SMALL, hop_sec=0.3)
    assert window_samples(p, RATE)[1] % p.hop_length != 0
    y = _signal("random", 3.0, seed=4)
    np.testing.assert_array_equal(
        log_mel_windows(y, RATE, p), reference_log_mel_windows(y, RATE, p)
    )


def test_a_click_only_changes_the_windows_that_hold_it() -> None:
    p = SMALL
    y = _signal("silence+click", 6.3)  # the click, at 3.16 s, is in windows 2 and 3 only:
    # windows of 2 s from 1.024, 2.048, 3.072 and 4.096 s
    windows = log_mel_windows(y, RATE, p)
    assert len(windows) == 5
    for i in (0, 1, 4):
        assert not windows[i].any()  # silence relative to itself: 0 dB everywhere
    for i in (2, 3):
        assert windows[i].min() == pytest.approx(-p.top_db)


@pytest.mark.parametrize(
    ("seconds", "window_sec", "hop_sec"),
    [(6.3, 2.0, 1.024), (2.0, 2.0, 1.024), (5.99, 2.0, 0.992), (7.0, 2.0, 0.512), (10, 3.0, 2.56)],
)
def test_window_count(seconds: float, window_sec: float, hop_sec: float) -> None:
    p = replace(SMALL, window_sec=window_sec, hop_sec=hop_sec, n_mels=8)
    n = int(seconds * RATE)
    win, hop = window_samples(p, RATE)
    expected = (n - win) // hop + 1
    starts = window_starts(n, win, hop)
    assert len(starts) == expected
    assert starts[0] == 0
    assert starts[-1] + win <= n
    assert log_mel_windows(_signal("random", seconds), RATE, p).shape == (expected, 8, p.frames)


def test_a_clip_shorter_than_a_window_has_no_windows() -> None:
    p = SMALL
    y = _signal("random", 1.99)
    assert len(window_starts(len(y), *window_samples(p, RATE))) == 0
    for compute in (log_mel_windows, reference_log_mel_windows):
        out = compute(y, RATE, p)
        assert out.shape == (0, p.n_mels, p.frames)
        assert out.dtype == np.float32


@pytest.mark.parametrize("kind", SIGNALS)
def test_ref_max_puts_each_window_peak_at_zero(kind: str) -> None:
    p = replace(SMALL, hop_sec=0.512)
    windows = log_mel_windows(_signal(kind, 5.0, seed=2), RATE, p)
    assert (windows <= 0).all()
    assert (windows >= -p.top_db).all()
    np.testing.assert_allclose(windows.max(axis=(1, 2)), 0.0, atol=1e-4)


def test_ref_fixed_keeps_the_absolute_level() -> None:
    p = replace(SMALL, ref="fixed", frames=63)  # the natural frame count: no padding
    y = _signal("sine+noise", 4.0)
    loud, quiet = log_mel_windows(y, RATE, p), log_mel_windows(0.1 * y, RATE, p)
    # 20 dB quieter at the peak; relative to its own peak ('max') the two would be equal.
    np.testing.assert_allclose(loud.max(axis=(1, 2)) - quiet.max(axis=(1, 2)), 20.0, atol=1e-3)
    p_max = replace(p, ref="max")
    np.testing.assert_allclose(
        log_mel_windows(y, RATE, p_max), log_mel_windows(0.1 * y, RATE, p_max), atol=TOLERANCE_DB
    )


@pytest.mark.parametrize("compute", [log_mel_windows, reference_log_mel_windows])
def test_padding_columns_are_exactly_zero(compute: Compute) -> None:
    p = replace(SMALL, window_sec=1.0, hop_sec=0.512, frames=48, ref="fixed")
    natural = 1 + window_samples(p, RATE)[0] // p.hop_length  # centred frames: 32
    assert natural < p.frames
    y = 0.01 * _signal("random", 3.0)  # real columns well below 0 dB
    windows = compute(y, RATE, p)
    unpadded = compute(y, RATE, replace(p, frames=natural))
    assert (windows[:, :, natural:] == 0).all()
    assert (windows[:, :, :natural] < -10).all()
    np.testing.assert_array_equal(windows[:, :, :natural], unpadded)


def test_crop_keeps_the_first_frames() -> None:
    y = _signal("chirp", 6.3)
    full = log_mel_windows(y, RATE, replace(SMALL, ref="fixed", frames=63))
    cropped = log_mel_windows(y, RATE, replace(SMALL, ref="fixed", frames=20))
    np.testing.assert_array_equal(cropped, full[:, :, :20])


def test_fit_and_apply_scale() -> None:
    rng = np.random.default_rng(1)
    train = rng.uniform(-80.0, 0.0, size=(10, 8, 16)).astype(np.float32)
    scale = fit_scale(train)
    assert scale == (float(train.min()), float(train.max()))
    scaled = apply_scale(train, scale)
    assert scaled.dtype == np.float32
    assert scaled.min() == pytest.approx(0.0, abs=1e-7)
    assert scaled.max() == pytest.approx(1.0, abs=1e-6)
    # Later data is mapped with the training scale, not its own.
    other = apply_scale(np.array([scale[0] - 10.0, scale[1] + 10.0], dtype=np.float32), scale)
    assert other[0] < 0.0 < 1.0 < other[1]


def test_scale_fitted_on_marked_windows_and_applied_in_place() -> None:
    windows = np.random.default_rng(2).uniform(-80.0, 0.0, size=(6, 4, 5)).astype(np.float32)
    fitted = np.array([True, False, True, True, False, True])
    scale = fit_scale(windows, fitted)
    assert scale == fit_scale(windows[fitted])
    expected = apply_scale(windows, scale)
    assert apply_scale(windows, scale, out=windows) is windows
    np.testing.assert_array_equal(windows, expected)


def test_apply_scale_of_a_constant_device_is_finite() -> None:
    flat = np.full((2, 4, 4), -3.0, dtype=np.float32)
    scaled = apply_scale(flat, fit_scale(flat))
    assert np.isfinite(scaled).all()
    assert (scaled == 0).all()


def _rms_with_outlier(n: int) -> np.ndarray:
    rms = np.linspace(0.09, 0.11, n - 1)
    return np.append(rms, 1.0)


def test_quality_keep_drops_an_rms_outlier() -> None:
    q = QualityParams(min_files=10, iqr_k=2.0)
    rms = _rms_with_outlier(12)
    keep = quality_keep(rms, q)
    assert keep.dtype == bool
    assert keep.tolist() == [True] * 11 + [False]
    quiet = np.append(np.linspace(0.09, 0.11, 11), 0.001)
    assert quality_keep(quiet, q).tolist() == [True] * 11 + [False]


def test_quality_keep_keeps_all_below_min_files() -> None:
    rms = _rms_with_outlier(9)
    assert quality_keep(rms, QualityParams(min_files=10)).all()
    assert not quality_keep(rms, QualityParams(min_files=9)).all()


def test_quality_keep_disabled_keeps_all() -> None:
    rms = _rms_with_outlier(20)
    assert quality_keep(rms, QualityParams(enabled=False)).all()
    assert quality_keep(np.zeros(0), QualityParams()).shape == (0,)


@pytest.mark.parametrize(
    ("rate", "n_fft", "n_mels"),
    [(16000, 1024, 128), (16000, 1024, 32), (48000, 2048, 64), (22050, 65, 8), (1600, 256, 16)],
)
def test_mel_filters_and_window_are_librosas(rate: int, n_fft: int, n_mels: int) -> None:
    expected = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels)
    np.testing.assert_allclose(
        features._mel_basis(rate, n_fft, n_mels).toarray(), expected, rtol=1e-6, atol=0
    )
    window = librosa.filters.get_window("hann", n_fft, fftbins=True)
    np.testing.assert_allclose(features._hann(n_fft), window, rtol=0, atol=1e-7)


def _blocks(y: np.ndarray, size: int) -> list[np.ndarray]:
    return [y[i : i + size] for i in range(0, len(y), size)]


@pytest.mark.parametrize("block", [1000, 16384 + 7, 50_000, 10**9])  # 10**9: one block
@pytest.mark.parametrize("config", ["default", "window-2-hop-1.024", "frames-200-crop"])
def test_windows_of_blocks_equal_those_of_the_whole_clip(config: str, block: int) -> None:
    p, _ = CONFIGS[config]
    q = QualityParams(probe_sec=1.5)
    y = _signal("chirp", 41.3, seed=3)
    blocks = _blocks(y, block)
    blocks.insert(1, y[:0])  # a resampler may hand out an empty block
    got = clip_features(blocks, RATE, p, q)
    whole = log_mel_windows(y, RATE, p)
    assert got.windows.shape == whole.shape and got.windows.dtype == np.float32
    assert float(np.abs(got.windows - whole).max()) < 1e-4  # float32 rounding at most
    assert got.seconds == len(y) / RATE
    assert got.rms == probe_rms(y, RATE, q)


def test_a_clip_of_blocks_shorter_than_a_window_has_no_windows() -> None:
    got = clip_features(_blocks(_signal("random", 1.99), 5000), RATE, SMALL, QualityParams())
    assert got.windows.shape == (0, SMALL.n_mels, SMALL.frames)
    assert got.seconds == pytest.approx(1.99)


def test_probe_rms_reads_only_the_first_probe_sec() -> None:
    q = QualityParams(probe_sec=1.0)
    y = np.concatenate([np.full(RATE, 0.5), np.full(3 * RATE, 10.0)]).astype(np.float32)
    assert probe_rms(y, RATE, q) == pytest.approx(0.5)
    assert probe_rms(y, RATE, replace(q, probe_sec=2.0)) == pytest.approx(np.sqrt((0.25 + 100) / 2))
    # A clip shorter than probe_sec: all of it.
    assert probe_rms(y[: RATE // 2], RATE, replace(q, probe_sec=10.0)) == pytest.approx(0.5)


def test_odd_n_fft_equals_the_reference() -> None:
    # n_fft=65: librosa's centred frame count is 1 + (win + 2 * 32 - 65) // 32 = 500 for a
    # 16000-sample window, and frame 499 reaches one sample past the window's end.
    p = FeatureParams(
        window_sec=1.0, hop_sec=0.5, n_mels=8, n_fft=65, hop_length=32, frames=501, ref="fixed"
    )
    y = _signal("random", 3.0)
    fast = log_mel_windows(y, RATE, p)
    reference = reference_log_mel_windows(y, RATE, p)
    assert float(np.abs(fast - reference).max()) < TOLERANCE_DB
