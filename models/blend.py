"""A stacked blend: the K-ADN student and the strongest baselines combined with non-negative weights (plus
an intercept) fitted on their out-of-fold predictions, so no weight is fitted on a prediction a model
made for a film it trained on. Reported as its own row (`blend`), never in place of a model's own row.

Its cross-validated error is cross-fitted on the same folds as the models': the weights scoring fold k
are fitted on the other folds' held-out predictions of the same repeat, never on fold k's scores.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LinearRegression

from models.cv import errors


def fit_weights(preds: np.ndarray, y: np.ndarray) -> LinearRegression:
    """Non-negative stacking weights of the columns of `preds` [films, models] (each a model's scores)."""
    return LinearRegression(positive=True).fit(preds, y)


def stacked(oof: dict[str, np.ndarray], members: list[str]) -> np.ndarray:
    """[repeats, films, members]: each member's out-of-fold predictions side by side."""
    return np.stack([oof[m] for m in members], -1)


def cross_fitted(oof: dict[str, np.ndarray], members: list[str], y: np.ndarray,
                 folds: list[tuple[np.ndarray, np.ndarray]], per_repeat: int) -> dict[str, list[float]]:
    """{"mae": [per fold], "rmse": [per fold]} of the blend on `folds` (those the members were
    cross-validated on, `per_repeat` of them per repeat), each fold scored with weights fitted on the
    other folds' held-out predictions of its repeat."""
    preds = stacked(oof, members)
    out: dict[str, list[float]] = {"mae": [], "rmse": []}
    for k, (_, held) in enumerate(folds):
        p = preds[k // per_repeat]
        others = np.setdiff1d(np.flatnonzero(np.isfinite(p).all(1)), held)
        model = fit_weights(p[others], y[others])
        mae, rmse = errors(model.predict(p[held]), y[held])
        out["mae"].append(round(mae, 6))
        out["rmse"].append(round(rmse, 6))
    return out
