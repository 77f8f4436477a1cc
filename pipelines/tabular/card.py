"""The tabular family as the stages find it (entry point `pipelines.families: tabular`).

Only names, so that finding the family imports none of its work (pipelines/families.py).
"""

FAMILY = "tabular"  # its name in the registry: tabular_{task}_{model_type}
# which way each model metric is better; the baseline_* figures are references, not judged
METRICS = {"rmse": "lower", "mae": "lower", "r2": "higher", "mape": "lower"}
PARAMS = "pipelines.tabular.params:load_params"
GENERATE = "pipelines.tabular.demo:generate"
SCORE = "pipelines.tabular.bundle:score"  # new input scored with a bundle (`fleet score`)
FOLDER = "tabular"  # its pipeline (dvc.yaml, params.yaml, outputs), from the project's root
SCOPE = "task"  # what one of its models is for
# each scope's figures of a run, a file git commits with every experiment (`fleet compare`)
FIGURES = "eval/tasks.json"
TITLES = {"rmse": "RMSE", "mae": "MAE", "r2": "R²", "mape": "MAPE"}  # its metrics' column titles
TABLE = "pipelines.tabular.views:table"  # `fleet table`'s rows of it
STATUS = "pipelines.tabular.views:status"  # `fleet status`'s sources of it
STAGES = {
    "train": "pipelines.tabular.stages:Train",
    "evaluate": "pipelines.tabular.stages:Evaluate",
    "deploy": "pipelines.tabular.stages:Deploy",
    "report": "pipelines.tabular.report:Report",
}
