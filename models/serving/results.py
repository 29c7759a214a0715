"""What the stages share when they read trained models: a model's view of the encoded arrays, rows cut out
of them, and the rounding of cross-validation figures in metrics.json.
"""

from __future__ import annotations

import numpy as np

from models.serving.artifacts import SavedModel, token_ids
from models.training.data import DENSE, encoded_dense
from pipeline import groups
from pipeline.features.encode import OOV, PAD, Encoded


def rows_of(x: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The same arrays cut to `rows`: scoring only the films a figure needs (an SVR scores a film against
    every support vector, thousands at scale)."""
    return {g: v[rows] for g, v in x.items()}


def model_view(enc: Encoded, loaded: SavedModel) -> dict[str, np.ndarray]:
    """The encoded arrays in the model's own ids (tokens it never trained on -> OOV), plus its dense inputs
    (standardised with its own training statistics) when it was trained on some."""
    x = {}
    for g in groups.names():
        remap = np.array([PAD, OOV] + token_ids(loaded.vocab, g, enc.vocab[g]), dtype=np.int32)
        x[g] = remap[enc.x[g]]
    if loaded.vocab.get("dense"):
        x[DENSE] = encoded_dense(enc, loaded.vocab)
    return x


# Errors are kept to 3 decimals: their CV standard deviation is 0.02-0.07, so a fourth decimal is noise
# (and moves with the thread count or the machine), never a finding.
DECIMALS = 3


def cv_summary(cv: dict) -> dict:
    mae, rmse = np.asarray(cv["mae"]), np.asarray(cv["rmse"])
    return {"cv_mae_mean": round(float(mae.mean()), DECIMALS), "cv_mae_std": round(float(mae.std()), DECIMALS),
            "cv_rmse_mean": round(float(rmse.mean()), DECIMALS), "cv_rmse_std": round(float(rmse.std()), DECIMALS),
            "cv_folds": int(len(mae))}
