"""A deterministic synthetic fleet of machine sounds: the project's built-in demo data.

Each device mixes a harmonic hum on its own fundamental f0, coloured broadband noise and
a slow amplitude modulation, with one of the three dominant (by the device's index). Its
normal clips vary as a real machine's do: each clip runs at its own load, and a loaded machine
slips (f0 up to 1.5-3.5% lower), is 2-4 dB louder and harsher (stronger upper harmonics); the
speed wanders +-0.2% within a clip; and the rest of the plant is heard: diffuse noise 20-30
dB down, in about half the clips the neighbouring machine's hum (its own f0 per device), and
now and then a knock. Anomalies are added on top of a normal clip, each scaled against the
normal sound in the anomaly's own frequency band, so a severity means the same dB excess on
every device (SEVERITY_DB: 9, 6 and 3.5 dB, subtle enough that a detector must average a
band's level over the clip to find the subtle ones):

    bearing-click   resonant impulses repeating at a slightly irregular 5-15 Hz fault rate
    harmonic-shift  two half-order partials, (k + 1/2) f0 and (k + 3/2) f0, at 1.2-3 kHz
    rubbing         0.2-1 s bursts of band-limited noise inside 1-4 kHz

A drifting day (generate.drift_device, generate.drift_day) is a bearing going bad while it
is recorded as normal: on that day that device's clips carry one bearing's clicks (one
fault rate and resonance for the whole day) on top of the very same normal clips, their
excess rising linearly in clip order from DRIFT_DB[0] (between 'medium' and 'strong') on
the first clip to DRIFT_DB[1] (far beyond 'strong') on the last. A model fine-tuned on that
day learns the fault as normal. Every other file is byte-identical to the fleet without the drift.

Layout under the fleet root (dates are start_date + d days):

    {device}/{date}/*.wav                   day 0, the legacy layout
    {device}/{date}/normal/*.wav            later days
    {device}/verified_normal/*.wav          32 kHz stereo for the second device
    {device}/test/normal/normal_NN.wav
    {device}/test/anomaly/anomaly_{kind}_{severity}_NN.wav
"""

from __future__ import annotations

import re
import shutil
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import welch

from pipelines.params import GenerateParams, Params
from registry.naming import check_device_code

COMPONENTS = ("hum", "broadband", "modulation")
ANOMALY_KINDS = ("bearing-click", "harmonic-shift", "rubbing")
# dB of the anomaly above the normal sound in the anomaly's own band, while it sounds.
SEVERITY_DB = {"strong": 9.0, "medium": 6.0, "subtle": 3.5}
SEVERITIES = tuple(SEVERITY_DB)
# The drifting day's bearing excess in dB, on its first and on its last clip: a bearing going
# bad fast, past 'medium' from the first clip, so a model that learns the day learns a fault.
DRIFT_DB = (8.0, 22.0)
VERIFIED_RATE = 32000

# f0 slots on a log grid 20% apart; the +-1.5% jitter inside a slot keeps devices >= 15% apart.
_F0_LOWEST, _F0_STEP, _F0_SLOTS, _F0_SLOT_JITTER = 70.0, 1.2, 10, 0.015
_N_HARMONICS = 12
_BAND_EDGE = 0.45  # highest frequency used, as a fraction of the sample rate
_FRAME_SEC = 0.064  # the features' STFT frame: n_fft 1024 at 16 kHz
_PEAK_LIMIT = 0.89
_SPEED_WANDER = 0.002  # a clip's speed varies +-0.2% around its mean
_KNOCKS_PER_MINUTE = 2.0  # the plant's knocks, a Poisson rate
# Key groups of the per-clip random streams: one stream per clip, so clips are independent.
# New groups go at the end, so that the streams of the existing ones never change.
_PROFILE, _TRAIN, _VERIFIED, _TEST_NORMAL, _TEST_ANOMALY, _F0_ORDER = range(6)
_DRIFT_BEARING, _DRIFT_CLICKS = 6, 7  # the drifting day's bearing, and each clip's clicks


@dataclass(frozen=True)
class DeviceProfile:
    """What one device sounds like when it is healthy."""

    device: str
    dominant: str  # one of COMPONENTS
    f0: float  # Hz, fundamental of the hum
    harmonics: tuple[float, ...]  # relative amplitude of f0, 2 f0, 3 f0, ...
    hum_gain: float
    noise_gain: float
    noise_band: tuple[float, float]  # Hz, pass band of the coloured noise
    noise_tilt: float  # dB per octave
    mod_depth: float  # amplitude-modulation depth of hum and noise, 0..1
    mod_rate: float  # Hz
    level_db: float  # RMS level in dBFS, at no load
    slip: float  # fraction by which the speed (and f0) drops from no load to full load
    load_db: float  # dB louder at full load than at no load
    load_tilt: float  # harmonic k gains k**(load_tilt * load): a loaded machine sounds harsher
    neighbour_f0: float  # Hz, the machine next to it, heard in about half the clips


def device_profile(device: str, seed: int, index: int) -> DeviceProfile:
    """The healthy sound of the fleet's `index`-th device; a pure function of its arguments."""
    rng = _rng(seed, device, _PROFILE)
    dominant = COMPONENTS[index % len(COMPONENTS)]
    minor = float(rng.uniform(0.2, 0.4))
    hum_gain, noise_gain = {"hum": (1.0, minor), "broadband": (minor, 1.0)}.get(
        dominant, (0.7, 0.7)
    )
    # Only a modulation-dominated device pulsates deeply; the others breathe a little.
    depth = rng.uniform(0.7, 0.9) if dominant == "modulation" else rng.uniform(0.1, 0.25)
    k = np.arange(1, _N_HARMONICS + 1)
    harmonics = k ** -rng.uniform(0.6, 1.5) * np.r_[1.0, rng.uniform(0.3, 1.0, _N_HARMONICS - 1)]
    jitter = rng.uniform(1 - _F0_SLOT_JITTER, 1 + _F0_SLOT_JITTER)
    return DeviceProfile(
        device=device,
        dominant=dominant,
        f0=float(_f0_slot(seed, index) * jitter),
        harmonics=tuple(float(a) for a in harmonics),
        hum_gain=hum_gain,
        noise_gain=noise_gain,
        noise_band=(float(rng.uniform(50, 300)), float(rng.uniform(2500, 7000))),
        noise_tilt=float(rng.uniform(-6.0, -1.5)),
        mod_depth=float(depth),
        mod_rate=float(rng.uniform(0.2, 2.0)),
        level_db=float(rng.uniform(-36.0, -32.0)),
        slip=float(rng.uniform(0.015, 0.035)),
        load_db=float(rng.uniform(2.0, 4.0)),
        load_tilt=float(rng.uniform(0.2, 0.5)),
        neighbour_f0=float(rng.uniform(45.0, 300.0)),
    )


def anomaly_label(index: int) -> tuple[str, str]:
    """(kind, severity) of the `index`-th test anomaly: every kind at every severity by 9."""
    kind = ANOMALY_KINDS[index % len(ANOMALY_KINDS)]
    return kind, SEVERITIES[(index // len(ANOMALY_KINDS)) % len(SEVERITIES)]


def generate_demo(root: Path, params: Params) -> dict[str, str]:
    """The demo fleet of params' `generate` under root; what was written, per device."""
    counts = generate_fleet(root, params.generate, params.data.sample_rate)
    return {device: f"{files} files in {root / device}" for device, files in counts.items()}


def generate_fleet(root: Path, gen: GenerateParams, sample_rate: int) -> dict[str, int]:
    """Write the demo fleet under root; return the number of files written per device."""
    dates = _check(gen)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root}: exists and is not a folder")
    tmp = root.parent / f".{root.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    counts = {
        device: _write_device(
            tmp / device, device_profile(device, gen.seed, i), gen, dates, i, sample_rate
        )
        for i, device in enumerate(gen.devices)
    }
    # The root is this stage's output, so replacing it wholesale loses nothing of anyone's.
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    return counts


def _check(gen: GenerateParams) -> list[str]:
    """Refuse bad input before anything is written; return the date folder names."""
    if not gen.devices:
        raise ValueError("generate.devices: expected at least one device")
    for i, device in enumerate(gen.devices):
        check_device_code(device, where=f"generate.devices[{i}]")
    duplicates = sorted({d for d in gen.devices if gen.devices.count(d) > 1})
    if duplicates:
        raise ValueError(f"generate.devices: duplicate device {duplicates[0]!r}")
    start = _parse_date(gen.start_date)
    if start is None:
        raise ValueError(
            f"generate.start_date: expected a date as YYYYMMDD, got {gen.start_date!r}"
        )
    if gen.drift_device:
        if gen.drift_device not in gen.devices:
            raise ValueError(
                f"generate.drift_device: expected one of generate.devices "
                f'{list(gen.devices)} or "", got {gen.drift_device!r}'
            )
        if gen.drift_day >= gen.days:
            raise ValueError(
                f"generate.drift_day: expected a day index below generate.days "
                f"({gen.days}), got {gen.drift_day}"
            )
    return [(start + timedelta(days=d)).strftime("%Y%m%d") for d in range(gen.days)]


def _parse_date(text: str) -> datetime | None:
    try:  # strptime alone would also take "2026111"
        return datetime.strptime(text, "%Y%m%d") if re.fullmatch(r"\d{8}", text) else None
    except ValueError:
        return None


def _write_device(
    folder: Path,
    profile: DeviceProfile,
    gen: GenerateParams,
    dates: list[str],
    index: int,
    sample_rate: int,
) -> int:
    seed, device = gen.seed, profile.device

    def save(path: Path, audio: np.ndarray, rate: int = sample_rate) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, _limit(audio), rate, subtype="PCM_16")

    for d, date in enumerate(dates):
        day = folder / date if d == 0 else folder / date / "normal"
        drifting = device == gen.drift_device and d == gen.drift_day
        for i in range(gen.clips_per_day):
            rng = _rng(seed, device, _TRAIN, int(date), i)
            audio = render_normal(profile, gen.clip_sec, sample_rate, rng)
            if drifting:
                audio = _drifted(audio, sample_rate, gen, device, int(date), i)
            save(day / f"{device}_{date}_{i:02d}.wav", audio)
    # The second device's verified clips come from another recorder: 32 kHz stereo.
    stereo = index == 1
    rate = VERIFIED_RATE if stereo else sample_rate
    for i in range(gen.verified_clips):
        rng = _rng(seed, device, _VERIFIED, i)
        audio = render_normal(profile, gen.clip_sec, rate, rng)
        if stereo:
            audio = _with_second_channel(audio, rng)
        save(folder / "verified_normal" / f"{device}_verified_{i:02d}.wav", audio, rate)
    for i in range(gen.test_normal):
        rng = _rng(seed, device, _TEST_NORMAL, i)
        audio = render_normal(profile, gen.test_clip_sec, sample_rate, rng)
        save(folder / "test" / "normal" / f"normal_{i:02d}.wav", audio)
    for i in range(gen.test_anomaly):
        kind, severity = anomaly_label(i)
        rng = _rng(seed, device, _TEST_ANOMALY, i)
        audio = render_anomaly(profile, kind, severity, gen.test_clip_sec, sample_rate, rng)
        save(folder / "test" / "anomaly" / f"anomaly_{kind}_{severity}_{i:02d}.wav", audio)
    return sum(1 for _ in folder.rglob("*.wav"))


def render_normal(
    profile: DeviceProfile, duration: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """One healthy clip: the profile, varied a little from clip to clip."""
    return _normal(profile, duration, sample_rate, rng)[0]


def render_anomaly(
    profile: DeviceProfile,
    kind: str,
    severity: str,
    duration: float,
    sample_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """A healthy clip with a `kind` fault SEVERITY_DB[severity] dB above it in the fault's band.

    The healthy clip is the one render_normal draws from the same generator state, so the
    difference of the two is the fault alone.
    """
    if kind not in _FAULTS or severity not in SEVERITY_DB:
        raise ValueError(f"unknown anomaly {kind!r} / {severity!r}")
    base, f0 = _normal(profile, duration, sample_rate, rng)
    parts = _FAULTS[kind](len(base), sample_rate, f0, rng)
    excess_db = SEVERITY_DB[severity]
    return base + sum((_match_band(base, part, sample_rate, excess_db) for part in parts), 0.0)


def _drifted(
    base: np.ndarray, rate: int, gen: GenerateParams, device: str, date: int, index: int
) -> np.ndarray:
    """The `index`-th clip of the drifting day: `base` with the day's bearing clicking in it,
    DRIFT_DB[0] dB above it in the bearing's band on the first clip, DRIFT_DB[1] on the last."""
    bearing = _bearing(_rng(gen.seed, device, _DRIFT_BEARING, date))
    rng = _rng(gen.seed, device, _DRIFT_CLICKS, date, index)
    (part,) = _bearing_clicks(len(base), rate, 0.0, rng, bearing)
    share = index / (gen.clips_per_day - 1) if gen.clips_per_day > 1 else 1.0
    excess_db = DRIFT_DB[0] + share * (DRIFT_DB[1] - DRIFT_DB[0])
    return base + _match_band(base, part, rate, excess_db)


def _normal(
    profile: DeviceProfile, duration: float, rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """A healthy clip and its mean f0: the machine at the clip's operating point, in its plant."""
    n = max(1, round(duration * rate))
    t = np.arange(n) / rate
    # The clip's load, 0..1: a loaded motor slips (runs slower), is louder and harsher.
    load = rng.uniform(0.0, 1.0)
    f0 = profile.f0 * (1 - profile.slip * load) * rng.uniform(0.997, 1.003)
    # The speed also wanders a little within the clip, as a real drive's does.
    period, start = rng.uniform(3.0, 8.0), rng.uniform(0, 2 * np.pi)
    wander = 1 + _SPEED_WANDER * np.sin(2 * np.pi * t / period + start)
    phase = 2 * np.pi * f0 * np.cumsum(wander) / rate
    phases = rng.uniform(0, 2 * np.pi, len(profile.harmonics))
    # Harmonic k is rotor**k: one complex exponential instead of a sine per harmonic.
    rotor = np.exp(1j * phase)
    partial, hum = np.ones(n, dtype=complex), np.zeros(n)
    for k, (a, offset) in enumerate(zip(profile.harmonics, phases, strict=True), start=1):
        partial *= rotor
        if k * f0 < _BAND_EDGE * rate:
            hum += a * k ** (profile.load_tilt * load) * (partial * np.exp(1j * offset)).imag
    noise = _coloured_noise(n, rate, profile.noise_band, profile.noise_tilt, rng)
    mod_rate = profile.mod_rate * rng.uniform(0.95, 1.05)
    envelope = 1 + profile.mod_depth * np.sin(2 * np.pi * mod_rate * t + rng.uniform(0, 2 * np.pi))
    mix = _unit_rms(
        (profile.hum_gain * _unit_rms(hum) + profile.noise_gain * _unit_rms(noise)) * envelope
    )
    mix += _plant(n, rate, profile.neighbour_f0, rng)
    level_db = profile.level_db + profile.load_db * load + rng.uniform(-1.0, 1.0)
    return mix * 10 ** (level_db / 20), float(f0)


def _plant(n: int, rate: int, neighbour_f0: float, rng: np.random.Generator) -> np.ndarray:
    """The rest of the plant, relative to a unit-RMS machine: diffuse noise, in about half the
    clips the neighbouring machine's hum, and now and then a knock (a tool set down, a door)."""
    diffuse = _coloured_noise(n, rate, (40.0, 6000.0), -4.5, rng)
    out = _unit_rms(diffuse) * 10 ** (rng.uniform(-30.0, -20.0) / 20)
    t = np.arange(n) / rate
    if rng.uniform() < 0.5:
        # Far away, so only its lowest harmonics carry: 3 of them, falling 6 dB each.
        f0 = neighbour_f0 * rng.uniform(0.99, 1.01)
        other = sum(
            0.5**k * np.sin(2 * np.pi * (k + 1) * f0 * t + rng.uniform(0, 2 * np.pi))
            for k in range(3)
        )
        out += _unit_rms(other) * 10 ** (rng.uniform(-22.0, -16.0) / 20)
    for _ in range(rng.poisson(_KNOCKS_PER_MINUTE * n / rate / 60)):
        length = min(n, int(rng.uniform(0.02, 0.1) * rate))
        at = int(rng.uniform(0, max(1, n - length)))
        decay = np.exp(-np.arange(length) / (length / 5))
        knock = _coloured_noise(length, rate, (100.0, 5000.0), -3.0, rng) * decay
        out[at : at + length] += _unit_rms(knock) * 10 ** (rng.uniform(-6.0, 3.0) / 20)
    return out


@dataclass(frozen=True)
class _Part:
    """One component of a fault, with the band it sounds in and the share of time it sounds."""

    signal: np.ndarray
    band: tuple[float, float]
    duty: float


def _bearing(rng: np.random.Generator) -> tuple[float, float, float]:
    """One bearing's fault: its fault rate (Hz), ringing resonance (Hz) and decay time (s)."""
    fault_rate = rng.uniform(5.0, 15.0)
    resonance = rng.uniform(2000.0, 5000.0)
    return fault_rate, resonance, rng.uniform(3e-3, 8e-3)


def _bearing_clicks(
    n: int,
    rate: int,
    f0: float,
    rng: np.random.Generator,
    bearing: tuple[float, float, float] | None = None,
) -> list[_Part]:
    """A bearing's clicks: `bearing` (see _bearing), or one drawn from rng first."""
    fault_rate, resonance, decay = bearing if bearing is not None else _bearing(rng)
    resonance = min(resonance, 0.4 * rate)
    # Slightly irregular spacing: rolling elements slip, so impacts are never exactly periodic.
    intervals = rng.uniform(0.9, 1.1, int(n / rate * fault_rate) + 2) / fault_rate
    onsets = np.cumsum(intervals) - rng.uniform(0, intervals[0])
    impulses = np.zeros(n)
    hits = (onsets * rate).astype(int)
    hits = hits[(hits >= 0) & (hits < n)]
    impulses[hits] = rng.uniform(0.7, 1.0, len(hits))
    t = np.arange(int(8 * decay * rate) + 1) / rate
    ring = np.exp(-t / decay) * np.sin(2 * np.pi * resonance * t + rng.uniform(0, 2 * np.pi))
    tick = 0.3 * np.exp(-t / (decay / 5)) * rng.standard_normal(len(t))
    clicks = np.convolve(impulses, ring + tick)[:n]
    # A click sounds for the feature frames it falls in; +-300 Hz holds the ringing resonance.
    duty = min(1.0, fault_rate * _FRAME_SEC)
    return [_Part(clicks, (resonance - 300.0, resonance + 300.0), duty)]


def _half_order_partials(n: int, rate: int, f0: float, rng: np.random.Generator) -> list[_Part]:
    """Partials at (k + 1/2) f0 and (k + 3/2) f0 around 1.2-3 kHz: a loose or cracked part
    rattling at half orders, where the healthy hum has no partials of its own."""
    t = np.arange(n) / rate
    first = np.floor(min(rng.uniform(1200.0, 3000.0), 0.35 * rate) / f0) + 0.5
    parts = []
    for order in (first, first + 1):
        wobble_rate, wobble_phase, phase = rng.uniform(0.1, 0.5), *rng.uniform(0, 2 * np.pi, 2)
        freq = order * f0
        if freq < _BAND_EDGE * rate:
            # A loose part's response wanders slowly in level.
            wobble = 1 + 0.2 * np.sin(2 * np.pi * wobble_rate * t + wobble_phase)
            tone = wobble * np.sin(2 * np.pi * freq * t + phase)
            # About a mel band, stopping short of the neighbouring harmonics at +-f0/2.
            half_width = min(0.4 * f0, 0.05 * freq)
            parts.append(_Part(tone, (freq - half_width, freq + half_width), 1.0))
    return parts


def _rubbing(n: int, rate: int, f0: float, rng: np.random.Generator) -> list[_Part]:
    low = rng.uniform(1000.0, 1800.0)
    band = (low, min(low * rng.uniform(1.8, 2.4), 4000.0))
    noise = _coloured_noise(n, rate, band, 0.0, rng)
    envelope = _bursts(n, rate, rng)
    return [_Part(noise * envelope, band, float(np.mean(envelope**2)))]


_FAULTS = {
    "bearing-click": _bearing_clicks,
    "harmonic-shift": _half_order_partials,
    "rubbing": _rubbing,
}


def _bursts(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """0/1 envelope: on for 0.2-1 s, off for 0.3-1.2 s, with 20 ms ramps against clicks."""
    gate = np.zeros(n)
    at = rng.uniform(0.0, 0.5)
    while at * rate < n:
        on = rng.uniform(0.2, 1.0)
        gate[int(at * rate) : int((at + on) * rate)] = 1.0
        at += on + rng.uniform(0.3, 1.2)
    ramp = np.hanning(max(3, int(0.02 * rate)))
    return np.convolve(gate, ramp / ramp.sum(), mode="same")


def _match_band(base: np.ndarray, part: _Part, rate: int, excess_db: float) -> np.ndarray:
    """Scale `part` so that, while it sounds, it is `excess_db` above `base` in its band."""
    have = _band_power(part.signal, part.band, rate) / part.duty
    want = _band_power(base, part.band, rate) * 10 ** (excess_db / 10)
    return part.signal * np.sqrt(want / have) if have > 0 else np.zeros_like(base)


def _band_power(x: np.ndarray, band: tuple[float, float], rate: int) -> float:
    # Measured at the features' resolution (64 ms Hann frames), where a harmonic's leakage
    # next to a new partial counts against it just as it does in a mel band.
    segment = min(len(x), 2 ** round(np.log2(_FRAME_SEC * rate)))
    freqs, psd = welch(x, fs=rate, nperseg=segment, detrend=False)
    return float(np.sum(psd[(freqs >= band[0]) & (freqs <= band[1])]))


def _coloured_noise(
    n: int, rate: int, band: tuple[float, float], tilt_db: float, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian noise through a smooth band-pass with a spectral tilt in dB per octave."""
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / rate), 1e-3)
    low, high = band[0], min(band[1], _BAND_EDGE * rate)
    shape = 1 / np.sqrt((1 + (low / freqs) ** 8) * (1 + (freqs / high) ** 8))
    shape *= (freqs / 1000.0) ** (tilt_db / (20 * np.log10(2)))
    return np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * shape, n)


def _with_second_channel(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stereo: a second microphone beside the first, a little softer and with its own hiss.

    No delay between the two: a downmix of delayed channels would comb-filter the sound.
    """
    right = audio * 10 ** (rng.uniform(-1.5, -0.5) / 20) + 3e-4 * rng.standard_normal(len(audio))
    return np.stack([audio, right], axis=1)


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x))))
    return x / rms if rms > 0 else x


def _limit(audio: np.ndarray) -> np.ndarray:
    # A safety net, not a normalisation: levels are set so this almost never acts, but a
    # clipped PCM_16 sample would be a fault of its own.
    peak = float(np.max(np.abs(audio)))
    return audio * (_PEAK_LIMIT / peak) if peak > _PEAK_LIMIT else audio


def _rng(seed: int, device: str, group: int, a: int = 0, b: int = 0) -> np.random.Generator:
    # Keys of one fixed length: SeedSequence pads short keys with zeros, so [s, c] == [s, c, 0].
    return np.random.default_rng([seed, zlib.crc32(device.encode()), group, a, b])


def _f0_slot(seed: int, index: int) -> float:
    """The first 10 devices take the 70-400 Hz slots in a seeded order, so they are >= 15%
    apart; a larger fleet cannot be, so any further device draws anywhere in that range."""
    if index < _F0_SLOTS:
        slot = _rng(seed, "", _F0_ORDER).permutation(_F0_SLOTS)[index]
    else:
        slot = _rng(seed, "", _F0_ORDER, index).uniform(0, _F0_SLOTS - 1)
    return _F0_LOWEST * _F0_STEP**slot
