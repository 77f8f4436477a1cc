"""A real data set in the tabular family's layout: scikit-learn's diabetes study.

442 patients, 10 baseline measurements (age, sex, body-mass index, blood pressure and six
blood serum measures, s1..s6) and a measure of disease progression one year later (Efron et
al., 2004). It ships inside scikit-learn, so it needs no network. Written in its original
units (`scaled=False`): scikit-learn's default copy is already centred and scaled by the
whole set, and the family learns its scale from the training rows only.
"""

from __future__ import annotations

from pathlib import Path

from sklearn.datasets import load_diabetes

from pipelines.tabular.data import write_task

TASK = "diabetes"


def write_diabetes(root: Path) -> Path:
    """Write `{root}/diabetes.npz` (X, y, features), making `root` if missing."""
    study = load_diabetes(scaled=False)
    root.mkdir(parents=True, exist_ok=True)
    return write_task(root / f"{TASK}.npz", study.data, study.target, study.feature_names)
