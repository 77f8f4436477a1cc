"""The tabular family as the stages find it (entry point `pipelines.families: tabular`).

Only names, so that finding the family imports none of its work (pipelines/families.py).
"""

FAMILY = "tabular"  # its name in the registry: tabular_{task}_{model_type}
# which way each model metric is better; the baseline_* figures are references, not judged
METRICS = {"rmse": "lower", "mae": "lower", "r2": "higher", "mape": "lower"}
PARAMS = "pipelines.tabular.params:load_params"
GENERATE = "pipelines.tabular.demo:generate"
STAGES = {
    "train": "pipelines.tabular.stages:Train",
    "evaluate": "pipelines.tabular.stages:Evaluate",
    "deploy": "pipelines.tabular.stages:Deploy",
}
