"""The README's "Training is bitwise reproducible on the CPU for the same params,
`train.torch_threads` included: a network trained on another number of threads sums in
another order and ends with other weights", through the train stage."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from pipelines import fleet
from pipelines.acoustic import training
from pipelines.params import parse_params
from tests import tiny_fleet
from tests.pipeline_repo import TINY, merge


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_fleet.build(tmp_path_factory.mktemp("reproducible")).features


@pytest.fixture(autouse=True)
def _threads_kept() -> Iterator[None]:
    """The stage sets this process's torch threads; the other tests run with their own."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("model", ["convae", "dense-ae-mahalanobis"])
def test_a_network_trained_again_on_as_many_threads_has_the_same_bits(
    features: Path, tmp_path: Path, model: str
) -> None:
    def weights(threads: int, out: str) -> str:
        """The sha256 of the model the train stage writes, on `threads` threads."""
        changes = {"model": model, "torch_threads": threads, "dense_units": [16, 4]}
        params = parse_params(merge(TINY, {"train": changes}))
        jobs = [job for job in training.plan(features, params) if job.device == "A-1"]
        outcome = fleet.run_stage(tmp_path / out, jobs, training.build, 1, "train")["A-1"]
        assert outcome.status == "built", outcome.error
        return hashlib.sha256((tmp_path / out / "A-1" / "model.pth").read_bytes()).hexdigest()

    two = weights(2, "two")
    assert weights(2, "again") == two
    # so the param reaches the training: were it ignored, the test above would hold trivially
    assert weights(1, "one") != two
