"""Stacking weights: non-negative weights of some models' scores and an intercept, minimising the squared
error or (`AbsoluteWeights`) the absolute error. The blend stage and the backtest fit them alike.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog
from sklearn.linear_model import LinearRegression

from pipeline.errors import KadnError
from pipeline.params import BlendConfig


class AbsoluteWeights:
    """Non-negative weights and a free intercept minimising the sum of absolute errors: with w, b and each
    film's residual split into its positive and negative parts u, v >= 0, minimise sum(u + v) subject to
    preds @ w + b + v - u = y (the usual LP form of least absolute deviations)."""

    def fit(self, preds: np.ndarray, y: np.ndarray) -> AbsoluteWeights:
        n, m = preds.shape
        eye = sp.eye(n, format="csr")
        a_eq = sp.hstack([sp.csr_matrix(preds), sp.csr_matrix(np.ones((n, 1))), eye, -eye], format="csr")
        cost = np.concatenate([np.zeros(m + 1), np.ones(2 * n)])
        bounds = [(0, None)] * m + [(None, None)] + [(0, None)] * (2 * n)
        res = linprog(cost, A_eq=a_eq, b_eq=y, bounds=bounds, method="highs")
        if not res.success:
            raise KadnError(f"blend: the absolute-error weights did not solve ({res.message[:80]})")
        self.coef_, self.intercept_ = res.x[:m], float(res.x[m])
        return self

    def predict(self, preds: np.ndarray) -> np.ndarray:
        return preds @ self.coef_ + self.intercept_


def fit_forward(forward: dict[str, dict[int, np.ndarray]], y: dict[int, np.ndarray], years: list[int],
                blend: BlendConfig) -> LinearRegression | AbsoluteWeights:
    """Stacking weights of `blend.members` fitted on their forward predictions (`forward[member][year]`, each
    year's films scored by a model trained on earlier films only) of `years`, against their scores `y[year]`.

    With `blend.intercept_years` the intercept is then moved so that the residuals of the latest that many of
    `years` centre on zero (their median for the absolute loss, their mean for the squared): how the members
    rank holds from year to year, the level they miss by need not."""
    def stack(of: list[int]) -> np.ndarray:
        return np.concatenate([np.stack([forward[m][year] for m in blend.members], -1) for year in of])

    weights = fit_weights(stack(years), np.concatenate([y[year] for year in years]), blend.loss)
    if blend.intercept_years:
        recent = years[-blend.intercept_years:]
        residual = weights.predict(stack(recent)) - np.concatenate([y[year] for year in recent])
        weights.intercept_ = float(weights.intercept_) - float(
            np.median(residual) if blend.loss == "absolute" else residual.mean())
    return weights


def fit_weights(preds: np.ndarray, y: np.ndarray, loss: str) -> LinearRegression | AbsoluteWeights:
    """Non-negative stacking weights of the columns of `preds` [films, models] (each a model's scores) and an
    intercept, minimising the squared or the absolute error."""
    if loss == "absolute":
        return AbsoluteWeights().fit(preds, y)
    if loss != "squared":
        raise ValueError(f"blend loss must be squared or absolute, not {loss!r}")
    return LinearRegression(positive=True).fit(preds, y)
