"""The acoustic family: one anomaly detector per machine, trained on its normal sound."""

FAMILY = "acoustic"  # its name in the registry: acoustic_{device}_{model_type}
