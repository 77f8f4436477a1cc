"""Log-Mel windows of a clip, their per-device min-max scale, and the RMS quality filter.

The definition (the seed's): cut the clip into `window_sec` windows every `hop_sec`; for each
window take librosa's mel power spectrogram (centred frames, zero padding at the window's
edges), convert it with `power_to_db(ref=max)` so the window is relative to its own loudest
bin (a window's absolute level is lost; `ref: fixed` keeps it), and pad with zeros or crop
to `frames` columns. `reference_log_mel_windows` computes exactly that, one window at a time.

`log_mel_windows` computes the same numbers faster: windows overlap, so it transforms every
STFT frame of the clip once and shares it between windows; only the frames that touch a
window's edge (where that window sees zeros and the clip sees audio) are transformed again.
"""

from __future__ import annotations

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


@lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int) -> scipy.sparse.csr_array:
    """librosa's mel filter bank, sparse: each filter spans a few FFT bins, and a sparse
    product needs no BLAS threads, which clip threads would oversubscribe."""
    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
    return scipy.sparse.csr_array(basis.astype(np.float32))


@lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    return librosa.filters.get_window("hann", n_fft, fftbins=True).astype(np.float32)


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


def fit_scale(windows: np.ndarray) -> tuple[float, float]:
    """Min-max scale of a device, fitted on its training windows."""
    return float(windows.min()), float(windows.max())


def apply_scale(windows: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    low, high = scale
    scaled = np.subtract(windows, low, dtype=np.float32)
    scaled /= high - low + 1e-6
    return scaled


def unscale(scaled: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """The decibels `apply_scale` was given back."""
    low, high = scale
    return (scaled * (high - low + 1e-6) + low).astype(np.float32)


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
