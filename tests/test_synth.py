"""The synthetic demo fleet: layout, determinism, formats, device sounds and fault signatures."""

from __future__ import annotations

import itertools
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import welch

from pipelines.acoustic.synth import (
    ANOMALY_KINDS,
    COMPONENTS,
    DRIFT_DB,
    SEVERITIES,
    SEVERITY_DB,
    VERIFIED_RATE,
    anomaly_label,
    device_profile,
    generate_fleet,
    render_anomaly,
    render_normal,
)
from pipelines.params import GenerateParams
from registry.errors import InvalidNameError

REPO = Path(__file__).resolve().parents[1]
RATE = 16000
SMALL = GenerateParams(
    seed=7,
    start_date="20261231",
    days=2,
    clips_per_day=2,
    clip_sec=9.0,
    verified_clips=2,
    test_normal=3,
    test_anomaly=9,  # every kind at every severity
    test_clip_sec=4.0,
)
PER_DEVICE = 2 * 2 + 2 + 3 + 9


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("fleet") / "demo"
    return root, generate_fleet(root, SMALL, RATE)


def _wavs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.wav"))


def _read(path: Path) -> np.ndarray:
    return sf.read(path)[0]


def test_layout_and_counts(fleet: tuple[Path, dict[str, int]]) -> None:
    root, counts = fleet
    assert counts == {device: PER_DEVICE for device in SMALL.devices}
    assert sorted(p.name for p in root.iterdir()) == sorted(SMALL.devices)
    assert not (root.parent / ".demo.tmp").exists()
    for device in SMALL.devices:
        folder = root / device
        # The first day keeps the legacy layout, the second day is in the next year.
        assert [p.name for p in _wavs(folder / "20261231")] == [
            f"{device}_20261231_00.wav",
            f"{device}_20261231_01.wav",
        ]
        assert not (folder / "20261231" / "normal").exists()
        assert len(_wavs(folder / "20270101" / "normal")) == 2
        assert len(_wavs(folder / "verified_normal")) == 2
        assert [p.name for p in _wavs(folder / "test" / "normal")] == [
            "normal_00.wav",
            "normal_01.wav",
            "normal_02.wav",
        ]
        anomalies = _wavs(folder / "test" / "anomaly")
        assert len(anomalies) == 9
        assert "anomaly_bearing-click_strong_00.wav" in [p.name for p in anomalies]
        assert len(list(folder.rglob("*.wav"))) == PER_DEVICE


def test_every_kind_at_every_severity() -> None:
    labels = {anomaly_label(i) for i in range(9)}
    assert labels == set(itertools.product(ANOMALY_KINDS, SEVERITIES))
    assert SEVERITY_DB["strong"] > SEVERITY_DB["medium"] > SEVERITY_DB["subtle"] >= 3.0


def test_same_params_give_identical_bytes(
    fleet: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    root, _ = fleet
    again = tmp_path / "again"
    again.mkdir()
    (again / "stale.wav").write_bytes(b"left over")  # replaced wholesale
    generate_fleet(again, SMALL, RATE)
    files = sorted(p.relative_to(root) for p in root.rglob("*.wav"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.wav"))
    for rel in files:
        assert (root / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_more_clips_leave_earlier_clips_unchanged(
    fleet: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    root, _ = fleet
    more = tmp_path / "more"
    generate_fleet(
        more, replace(SMALL, devices=SMALL.devices[:2], clips_per_day=3, test_normal=4), RATE
    )
    for rel in ("LT-2/20261231/LT-2_20261231_01.wav", "FAN-7/test/normal/normal_02.wav"):
        assert (root / rel).read_bytes() == (more / rel).read_bytes()


def test_another_seed_gives_other_audio(fleet: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    root, _ = fleet
    other = tmp_path / "other"
    generate_fleet(other, replace(SMALL, seed=SMALL.seed + 1, devices=SMALL.devices[:2]), RATE)
    for path in [root / "LT-2/20261231/LT-2_20261231_00.wav", *_wavs(root / "FAN-7/test/anomaly")]:
        assert not np.allclose(_read(path), _read(other / path.relative_to(root)))


def test_formats_rates_and_levels(fleet: tuple[Path, dict[str, int]]) -> None:
    root, _ = fleet
    stereo_device = SMALL.devices[1]
    for path in root.rglob("*.wav"):
        info = sf.info(path)
        assert info.subtype == "PCM_16"
        verified_stereo = path.parent.name == "verified_normal" and stereo_device in path.parts
        assert info.samplerate == (VERIFIED_RATE if verified_stereo else RATE), path
        assert info.channels == (2 if verified_stereo else 1), path
        seconds = SMALL.test_clip_sec if "test" in path.parts else SMALL.clip_sec
        assert info.frames == round(seconds * info.samplerate)
        audio = _read(path)
        rms_db = 10 * np.log10(np.mean(audio**2))
        assert -40.0 < rms_db < -15.0, path
        assert np.max(np.abs(audio)) < 0.85, path  # well clear of the safety limiter


def test_stereo_channels_differ_slightly(fleet: tuple[Path, dict[str, int]]) -> None:
    root, _ = fleet
    for path in _wavs(root / SMALL.devices[1] / "verified_normal"):
        left, right = _read(path).T
        assert not np.allclose(left, right)
        assert np.corrcoef(left, right)[0, 1] > 0.9


def test_profiles_are_pure_and_cycle_dominant_component() -> None:
    assert device_profile("LT-2", 3, 0) == device_profile("LT-2", 3, 0)
    assert device_profile("LT-2", 3, 0) != device_profile("LT-2", 4, 0)
    dominants = [device_profile(f"D{i}", 3, i).dominant for i in range(6)]
    assert dominants == list(COMPONENTS) * 2


@pytest.mark.parametrize("seed", [0, 7, 2026])
def test_fundamentals_are_distinct(seed: int) -> None:
    f0s = [device_profile(f"M{i}", seed, i).f0 for i in range(100)]
    assert all(68.0 <= f0 <= 410.0 for f0 in f0s)
    # Ten fit 70-400 Hz at >= 15% apart; the devices beyond reuse the range.
    assert all(high / low >= 1.15 for low, high in itertools.pairwise(sorted(f0s[:10])))


def test_each_device_hums_at_its_own_f0(fleet: tuple[Path, dict[str, int]]) -> None:
    root, _ = fleet
    peaks = []
    for i, device in enumerate(SMALL.devices):
        audio = _read(root / device / "test" / "normal" / "normal_00.wav")
        freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
        power = np.abs(np.fft.rfft(audio)) ** 2
        hum = (freqs > 50) & (freqs < 450)
        peak = freqs[hum][np.argmax(power[hum])]
        profile = device_profile(device, SMALL.seed, i)
        # Under load the machine slips: its speed drops by up to profile.slip.
        assert 1 - profile.slip - 0.005 < peak / profile.f0 < 1.005, (device, peak, profile)
        peaks.append(peak)
    # Slots 20% apart, less 1.5% jitter either side and up to 3.5% slip.
    assert all(b / a > 1.1 for a, b in itertools.pairwise(sorted(peaks)))


def _click_rhythm(audio: np.ndarray, normal_psd: np.ndarray) -> float:
    """Envelope analysis, as for a real bearing: how strongly the 1.5-6 kHz energy beats at
    4-20 Hz (fault rates), relative to its mean. The band is first whitened against the normal
    spectrum, so a resonance where the machine is quiet counts as much as one where it is loud;
    the Hann window keeps the slow modulation (< 2.1 Hz) out of the 4-20 Hz band."""
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    weights = np.interp(freqs, np.fft.rfftfreq(512, 1 / RATE), normal_psd) ** -0.5
    weights[(freqs < 1500) | (freqs > 6000)] = 0.0
    high = np.fft.irfft(np.fft.rfft(audio) * weights, len(audio))
    frame = RATE // 200  # 5 ms energy frames
    energy = np.square(high[: len(high) // frame * frame]).reshape(-1, frame).mean(axis=1)
    spectrum = np.abs(np.fft.rfft(energy * np.hanning(len(energy))))
    beats = np.fft.rfftfreq(len(energy), frame / RATE)
    return float(np.linalg.norm(spectrum[(beats >= 4) & (beats <= 20)]) / spectrum[0])


def _band_over_low(audio: np.ndarray, low: float, high: float) -> float:
    """Power in [low, high] Hz relative to the power below 800 Hz, so clip level cancels."""
    freqs, psd = welch(audio, fs=RATE, nperseg=1024)
    return float(psd[(freqs >= low) & (freqs <= high)].sum() / psd[freqs < 800].sum())


def _peak_excess(audio: np.ndarray, normal_psd: np.ndarray) -> float:
    """Largest narrow-band power gain over the normal clips at 1-3.5 kHz (level-corrected)."""
    freqs, psd = welch(audio, fs=RATE, nperseg=8192)
    low = freqs < 800
    ratio = (psd / psd[low].sum()) / (normal_psd / normal_psd[low].sum())
    return float(ratio[(freqs > 1000) & (freqs < 3500)].max())


@pytest.mark.parametrize("device", SMALL.devices)
def test_fault_signatures_are_measurable(fleet: tuple[Path, dict[str, int]], device: str) -> None:
    root, _ = fleet
    normals = [_read(p) for p in _wavs(root / device / "test" / "normal")]
    normal_psd = np.mean([welch(x, fs=RATE, nperseg=8192)[1] for x in normals], axis=0)
    coarse_psd = np.mean([welch(x, fs=RATE, nperseg=512)[1] for x in normals], axis=0)

    def rubbing(audio: np.ndarray) -> float:
        return _band_over_low(audio, 1000, 4000)

    def clicks(audio: np.ndarray) -> float:
        return _click_rhythm(audio, coarse_psd)

    def partials(audio: np.ndarray) -> float:
        return _peak_excess(audio, normal_psd)

    # measure, its largest value on a normal clip, and the factor even a subtle fault beats
    measures = {
        "bearing-click": (clicks, max(map(clicks, normals)), 2.0),
        "rubbing": (rubbing, max(map(rubbing, normals)), 1.5),
        "harmonic-shift": (partials, 1.0, 4.0),  # 6 dB in a 2 Hz bin
    }
    for kind, (measure, normal_level, factor) in measures.items():
        found = {}
        for path in _wavs(root / device / "test" / "anomaly"):
            _, path_kind, severity, _ = path.stem.split("_")
            if path_kind == kind:
                found[severity] = measure(_read(path))
        assert set(found) == set(SEVERITIES)
        # Each severity is on another clip (another load, another bearing), so they are not
        # ranked here: test_fault_is_added_on_top_of_the_normal_clip checks the dB apart.
        assert min(found.values()) > factor * normal_level, (kind, found, normal_level)


def test_fault_is_added_on_top_of_the_normal_clip() -> None:
    profile = device_profile("FAN-7", 5, 1)
    seconds = 10.0

    def fault(kind: str, severity: str) -> np.ndarray:
        rng = np.random.default_rng(11)
        anomalous = render_anomaly(profile, kind, severity, seconds, RATE, rng)
        return anomalous - render_normal(profile, seconds, RATE, np.random.default_rng(11))

    for kind in ANOMALY_KINDS:
        ratio = np.sum(fault(kind, "strong") ** 2) / np.sum(fault(kind, "subtle") ** 2)
        assert ratio == pytest.approx(10 ** ((SEVERITY_DB["strong"] - SEVERITY_DB["subtle"]) / 10))

    # The new partials sit at half orders of the clip's f0: (k + 1/2) f0 and (k + 3/2) f0.
    partials = fault("harmonic-shift", "subtle")
    freqs = np.fft.rfftfreq(len(partials), 1 / RATE)
    power = np.abs(np.fft.rfft(partials)) ** 2
    low, high = np.sort(freqs[_local_peaks(power)[:2]])
    spacing = high - low
    assert 1 - profile.slip - 0.006 < spacing / profile.f0 < 1.006  # the clip's f0, slipped
    assert (low / spacing) % 1 == pytest.approx(0.5, abs=0.01)
    assert 1000 < low < 3500


def _local_peaks(power: np.ndarray) -> np.ndarray:
    """Indices of local maxima, strongest first."""
    inner = np.flatnonzero((power[1:-1] > power[:-2]) & (power[1:-1] >= power[2:])) + 1
    return inner[np.argsort(power[inner])[::-1]]


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"devices": ("LT-2", "bad/code")}, InvalidNameError, "generate.devices[1]"),
        ({"devices": ("LT_2",)}, InvalidNameError, "'LT_2'"),
        ({"devices": ("LT-2", "FAN-7", "LT-2")}, ValueError, "duplicate device 'LT-2'"),
        ({"start_date": "2026-11-01"}, ValueError, "generate.start_date"),
        ({"start_date": "20261301"}, ValueError, "'20261301'"),
        ({"start_date": "2026111"}, ValueError, "'2026111'"),
        ({"drift_device": "PMP-9"}, ValueError, "generate.drift_device"),
        ({"drift_device": "lt-2"}, ValueError, "got 'lt-2'"),
        ({"drift_device": "FAN-7", "drift_day": 2}, ValueError, "generate.drift_day"),
    ],
)
def test_bad_input_is_refused_before_writing(
    tmp_path: Path, change: dict, error: type[Exception], words: str
) -> None:
    root = tmp_path / "demo"
    root.mkdir()
    (root / "keep.txt").write_text("previous output")
    with pytest.raises(error) as caught:
        generate_fleet(root, replace(SMALL, **change), RATE)
    assert words in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]
    assert [p.name for p in root.iterdir()] == ["keep.txt"]


# Three short days of three clips, the middle one drifting for the second device.
DRIFT = replace(SMALL, days=3, clips_per_day=3, clip_sec=4.0, drift_device="FAN-7", drift_day=1)
DRIFT_DAY = "FAN-7/20270101/normal"


@pytest.fixture(scope="module")
def drift_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same fleet without and with the drift."""
    base = tmp_path_factory.mktemp("drift")
    generate_fleet(base / "steady", replace(DRIFT, drift_device=""), RATE)
    generate_fleet(base / "drift", DRIFT, RATE)
    return base / "steady", base / "drift"


def test_drift_changes_only_the_drifting_days_clips(drift_pair: tuple[Path, Path]) -> None:
    steady, drift = drift_pair
    files = sorted(p.relative_to(steady) for p in steady.rglob("*.wav"))
    assert files == sorted(p.relative_to(drift) for p in drift.rglob("*.wav"))
    changed = [
        str(rel) for rel in files if (steady / rel).read_bytes() != (drift / rel).read_bytes()
    ]
    assert changed == [f"{DRIFT_DAY}/FAN-7_20270101_{i:02d}.wav" for i in range(3)]


def test_no_drift_device_ignores_drift_day(drift_pair: tuple[Path, Path], tmp_path: Path) -> None:
    steady, _ = drift_pair
    generate_fleet(tmp_path / "demo", replace(DRIFT, drift_device="", drift_day=99), RATE)
    for path in steady.rglob("*.wav"):
        assert path.read_bytes() == (tmp_path / "demo" / path.relative_to(steady)).read_bytes()


def test_drift_is_a_bearing_tick_growing_over_the_day(drift_pair: tuple[Path, Path]) -> None:
    steady, drift = drift_pair
    pairs = [(_read(steady / p.relative_to(drift)), _read(p)) for p in _wavs(drift / DRIFT_DAY)]
    assert len(pairs) == DRIFT.clips_per_day
    # One bearing all day: its resonance, found where the last clip gained most.
    freqs, added = welch(pairs[-1][1] - pairs[-1][0], fs=RATE, nperseg=1024)
    resonance = freqs[np.argmax(added)]
    assert 1500 < resonance < 5500
    gains, rhythms = [], []
    for before, after in pairs:
        # The same clip underneath: below the bearing band nothing changes.
        assert _band_over_low(after, 100, 800) == pytest.approx(
            _band_over_low(before, 100, 800), rel=1e-3
        )
        band = (resonance - 300, resonance + 300)
        gains.append(10 * np.log10(_band_over_low(after, *band) / _band_over_low(before, *band)))
        normal_psd = welch(before, fs=RATE, nperseg=512)[1]
        rhythms.append(_click_rhythm(after, normal_psd) / _click_rhythm(before, normal_psd))
    # Even the first clip carries the tick; each later clip more than the one before.
    assert gains[0] > 3.0, gains
    assert all(b > a + 3.0 for a, b in itertools.pairwise(gains)), gains
    assert rhythms[-1] > rhythms[0] > 1.5, rhythms
    assert SEVERITY_DB["medium"] <= DRIFT_DB[0] < SEVERITY_DB["strong"] < DRIFT_DB[1]


def test_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    root.write_text("not a fleet")
    with pytest.raises(ValueError, match="is not a folder"):
        generate_fleet(root, SMALL, RATE)
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]


def _stage(out: Path, params: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stages.generate", str(out), "--params", str(params)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


def test_stage_writes_the_fleet(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        "data:\n  sample_rate: 8000\n"
        "generate:\n  devices: [AX-1, BX-2]\n  start_date: 20260301\n  days: 2\n"
        "  clips_per_day: 1\n  clip_sec: 2\n  verified_clips: 1\n  test_normal: 1\n"
        "  test_anomaly: 3\n  test_clip_sec: 2\n"
    )
    result = _stage(tmp_path / "out", params)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("AX-1: 7 files")
    assert len(result.stdout.splitlines()) == 2
    assert len(_wavs(tmp_path / "out" / "AX-1" / "20260301")) == 1
    assert len(_wavs(tmp_path / "out" / "BX-2" / "20260302" / "normal")) == 1
    assert sf.info(_wavs(tmp_path / "out" / "AX-1" / "test" / "normal")[0]).samplerate == 8000
    assert sf.info(_wavs(tmp_path / "out" / "BX-2" / "verified_normal")[0]).channels == 2


@pytest.mark.parametrize(
    ("yaml_text", "words"),
    [
        ("generate:\n  start_date: '20261345'\n", "generate.start_date"),
        ("generate:\n  days: 0\n", "generate.days"),
        ("generate:\n  drift_device: XX-1\n", "generate.drift_device"),
        ("generate:\n  drift_device: PMP-3\n  drift_day: 2\n", "generate.drift_day"),
        ("generate:\n  drift_day: -1\n", "generate.drift_day"),
    ],
)
def test_stage_fails_with_one_line(tmp_path: Path, yaml_text: str, words: str) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml_text)
    result = _stage(tmp_path / "out", params)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert words in result.stderr
    assert not (tmp_path / "out").exists()


def test_normal_clips_vary_with_the_machines_load() -> None:
    """A loaded machine slips and is louder: across clips, f0 falls as the level rises."""
    profile = device_profile("PMP-3", 2026, 0)
    f0s, levels = [], []
    for i in range(16):
        audio = render_normal(profile, 4.0, RATE, np.random.default_rng(i))
        # The hum's peak near f0: 4 s gives 0.25 Hz bins, so 1% of f0 spans several.
        freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
        power = np.abs(np.fft.rfft(audio)) ** 2
        near = np.abs(freqs / profile.f0 - 1) < 0.05
        f0s.append(freqs[near][np.argmax(power[near])])
        levels.append(10 * np.log10(np.mean(audio**2)))
    ratios = np.array(f0s) / profile.f0
    assert np.all((ratios > 1 - profile.slip - 0.005) & (ratios < 1.005)), ratios
    assert np.ptp(ratios) > profile.slip / 2  # the operating point moves
    assert np.corrcoef(f0s, levels)[0, 1] < -0.5
