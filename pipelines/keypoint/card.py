"""The keypoint family as the stages find it (entry point `pipelines.families: keypoint`).

Only names, so that finding the family imports none of its work (pipelines/families.py).
"""

FAMILY = "keypoint"  # its name in the registry: keypoint_{site}_{model_type}
# which way each metric is better (seed 002's validator; pixels of the captcha, hits in %)
METRICS = {
    "hit_le_5px": "higher",
    "mae_px": "lower",
    "rmse_px": "lower",
    "hit_le_1px": "higher",
    "hit_le_2px": "higher",
    "gap_mae": "lower",
    "slider_mae": "lower",
}
PARAMS = "pipelines.keypoint.params:load_params"
GENERATE = "pipelines.keypoint.demo:generate"
SCORE = "pipelines.keypoint.bundle:score"  # captcha images located with a bundle (`fleet score`)
DRAWS = True  # its score also takes `draw_to`, a folder for each image with its points drawn
FOLDER = "keypoint"  # its pipeline (dvc.yaml, params.yaml, outputs), from the project's root
SCOPE = "site"  # what one of its models is for: one captcha source
# each scope's figures of a run, a file git commits with every experiment (`fleet compare`)
FIGURES = "eval/sites.json"
TITLES = {
    "hit_le_5px": "hit@5",
    "mae_px": "MAE px",
    "rmse_px": "RMSE px",
    "hit_le_1px": "hit@1",
    "hit_le_2px": "hit@2",
    "gap_mae": "gap MAE",
    "slider_mae": "slider MAE",
}
TABLE = "pipelines.keypoint.views:table"  # `fleet table`'s rows of it
STATUS = "pipelines.keypoint.views:status"  # `fleet status`'s sources of it
STAGES = {
    "train": "pipelines.keypoint.stages:Train",
    "evaluate": "pipelines.keypoint.stages:Evaluate",
    "deploy": "pipelines.keypoint.stages:Deploy",
    "report": "pipelines.keypoint.report:Report",
}
