"""Log-Mel windows of a clip, their per-device min-max scale, and the RMS quality filter.

The definition (the seed's): cut the clip into `window_sec` windows every `hop_sec`; for each
window take librosa's mel power spectrogram (centred frames, zero padding at the window's
edges), convert it with `power_to_db(ref=max)` so the window is relative to its own loudest
bin (a window's absolute level is lost; `ref: fixed` keeps it), and pad with zeros or crop
to `frames` columns. `reference_log_mel_windows` computes exactly that, one window at a time.

`log_mel_windows` computes the same numbers faster: windows overlap, so it transforms every
STFT frame of the clip once and shares it between windows; only the frames that touch a
window's edge (where that window sees zeros and the clip sees audio) are transformed again.

A window depends on its own samples only, so `clip_features` computes a clip's windows as
its decoded blocks arrive, keeping just the samples of windows not yet complete: the same
numbers, in memory bounded by the block size rather than by the clip's length.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import librosa
import numpy as np
import scipy.fft
import scipy.sparse
from numpy.lib.stride_tricks import sliding_window_view

from pipelines.params import FeatureParams, QualityParams

_AMIN = 1e-10
_BLOCK = 512  # STFT frames per FFT call


def window_starts(n_samples: int, win: int, hop: int) -> np.ndarray:
    """Start sample of every full window of a clip (none when the clip is shorter)."""
    if n_samples < win:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_samples - win + 1, hop, dtype=np.int64)


def window_samples(p: FeatureParams, sample_rate: int) -> tuple[int, int]:
    return round(p.window_sec * sample_rate), round(p.hop_sec * sample_rate)


def audio_frames(p: FeatureParams, sample_rate: int) -> int:
    """A window's columns that hold audio: the rest, up to `frames`, is padding."""
    win, _ = window_samples(p, sample_rate)
    return min(p.frames, 1 + win // p.hop_length)


def reference_log_mel_windows(y: np.ndarray, sample_rate: int, p: FeatureParams) -> np.ndarray:
    """The definition: one librosa call per window. Shape (windows, n_mels, frames)."""
    win, hop = window_samples(p, sample_rate)
    out = []
    for start in window_starts(len(y), win, hop):
        mel = librosa.feature.melspectrogram(
            y=y[start : start + win],
            sr=sample_rate,
            n_fft=p.n_fft,
            hop_length=p.hop_length,
            n_mels=p.n_mels,
            power=2.0,
        )
        ref = np.max if p.ref == "max" else 1.0
        out.append(_fit_frames(librosa.power_to_db(mel, ref=ref, top_db=p.top_db), p.frames))
    return np.stack(out) if out else np.zeros((0, p.n_mels, p.frames), dtype=np.float32)


def log_mel_windows(y: np.ndarray, sample_rate: int, p: FeatureParams) -> np.ndarray:
    """Same result as `reference_log_mel_windows`, each shared STFT frame computed once."""
    win, hop = window_samples(p, sample_rate)
    starts = window_starts(len(y), win, hop)
    if len(starts) == 0:
        return np.zeros((0, p.n_mels, p.frames), dtype=np.float32)
    if hop % p.hop_length:  # windows do not sit on one frame grid: nothing to share
        return reference_log_mel_windows(y, sample_rate, p)
    n_fft, hl, half = p.n_fft, p.hop_length, p.n_fft // 2
    n_frames = 1 + (win + 2 * half - n_fft) // hl  # librosa's count with centred frames
    first = starts // hl  # each window's first frame on the clip's frame grid
    padded = np.pad(y.astype(np.float32, copy=False), (half, half + hl))
    frames = sliding_window_view(padded, n_fft)[::hl][: first[-1] + n_frames]
    basis = _mel_basis(sample_rate, n_fft, p.n_mels)
    db = _to_db(_mel_power(frames, basis))  # (n_mels, clip frames)
    # Zeros beyond the natural frame count are the padding; the peak ignores them.
    out = np.zeros((len(starts), p.n_mels, max(n_frames, p.frames)), dtype=np.float32)
    body = out[:, :, :n_frames]
    body[:] = sliding_window_view(db, n_frames, axis=1).transpose(1, 0, 2)[first]

    # Frames reaching past a window's edge: zero the samples outside that window.
    t = np.arange(n_frames)
    edge = t[(t * hl < half) | (t * hl - half + n_fft > win)]
    offsets = edge[:, None] * hl - half + np.arange(n_fft)[None, :]  # relative to window start
    inside = ((offsets >= 0) & (offsets < win)).astype(np.float32)
    edge_frames = (frames[first[:, None] + edge[None, :]] * inside).reshape(-1, n_fft)
    edge_db = _to_db(_mel_power(edge_frames, basis)).reshape(p.n_mels, len(starts), len(edge))
    body[:, :, edge] = edge_db.transpose(1, 0, 2)

    # power_to_db's reference and top_db floor, per window (log is monotonic).
    peak = body.max(axis=(1, 2), keepdims=True)
    if p.ref == "max":
        body -= peak
        peak = np.zeros_like(peak)
    np.maximum(body, peak - p.top_db, out=body)
    return np.ascontiguousarray(out[:, :, : p.frames])


@dataclass(frozen=True)
class ClipFeatures:
    """What the extract stage keeps of a clip."""

    windows: np.ndarray  # (windows, n_mels, frames)
    seconds: float
    rms: float  # of the first `probe_sec` seconds: the quality filter's statistic


def clip_features(
    blocks: Iterable[np.ndarray], sample_rate: int, p: FeatureParams, q: QualityParams
) -> ClipFeatures:
    """`log_mel_windows` and `probe_rms` of the concatenated `blocks`, block by block."""
    win, hop = window_samples(p, sample_rate)
    probe = int(q.probe_sec * sample_rate)
    pending = np.zeros(0, np.float32)  # samples of the windows not yet complete
    head, parts, seen = [pending], [], 0
    for block in blocks:
        if seen < probe:  # a slice of a block keeps all of it: only the first blocks
            head.append(block[: probe - seen])
        seen += len(block)
        pending = np.concatenate([pending, block]) if len(pending) else block
        count = len(window_starts(len(pending), win, hop))
        if count:
            parts.append(log_mel_windows(pending, sample_rate, p))
            pending = pending[count * hop :]
    empty = np.zeros((0, p.n_mels, p.frames), dtype=np.float32)
    windows = parts[0] if len(parts) == 1 else np.concatenate([empty, *parts])
    rms = probe_rms(np.concatenate(head), sample_rate, q)
    return ClipFeatures(windows, seen / sample_rate, rms)


# Slaney's mel scale, as librosa has it by default: linear below 1 kHz, logarithmic above.
_HZ_PER_MEL = 200.0 / 3
_LOG_HZ = 1000.0
_LOG_MEL = _LOG_HZ / _HZ_PER_MEL
_LOG_STEP = np.log(6.4) / 27.0


@lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int) -> scipy.sparse.csr_array:
    """`librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)`, its steps in its
    order (so the same floats), but not imported from librosa: `librosa.filters` imports
    scipy.signal and numba, 0.8 s of every stage run. Sparse: each filter spans a few FFT
    bins, and a sparse product needs no BLAS threads, which clip threads would oversubscribe."""
    nyquist = sample_rate / 2
    top = (  # in mels
        nyquist / _HZ_PER_MEL
        if nyquist < _LOG_HZ
        else _LOG_MEL + np.log(nyquist / _LOG_HZ) / _LOG_STEP
    )
    mels = np.linspace(0.0, top, n_mels + 2)
    edges = np.where(
        mels >= _LOG_MEL, _LOG_HZ * np.exp(_LOG_STEP * (mels - _LOG_MEL)), _HZ_PER_MEL * mels
    )
    ramps = np.subtract.outer(edges, np.fft.rfftfreq(n_fft, 1.0 / sample_rate))
    widths = np.diff(edges)[:, None]
    rising, falling = -ramps[:-2] / widths[:-1], ramps[2:] / widths[1:]
    weights = np.maximum(0, np.minimum(rising, falling)).astype(np.float32)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # Slaney's norm: equal area
    return scipy.sparse.csr_array(weights)


@lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    """The periodic Hann window, as scipy.signal computes it for librosa."""
    return (0.5 + 0.5 * np.cos(np.linspace(-np.pi, np.pi, n_fft + 1)))[:-1].astype(np.float32)


def _mel_power(frames: np.ndarray, basis: scipy.sparse.csr_array) -> np.ndarray:
    """Mel power of each Hann-tapered frame, shape (n_mels, frames).

    Blocks of frames keep the working arrays small (in cache, and bounded for long clips).
    """
    taper = _hann(frames.shape[-1])
    out = np.empty((basis.shape[0], len(frames)), dtype=np.float32)
    for a in range(0, len(frames), _BLOCK):
        spectrum = scipy.fft.rfft(frames[a : a + _BLOCK] * taper, axis=-1, overwrite_x=True)
        parts = spectrum.view(np.float32)  # real and imaginary parts, interleaved
        np.square(parts, out=parts)
        out[:, a : a + _BLOCK] = basis @ (parts[:, 0::2] + parts[:, 1::2]).T
    return out


def _to_db(power: np.ndarray) -> np.ndarray:
    """10 log10(max(amin, power)), in place (natural log: numpy vectorises it, not log10)."""
    np.maximum(power, _AMIN, out=power)
    np.log(power, out=power)
    power *= 10.0 / np.log(10.0)
    return power


def _fit_frames(db: np.ndarray, frames: int) -> np.ndarray:
    """Pad with zeros (as the seed does) or crop the last axis to `frames` columns."""
    missing = frames - db.shape[-1]
    if missing > 0:
        pad = [(0, 0)] * (db.ndim - 1) + [(0, missing)]
        return np.pad(db, pad, mode="constant").astype(np.float32)
    return np.ascontiguousarray(db[..., :frames], dtype=np.float32)


def fit_scale(windows: np.ndarray, fitted: np.ndarray | None = None) -> tuple[float, float]:
    """Min-max scale of a device, fitted on its training windows: those `fitted` marks
    (all by default), read in place rather than copied out."""
    where = True if fitted is None else fitted.reshape(-1, *[1] * (windows.ndim - 1))
    return (
        float(windows.min(initial=np.inf, where=where)),
        float(windows.max(initial=-np.inf, where=where)),
    )


def apply_scale(
    windows: np.ndarray, scale: tuple[float, float], out: np.ndarray | None = None
) -> np.ndarray:
    """Windows mapped with `scale` (training windows to [0, 1]); into `out` if given."""
    low, high = scale
    scaled = np.subtract(windows, low, dtype=np.float32, out=out)
    scaled /= high - low + 1e-6
    return scaled


def probe_rms(y: np.ndarray, sample_rate: int, q: QualityParams) -> float:
    """RMS of a clip's first `probe_sec` seconds: the quality filter's statistic."""
    head = y[: int(q.probe_sec * sample_rate)]
    return float(np.sqrt(np.mean(np.square(head, dtype=np.float64))))


def quality_keep(rms: np.ndarray, q: QualityParams) -> np.ndarray:
    """Keep-mask of the IQR filter: drop clips whose RMS is outside [Q1 - k IQR, Q3 + k IQR].

    Too few clips say nothing about what is normal, so below `min_files` all are kept.
    """
    if not q.enabled or len(rms) < q.min_files:
        return np.ones(len(rms), dtype=bool)
    q1, q3 = np.percentile(rms, [25, 75])
    spread = q.iqr_k * (q3 - q1)
    return (rms >= q1 - spread) & (rms <= q3 + spread)
