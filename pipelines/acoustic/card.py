"""The acoustic family as the stages find it (entry point `pipelines.families: acoustic`).

Only names: each stage imports the one module of its own work, so that a stage process
pays for no other stage's imports and DVC's deps of each stage stay its own.
"""

from pipelines.acoustic import FAMILY

__all__ = [
    "FAMILY",
    "FIGURES",
    "FOLDER",
    "GENERATE",
    "METRICS",
    "PARAMS",
    "SCOPE",
    "SCORE",
    "STAGES",
    "STATUS",
    "TABLE",
    "TITLES",
]

METRICS = {"auc": "higher", "pauc": "higher"}  # on each device's labelled test clips
PARAMS = "pipelines.params:load_params"
GENERATE = "pipelines.acoustic.synth:generate_demo"
SCORE = "pipelines.acoustic.bundle:score"  # new input scored with a bundle (`fleet score`)
FOLDER = "."  # its pipeline (dvc.yaml, params.yaml, outputs), from the project's root
SCOPE = "device"  # what one of its models is for
# each scope's figures of a run, a file git commits with every experiment (`fleet compare`)
FIGURES = "eval/plots/devices.json"
TITLES = {"auc": "AUC", "pauc": "pAUC"}  # its metrics' column titles
TABLE = "pipelines.acoustic.views:table"  # `fleet table`'s rows of it
STATUS = "pipelines.acoustic.views:status"  # `fleet status`'s sources of it
STAGES = {
    "extract": "pipelines.acoustic.extraction:Stage",
    "train": "pipelines.acoustic.training:Stage",
    "evaluate": "pipelines.acoustic.evaluation:Stage",
    "deploy": "pipelines.acoustic.deployment:Stage",
}
