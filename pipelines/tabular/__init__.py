"""The tabular family (seed 003): per-task regression on a table of features, scope = task."""
