"""A deterministic synthetic study of the seed's shape: the tabular family's demo data.

Subjects do five tasks, Q1..Q5, in a headset that tracks their eyes; each task's ten gaze
features (FEATURES) predict that task's sub-score. A subject has three traits (cognition,
arousal, motor speed) that every task's features reflect, so the features are correlated
within a task and across tasks, as real measurements are; each task adds its own noise.
A feature is `center * exp(spread * z)` (positive, skewed like durations and rates) or, for
the recurrence measures that are fractions, a logistic of z, where z is the feature's
standardised deviation.

Each target is a function of its task's z plus noise, with its own share of signal and
noise (the R² a model that knew the function would reach, in brackets), two linear and
three not, so that an MLP has something to find:

    Q1  linear in fixation duration, latency and the recurrence measures     (0.95)
    Q2  linear in six features, the noisiest                                 (0.91)
    Q3  saturating (tanh) in saccade amplitude, plus pupil size              (0.97)
    Q4  a hinge in fixation count, minus blink rate                          (0.96)
    Q5  a sine in saccade velocity, plus recurrence rate                     (0.97)

The scores are in sub-score-like units, not rounded or clipped to a range, so the noise is
the only part no model can learn. Written as `{root}/Q{i}.npz` (X, y, features) through
data.write_task: the same seed gives the same bytes. The traits are one random stream and
each task another, so a task's rows do not depend on which other tasks are made.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipelines.tabular.data import write_task

FEATURES = (
    "fixation_duration_ms",
    "fixation_count",
    "saccade_amplitude_deg",
    "saccade_peak_velocity_deg_s",
    "saccade_latency_ms",
    "blink_rate_per_min",
    "pupil_diameter_mm",
    "gaze_dispersion_deg",
    "recurrence_rate",
    "determinism",
)
DEFAULT_SUBJECTS = 400
# Each feature's typical value, its spread (log scale, or logit scale for the fractions) and
# its loadings on the traits (cognition, arousal, motor speed).
_CENTER = np.array([250.0, 40.0, 4.0, 300.0, 200.0, 15.0, 4.0, 2.0, 0.3, 0.6])
_SPREAD = np.array([0.25, 0.3, 0.3, 0.2, 0.2, 0.4, 0.15, 0.3, 0.5, 0.5])
_FRACTIONS = [FEATURES.index("recurrence_rate"), FEATURES.index("determinism")]
_LOADINGS = np.array(
    [
        [-0.6, 0.0, -0.3],
        [0.5, 0.3, 0.0],
        [0.3, 0.0, 0.5],
        [0.0, 0.3, 0.6],
        [-0.5, -0.2, -0.4],
        [0.0, -0.6, 0.0],
        [0.2, 0.6, 0.0],
        [-0.3, 0.0, 0.3],
        [0.5, 0.0, 0.0],
        [0.4, 0.0, 0.2],
    ]
)
_OWN_NOISE = 0.6  # each feature's own variation in a task, beside the traits


def _q1(f: dict[str, np.ndarray]) -> np.ndarray:
    return (
        -0.6 * f["fixation_duration_ms"]
        - 0.5 * f["saccade_latency_ms"]
        + 0.4 * f["recurrence_rate"]
        + 0.3 * f["determinism"]
    )


def _q2(f: dict[str, np.ndarray]) -> np.ndarray:
    return (
        -0.4 * f["fixation_duration_ms"]
        + 0.3 * f["fixation_count"]
        + 0.3 * f["saccade_amplitude_deg"]
        - 0.3 * f["saccade_latency_ms"]
        - 0.3 * f["gaze_dispersion_deg"]
        + 0.3 * f["determinism"]
    )


def _q3(f: dict[str, np.ndarray]) -> np.ndarray:
    return np.tanh(1.5 * f["saccade_amplitude_deg"]) + 0.4 * f["pupil_diameter_mm"]


def _q4(f: dict[str, np.ndarray]) -> np.ndarray:
    return 1.2 * np.maximum(f["fixation_count"], 0.0) - 0.5 * f["blink_rate_per_min"]


def _q5(f: dict[str, np.ndarray]) -> np.ndarray:
    return np.sin(1.5 * f["saccade_peak_velocity_deg_s"]) + 0.4 * f["recurrence_rate"]


class _Score(NamedTuple):
    signal: Callable[[dict[str, np.ndarray]], np.ndarray]  # of each feature's z
    noise: float  # standard deviation of the noise added to the signal
    center: float  # the score is center + scale * (signal + noise)
    scale: float


SCORES = {
    "Q1": _Score(_q1, noise=0.3, center=3.5, scale=1.0),
    "Q2": _Score(_q2, noise=0.4, center=4.0, scale=0.8),
    "Q3": _Score(_q3, noise=0.15, center=2.0, scale=0.6),
    "Q4": _Score(_q4, noise=0.2, center=3.0, scale=1.0),
    "Q5": _Score(_q5, noise=0.15, center=1.5, scale=0.7),
}
TASKS = tuple(SCORES)
_TRAITS, _TASK = 0, 1  # key groups of the random streams


def task_table(
    task: str, subjects: int = DEFAULT_SUBJECTS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One task's features (subjects x FEATURES, in their units) and scores."""
    traits = np.random.default_rng([seed, _TRAITS]).standard_normal((subjects, 3))
    rng = np.random.default_rng([seed, _TASK, TASKS.index(task)])
    z = traits @ _LOADINGS.T + _OWN_NOISE * rng.standard_normal((subjects, len(FEATURES)))
    z /= np.sqrt((_LOADINGS**2).sum(axis=1) + _OWN_NOISE**2)  # each feature's z: unit variance
    X = _CENTER * np.exp(_SPREAD * z)
    fractions = _CENTER[_FRACTIONS]
    X[:, _FRACTIONS] = _logistic(
        np.log(fractions / (1 - fractions)) + _SPREAD[_FRACTIONS] * z[:, _FRACTIONS]
    )
    score = SCORES[task]
    signal = score.signal(dict(zip(FEATURES, z.T, strict=True)))
    y = score.center + score.scale * (signal + score.noise * rng.standard_normal(subjects))
    return X, y


def generate(root: Path, subjects: int = DEFAULT_SUBJECTS, seed: int = 0) -> dict[str, Path]:
    """Write every task's table under `root` (made if missing); other files are left alone."""
    root.mkdir(parents=True, exist_ok=True)
    return {
        task: write_task(root / f"{task}.npz", *task_table(task, subjects, seed), FEATURES)
        for task in TASKS
    }


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
