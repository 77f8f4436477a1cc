"""The tabular family's demo data (stage tabular-generate): the synthetic tasks Q1..Q5 and,
with `tabular.generate.diabetes`, scikit-learn's diabetes study, in the family's layout."""

from __future__ import annotations

from pathlib import Path

from pipelines.tabular import synth
from pipelines.tabular.params import TabularParams


def generate(root: Path, params: TabularParams) -> dict[str, str]:
    """Write every demo task under `root`; what was written, per task."""
    g = params.generate
    written = synth.generate(root, g.subjects, g.seed)
    if g.diabetes:
        from pipelines.tabular.diabetes import TASK, write_diabetes  # scikit-learn: 1-2 s

        written[TASK] = write_diabetes(root)
    return {task: str(path) for task, path in written.items()}
