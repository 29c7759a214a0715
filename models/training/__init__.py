"""Fitting models on rows: their inputs, track records, trend, baselines, the fit per kind, cross-validation and interval calibration."""
