"""The baselines a practitioner would try first, on the same multi-hot features as the nets:
the training mean, ridge regression, an SVM (SVR, the paper's Table 1 column) and LightGBM.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.svm import SVR

BASELINES = ("mean", "ridge", "svm", "lightgbm")


class MeanModel:
    """Predicts the training mean for every film: the floor any model has to beat."""

    def fit(self, X, y):
        self.value_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(X.shape[0], self.value_)


def make_baseline(kind: str, cfg: dict, seed: int, threads: int = 1):
    if kind == "mean":
        return MeanModel()
    if kind == "ridge":
        return Ridge(alpha=cfg["alpha"])
    if kind == "svm":
        return SVR(kernel=cfg["kernel"], C=cfg["C"], epsilon=cfg["epsilon"], gamma=cfg.get("gamma", "scale"))
    if kind == "lightgbm":
        import lightgbm as lgb

        return lgb.LGBMRegressor(
            n_estimators=cfg["n_estimators"], learning_rate=cfg["learning_rate"], num_leaves=cfg["num_leaves"],
            min_child_samples=cfg["min_child_samples"], reg_lambda=cfg["reg_lambda"],
            colsample_bytree=cfg["colsample_bytree"], subsample=cfg["subsample"], subsample_freq=1,
            random_state=seed, n_jobs=threads, deterministic=True, force_row_wise=True, verbose=-1)
    raise ValueError(f"unknown baseline {kind!r}")


def fit_baseline(kind: str, X, y: np.ndarray, cfg: dict, seed: int, threads: int = 1):
    return make_baseline(kind, cfg, seed, threads).fit(X, y)
