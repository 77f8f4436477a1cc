"""Anomaly detectors, the model types of the acoustic family (`train.model`).

Every detector maps a device's scaled log-Mel windows to one score per window, higher meaning
less like the device's normal; a clip's score is the mean of its windows' scores, the
threshold is fitted on the training windows' scores, and the gate compares two models by
their mean score on the same windows. So the evaluate, deploy and score code is the same for
every type. A fitted detector is a dict of tensors (saved as `model.pth`, loaded with
`weights_only=True` after its sha256 is checked) and its `architecture`, a JSON mapping whose
`type` names the detector.

convae    the seed's convolutional autoencoder (model.py): a window's mean squared
          reconstruction error. Trained by pipelines/engine.py.
dense-ae  the DCASE 2020 Task 2 baseline: a dense autoencoder of each run of 5 frames of the
          window's audio (model.py), scored as convae, trained by pipelines/engine.py.
dense-ae-mahalanobis  the same network, scored as the DCASE 2023 baseline's Mahalanobis
          mode: a window's mean squared error per Mel band, its Mahalanobis distance to the
          band errors of the training windows (covariance fitted after training, Ledoit-Wolf
          shrunk), divided by its mean on held-out normal windows, so two versions compare.
          Per band rather than per input value (stack x n_mels): on the real valve both
          are at chance (bench/README.md), and bands are a fifth of the dimensions for
          the few windows a device has.
Types without a training loop (METHODS) are fitted at once on the normal windows, on rows that
describe a window: for each row kind (a "member") they keep the rows they were fitted on as
references (the most recent MAX_REFERENCES), so a fine-tuning refits on its parent's and the
day's; a member's scores are divided by their spread on normal clips held out of the fit, fold by
fold (so no member dominates), summed, and divided by the sum's mean on those held-out clips: a
score is in multiples of the model's normal, so two versions' scores compare.
twfr-pca  each window's frames pooled per Mel band at both ends of time-weighted pooling
          (TWFR, Guan et al. 2023; `twfr`): the maximum (impulsive faults such as a valve's)
          and the mean (stationary ones such as a bearing's hum), each standardised and scored
          by its reconstruction error through a PCA of the normal windows.
twfr-gmm  each window pooled at `train.twfr_r`, standardised, scored by its Mahalanobis
          distance to the normal windows (one full-covariance Gaussian, Ledoit-Wolf shrunk:
          with tens of windows in n_mels dimensions, more components measured no better).
twfr-knn  the same pooled vectors, standardised, scored by their mean distance to the
          `train.neighbors` nearest normal windows (a window it keeps is not its own neighbour).
frame-gmm each audio frame (a column of the window) scored by a diagonal Gaussian mixture of
          `train.mixtures` components fitted on normal frames, by its negative log-likelihood
          above the least possible; a window's score is its frames' mean. FRAMES_KEPT frames of
          each window, evenly spaced, are its references (4 x MAX_REFERENCES at most).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

# scikit-learn and scipy are imported inside the one function of a type that needs each:
# at the top they cost every stage and every `fleet score` 0.8 s of start-up.
from pipelines.acoustic import model
from pipelines.engine import load_verified
from pipelines.params import TrainParams

# The types are train.model's choices (pipelines/params.py).
TRAINED = ("convae", "dense-ae", "dense-ae-mahalanobis")  # by the training loop (engine.py)
MAHALANOBIS = "mahalanobis."  # the state's keys that are no network weights
FOLDS = 10  # clips held out in turn to measure a member's spread on unseen normal audio
MAX_REFERENCES = 4096  # reference rows a type fitted at once keeps (the most recent)
FRAMES_KEPT = 64  # a window's frames a frame-gmm keeps: nearly as good as all (bench/README.md)
BATCH = 64  # windows scored at once by a type fitted at once (frame rows take memory)


class Detector(Protocol):
    def scores(self, windows: np.ndarray) -> np.ndarray:
        """One score per scaled window (n, n_mels, frames)."""
        ...


@dataclass(frozen=True)
class Autoencoder:
    """convae, dense-ae: a window's mean squared reconstruction error."""

    net: model.Network

    def scores(self, windows: np.ndarray) -> np.ndarray:
        return model.reconstruction_errors(self.net, _tensor(windows)).numpy()


@dataclass(frozen=True)
class Mahalanobis:
    """dense-ae-mahalanobis: the Mahalanobis distance of a window's band errors to those of
    the training windows, in multiples of its mean on held-out normal windows."""

    net: model.DenseAutoencoder
    state: dict[str, torch.Tensor]

    def scores(self, windows: np.ndarray) -> np.ndarray:
        distances = _distances(self.state, band_errors(self.net, windows))
        return distances / float(self.state[f"{MAHALANOBIS}normal"])


@dataclass(frozen=True)
class Method:
    """How a type without a training loop describes, fits and scores windows. `rows`: each
    member's rows of the windows, (n, rows per window, dim); `fit`: a member fitted on normal
    rows (which it is given as its `refs`); `score`: each row's score against a fitted member,
    higher meaning less normal. A window's score is the mean of its rows'."""

    rows: Callable[[np.ndarray, dict[str, Any]], dict[str, np.ndarray]]
    fit: Callable[[np.ndarray, TrainParams], dict[str, np.ndarray]]
    score: Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]
    pooled_at_r: bool = False  # rows pooled at `train.twfr_r`, kept in the architecture
    kept: int = 1  # rows of a window kept as references (evenly spaced)
    share: int = 1  # it keeps share x MAX_REFERENCES reference rows


@dataclass(frozen=True)
class AtOnce:
    """A type of METHODS: its members' weighted scores, summed, in multiples of its normal."""

    method: Method
    architecture: dict[str, Any]
    state: dict[str, torch.Tensor]

    def scores(self, windows: np.ndarray) -> np.ndarray:
        parts = [self._scores(windows[i : i + BATCH]) for i in range(0, len(windows), BATCH)]
        return np.concatenate(parts) if parts else np.zeros(0)

    def _scores(self, windows: np.ndarray) -> np.ndarray:
        total = np.zeros(len(windows))
        for name, rows in self.method.rows(windows, self.architecture).items():
            member = _member(self.state, name)
            total += _window_scores(self.method, member, rows) * float(member["weight"])
        return total / float(self.state["normal"])


def kind(architecture: dict[str, Any]) -> str:
    """The detector type an architecture describes (versions from before types: convae)."""
    return architecture.get("type", "convae")


def build(architecture: dict[str, Any], state: dict[str, torch.Tensor]) -> Detector:
    if kind(architecture) in METHODS:
        return AtOnce(METHODS[kind(architecture)], architecture, state)
    net = network(architecture, state).eval()
    if kind(architecture) == "dense-ae-mahalanobis":
        return Mahalanobis(net, state)
    return Autoencoder(net)


def network(architecture: dict[str, Any], state: dict[str, torch.Tensor]) -> model.Network:
    """A trained detector's network (a type of TRAINED), its weights loaded from `state`."""
    net = model.from_architecture(architecture)
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith(MAHALANOBIS)})
    return net


def load(path: Path, sha256: str, architecture: dict[str, Any]) -> Detector:
    """The detector saved at `path`, its bytes checked against `sha256` before loading."""
    return build(architecture, load_verified(path, sha256))


def twfr(windows: np.ndarray, frames: int, r: float) -> np.ndarray:
    """TWFR time-weighted pooling (Guan et al., ICASSP 2023) of each window's `frames` columns
    of audio, per Mel band: its values in descending order, weighted by r**rank (normalised).
    r = 0 is the maximum, r = 1 the mean; between, the loudest moments count most."""
    descending = -np.sort(-windows[:, :, :frames], axis=2)
    weights = np.power(float(r), np.arange(descending.shape[2]))
    return descending.astype(np.float64) @ (weights / weights.sum())


def new_architecture(model_type: str, frames: int, p: TrainParams) -> dict[str, Any]:
    """A new type of METHODS's architecture: what its rows are made with (a fine-tuning keeps
    its parent's, whose references were made with it)."""
    architecture = {"type": model_type, "frames": frames}
    return architecture | {"r": p.twfr_r} if METHODS[model_type].pooled_at_r else architecture


def fit(
    architecture: dict[str, Any],
    windows: np.ndarray,
    clip_of_window: np.ndarray,
    p: TrainParams,
    parent: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """A type of METHODS fitted on `windows` (and on the references of `parent`, a
    fine-tuning): each member fitted on its references, weighted by its held-out spread."""
    method = METHODS[kind(architecture)]
    rows = {n: _kept(r, method.kept) for n, r in method.rows(windows, architecture).items()}
    per_window = next(iter(rows.values())).shape[1]
    clips = np.repeat(np.asarray(clip_of_window, dtype=np.int64), per_window)
    refs = {n: r.reshape(-1, r.shape[2]) for n, r in rows.items()}
    if parent is not None:
        offset = int(parent["ref_clips"].max()) + 1 if len(parent["ref_clips"]) else 0
        clips = np.concatenate([parent["ref_clips"].numpy(), clips + offset])
        refs = {n: np.vstack([parent[f"{n}.refs"].numpy(), x]) for n, x in refs.items()}
    keep = slice(-MAX_REFERENCES * method.share, None)
    clips = clips[keep]
    state = {"ref_clips": torch.from_numpy(clips)}
    normal = 0.0
    for name, x in refs.items():
        member = _fit_member(method, x[keep], p)
        held = _held_out(method, x[keep], clips, p)
        member["weight"] = np.float64(1.0 / (held.std() + 1e-9) if len(held) > 2 else 1.0)
        normal += float(member["weight"]) * float(held.mean() if len(held) else 1.0)
        state |= {f"{name}.{k}": torch.from_numpy(np.asarray(v)) for k, v in member.items()}
    return state | {"normal": torch.tensor(max(normal, 1e-12), dtype=torch.float64)}


def _kept(rows: np.ndarray, kept: int) -> np.ndarray:
    """`kept` of each window's rows, evenly spaced."""
    return rows[:, np.linspace(0, rows.shape[1] - 1, min(kept, rows.shape[1])).round().astype(int)]


def _fit_member(method: Method, x: np.ndarray, p: TrainParams) -> dict[str, np.ndarray]:
    return method.fit(x, p) | {"refs": x}


def _member(state: dict[str, torch.Tensor], name: str) -> dict[str, np.ndarray]:
    prefix = f"{name}."
    return {k.removeprefix(prefix): v.numpy() for k, v in state.items() if k.startswith(prefix)}


def _window_scores(method: Method, member: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    n, per_window, dim = rows.shape
    return method.score(member, rows.reshape(-1, dim)).reshape(n, per_window).mean(axis=1)


def _held_out(method: Method, x: np.ndarray, clips: np.ndarray, p: TrainParams) -> np.ndarray:
    """The scores of normal clips held out of the fit, fold by fold (none below 3 clips)."""
    ids = np.unique(clips)
    if len(ids) < 3:
        return np.zeros(0)
    fold_of = {c: i % min(FOLDS, len(ids)) for i, c in enumerate(ids)}
    folds = np.array([fold_of[c] for c in clips])
    held: list[float] = []
    for fold in np.unique(folds):
        scores = method.score(_fit_member(method, x[folds != fold], p), x[folds == fold])
        inside = clips[folds == fold]
        held += [float(scores[inside == c].mean()) for c in np.unique(inside)]
    return np.array(held)


def _max_and_mean(windows: np.ndarray, architecture: dict[str, Any]) -> dict[str, np.ndarray]:
    frames = architecture["frames"]
    return {"max": twfr(windows, frames, 0.0)[:, None], "mean": twfr(windows, frames, 1.0)[:, None]}


def _pooled(windows: np.ndarray, architecture: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"twfr": twfr(windows, architecture["frames"], architecture["r"])[:, None]}


def _frames(windows: np.ndarray, architecture: dict[str, Any]) -> dict[str, np.ndarray]:
    audio = windows[:, :, : architecture["frames"]]
    return {"frames": audio.transpose(0, 2, 1).astype(np.float64)}


def _standardiser(x: np.ndarray) -> dict[str, np.ndarray]:
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)  # a constant band (floored at top_db) says nothing
    return {"mean": mean, "std": std}


def _standardised(member: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return (x - member["mean"]) / member["std"]


def _fit_pca(x: np.ndarray, p: TrainParams) -> dict[str, np.ndarray]:
    from sklearn.decomposition import PCA

    standard = _standardiser(x)
    n = max(1, min(p.components, len(x) - 1, x.shape[1]))
    pca = PCA(n_components=n, svd_solver="full").fit(_standardised(standard, x))
    return standard | {"center": pca.mean_, "basis": pca.components_}


def _pca_error(member: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    z = _standardised(member, x) - member["center"]
    rebuilt = (z @ member["basis"].T) @ member["basis"]
    return ((z - rebuilt) ** 2).mean(axis=1)


def _fit_gaussian(x: np.ndarray, p: TrainParams) -> dict[str, np.ndarray]:
    from sklearn.covariance import LedoitWolf

    standard = _standardiser(x)
    covariance = LedoitWolf().fit(_standardised(standard, x))
    return standard | {"location": covariance.location_, "precision": covariance.precision_}


def _gaussian_distance(member: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return mahalanobis(_standardised(member, x), member["location"], member["precision"])


def _fit_neighbours(x: np.ndarray, p: TrainParams) -> dict[str, np.ndarray]:
    return _standardiser(x) | {"neighbors": np.int64(p.neighbors)}


def _neighbour_distance(member: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The mean distance to the k nearest references. A reference itself (distance 0: a
    training window) is scored as if left out, or the threshold, fitted on the training
    windows' scores, would be fitted on zeros. A ball tree's distances are exact, so its own
    is 0."""
    from sklearn.neighbors import NearestNeighbors

    refs = _standardised(member, member["refs"])
    k = int(member["neighbors"])
    search = NearestNeighbors(n_neighbors=min(k + 1, len(refs)), algorithm="ball_tree")
    distances = search.fit(refs).kneighbors(_standardised(member, x))[0]
    if distances.shape[1] == 1:
        return distances[:, 0]
    itself = distances[:, 0] == 0
    return np.where(itself, distances[:, 1:].mean(axis=1), distances[:, :k].mean(axis=1))


def _fit_mixture(x: np.ndarray, p: TrainParams) -> dict[str, np.ndarray]:
    from sklearn.mixture import GaussianMixture

    standard = _standardiser(x)
    mixture = GaussianMixture(min(p.mixtures, len(x)), covariance_type="diag", random_state=0)
    mixture.fit(_standardised(standard, x))
    return standard | {
        "weights": mixture.weights_,
        "means": mixture.means_,
        "precisions": mixture.precisions_cholesky_,  # 1 / sigma, per component and band
    }


def _mixture_surprise(member: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """A row's negative log-likelihood under the mixture above its least possible one (the
    log of the density's upper bound): never negative, so that it can be divided by its mean
    on normal clips."""
    from scipy.special import logsumexp

    z = _standardised(member, x)
    precisions, means = member["precisions"], member["means"]
    # each component's log density at its mean, with its weight
    peaks = np.log(member["weights"]) + np.log(precisions).sum(axis=1)
    peaks -= 0.5 * z.shape[1] * np.log(2 * np.pi)
    squared = (  # each row's squared standardised distance to each component's mean
        (z**2) @ (precisions**2).T
        - 2 * z @ (means * precisions**2).T
        + (means**2 * precisions**2).sum(axis=1)
    )
    return logsumexp(peaks) - logsumexp(peaks - 0.5 * squared, axis=1)


def _tensor(windows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).unsqueeze(1)


def band_errors(net: model.DenseAutoencoder, windows: np.ndarray) -> np.ndarray:
    """Each window's mean squared reconstruction error per Mel band, (n, n_mels)."""
    n_mels = windows.shape[1]
    errors = model.squared_errors(net, _tensor(windows))  # (b, vectors, stack x n_mels)
    rows = [e.reshape(len(e), -1, n_mels).mean(dim=1) for e in errors]
    return torch.cat(rows).double().numpy() if rows else np.zeros((0, n_mels))


def fit_mahalanobis(
    net: model.DenseAutoencoder, fit: np.ndarray, held_out: np.ndarray
) -> dict[str, torch.Tensor]:
    """The scoring state of a trained dense autoencoder: the mean and precision (Ledoit-Wolf
    shrunk: a few windows, many bands) of its band errors on the `fit` windows, and its mean
    distance on the `held_out` normal windows (on `fit` when there are none)."""
    from sklearn.covariance import LedoitWolf

    covariance = LedoitWolf().fit(band_errors(net, fit))
    state = {
        f"{MAHALANOBIS}mean": torch.from_numpy(covariance.location_),
        f"{MAHALANOBIS}precision": torch.from_numpy(covariance.precision_),
    }
    normal = _distances(state, band_errors(net, held_out if len(held_out) else fit)).mean()
    return state | {f"{MAHALANOBIS}normal": torch.tensor(max(normal, 1e-12), dtype=torch.float64)}


def _distances(state: dict[str, torch.Tensor], x: np.ndarray) -> np.ndarray:
    location, precision = (state[f"{MAHALANOBIS}{k}"].numpy() for k in ("mean", "precision"))
    return mahalanobis(x, location, precision)


def mahalanobis(x: np.ndarray, location: np.ndarray, precision: np.ndarray) -> np.ndarray:
    centred = x - location
    return np.sqrt(np.einsum("ij,jk,ik->i", centred, precision, centred).clip(min=0))


# The types fitted at once, each by its rows, fit and score.
METHODS: dict[str, Method] = {
    "twfr-pca": Method(_max_and_mean, _fit_pca, _pca_error),
    "twfr-gmm": Method(_pooled, _fit_gaussian, _gaussian_distance, pooled_at_r=True),
    "twfr-knn": Method(_pooled, _fit_neighbours, _neighbour_distance, pooled_at_r=True),
    "frame-gmm": Method(_frames, _fit_mixture, _mixture_surprise, kept=FRAMES_KEPT, share=4),
}
# The types whose scores are in multiples of their own normal (held-out normal = 1): their
# level is each version's own, so two versions compare by their scores relative to each
# other's on common normal windows, and a day's clip is novel against 1, not against a
# handful of evaluation windows.
SELF_SCALED = (*METHODS, "dense-ae-mahalanobis")

# The `train` keys each type reads: a key another type reads changes nothing for this one,
# which the train stage says (training.unread_settings). Every type reads EVERY_TYPE's.
EVERY_TYPE = ("model", "init_from", "novelty_factor", "torch_threads")
LOOP = (  # the training loop's (training.engine_config)
    "seed",
    "epochs",
    "min_epochs",
    "patience",
    "min_delta",
    "batch_size",
    "lr",
    "grad_clip",
    "device",
    "min_gpu_mem_mb",
    "finetune_epochs",
    "finetune_lr",
)
READS: dict[str, tuple[str, ...]] = {
    "convae": (*LOOP, "channels", "latent_channels"),
    "dense-ae": (*LOOP, "stack_frames", "dense_units"),
    "dense-ae-mahalanobis": (*LOOP, "stack_frames", "dense_units"),
    "twfr-pca": ("components",),
    "twfr-gmm": ("twfr_r",),
    "twfr-knn": ("twfr_r", "neighbors"),
    "frame-gmm": ("mixtures",),
}
