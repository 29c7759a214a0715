"""The baselines a practitioner would try first, on the same multi-hot features as the nets: the training
mean, ridge regression, an SVM (SVR, the paper's Table 1 column) and LightGBM; and CatBoost, which reads the
films' ids as categorical columns instead (`models.training.data.baseline_input`).

Each baseline is tuned at every fit: `train.<baseline>.grid` (small, declared in params.yaml) is searched on
inner folds (or one inner validation split) of the rows it is given to fit on (`train.common.tune`), then the
best setting is refitted on all those rows. Only the fit's own training rows are ever seen, so
cross-validation never tunes on its held-out fold.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.svm import SVR
from tqdm import tqdm

from models.training.data import categorical_columns, inner_split, kfold, latest_split
from pipeline.errors import KadnError
from pipeline.params import Baseline, Tune


def make_baseline(kind: str, cfg: Baseline, seed: int, threads: int):
    if kind == "mean":
        return DummyRegressor(strategy="mean")  # the training mean for every film: the floor to beat
    if kind == "ridge":
        return Ridge(alpha=cfg.alpha)
    if kind == "svm":
        return SVR(kernel=cfg.kernel, C=cfg.C, epsilon=cfg.epsilon, gamma=cfg.gamma)
    if kind == "lightgbm":
        return lgb.LGBMRegressor(
            n_estimators=cfg.n_estimators, learning_rate=cfg.learning_rate, num_leaves=cfg.num_leaves,
            min_child_samples=cfg.min_child_samples, reg_lambda=cfg.reg_lambda,
            colsample_bytree=cfg.colsample_bytree, subsample=cfg.subsample, subsample_freq=1,
            random_state=seed, n_jobs=threads, deterministic=True, force_row_wise=True, verbose=-1)
    if kind == "catboost":
        from catboost import CatBoostRegressor  # only this baseline needs it (start-up time)

        return CatBoostRegressor(iterations=cfg.iterations, learning_rate=cfg.learning_rate, depth=cfg.depth,
                                 l2_leaf_reg=cfg.l2_leaf_reg, loss_function=cfg.loss, random_seed=seed,
                                 thread_count=threads, verbose=0, allow_writing_files=False,
                                 cat_features=categorical_columns() if cfg.inputs == "categorical" else None,
                                 max_ctr_complexity=cfg.max_ctr_complexity)
    raise ValueError(f"unknown baseline {kind!r}")


def fit_baseline(kind: str, X, y: np.ndarray, cfg: Baseline, seed: int, threads: int,
                 weight: np.ndarray | None = None):
    """The baseline fitted on X, y; with `weight`, each row's sample weight (train.common.recency_half_life)."""
    model = make_baseline(kind, cfg, seed, threads)
    return model.fit(X, y) if weight is None else model.fit(X, y, sample_weight=weight)


def grid_settings(cfg: Baseline) -> list[dict]:
    """Every combination of the grid (in declaration order), or [{}] with no grid."""
    return cfg.grid_settings()


def validation_mae(kind: str, cfg: Baseline, X, y: np.ndarray, fit_rows: np.ndarray, val_rows: np.ndarray,
                   seed: int, threads: int, weight: np.ndarray | None = None) -> float:
    """The tuning score: MAE on `val_rows` of a fit on `fit_rows` (both inside the rows being fitted), the fit
    weighted by `weight` if given; the score is a plain MAE, as every reported figure is."""
    model = fit_baseline(kind, _rows(X, fit_rows), y[fit_rows], cfg, seed, threads,
                         None if weight is None else weight[fit_rows])
    return float(np.abs(model.predict(_rows(X, val_rows)) - y[val_rows]).mean())


def _rows(X, rows: np.ndarray):
    return X.iloc[rows] if isinstance(X, pd.DataFrame) else X[rows]


def rbf_gamma(gamma, X) -> float:
    """The number SVR uses for `gamma` on X ("scale": 1 / (features * variance of every entry), as
    scikit-learn computes it, sparse or dense)."""
    if gamma == "scale":
        var = X.multiply(X).mean() - X.mean() ** 2 if sp.issparse(X) else X.var()
        return 1.0 / (X.shape[1] * var) if var != 0 else 1.0
    if gamma == "auto":
        return 1.0 / X.shape[1]
    return float(gamma)


def svr_validation_maes(cfg: Baseline, settings: list[dict], X_fit, y_fit: np.ndarray, X_val,
                        y_val: np.ndarray, w_fit: np.ndarray | None = None) -> Iterator[tuple[int, float]]:
    """(index, `validation_mae`) of every RBF SVR setting, as each is scored, grouped by gamma: each kernel
    matrix is computed once and shared by that gamma's C and epsilon values. libsvm evaluates a sparse RBF
    kernel entry by entry, which is most of a fit's time at thousands of films; a precomputed matrix (one
    sparse product) gives the same solution up to rounding, about 3x faster."""
    by_gamma: dict[float, list[int]] = {}
    for i, s in enumerate(settings):
        by_gamma.setdefault(rbf_gamma(cfg.with_setting(s).gamma, X_fit), []).append(i)
    for gamma, members in by_gamma.items():  # one gamma's matrices in memory at a time
        K, K_val = rbf_kernel(X_fit, gamma=gamma), rbf_kernel(X_val, X_fit, gamma=gamma)
        for i in members:
            c = cfg.with_setting(settings[i])
            model = SVR(kernel="precomputed", C=c.C, epsilon=c.epsilon)
            model = model.fit(K, y_fit) if w_fit is None else model.fit(K, y_fit, sample_weight=w_fit)
            yield i, float(np.abs(model.predict(K_val) - y_val).mean())


def _capped(fit_rows: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """`fit_rows`, or a seeded sample of `limit` of them: the setting is then chosen on fewer rows (the chosen
    one is still refitted on all)."""
    if limit is None or len(fit_rows) <= limit:
        return fit_rows
    return np.sort(np.random.default_rng(seed).choice(fit_rows, limit, replace=False))


def _split_scores(kind: str, cfg: Baseline, settings: list[dict], X, y: np.ndarray, fit_rows: np.ndarray,
                  val_rows: np.ndarray, seed: int, threads: int, weight: np.ndarray | None = None
                  ) -> Iterator[tuple[int, float]]:
    """(index, validation MAE) of every grid setting on one inner split."""
    if kind == "svm" and cfg.kernel == "rbf":
        return svr_validation_maes(cfg, settings, X[fit_rows], y[fit_rows], X[val_rows], y[val_rows],
                                   None if weight is None else weight[fit_rows])
    return ((i, validation_mae(kind, cfg.with_setting(s), X, y, fit_rows, val_rows, seed, threads, weight))
            for i, s in enumerate(settings))


def tune_baseline(kind: str, X, y: np.ndarray, cfg: Baseline, tune: Tune, seed: int, threads: int,
                  inner_X=None, progress: bool = False, weight: np.ndarray | None = None,
                  time: np.ndarray | None = None):
    """(fitted model, chosen setting): grid search on inner validation, then a refit on all the rows.

    Each setting is scored by its mean validation MAE over `tune.folds` inner folds of the rows of X/y (or on
    one inner split holding back `tune.val` of them, with `folds` null). X and y hold the fit's training rows
    only; the held-out rows of a fold never reach this function. `inner_X(fit_positions)`, if given, rebuilds
    the same rows' matrix from the inner fit rows alone: track records read scores, and the inner validation
    rows' scores must not reach the features either. `weight` (one per row of y, or None): every fit's
    sample weights; the settings are still judged by plain validation MAE. `time` (one per row of y): release
    times, which `tune.split: latest` holds back the latest of.
    """
    settings = grid_settings(cfg)
    chosen: dict = {}
    if len(settings) > 1:
        if tune.folds and tune.folds > len(y):
            # `kadn train` checks this before any fit (Common.check_folds); this catches the other fits (backtest).
            raise KadnError(f"train.common.tune.folds is {tune.folds}, but this fit has only {len(y)} films; lower "
                            "it in the params file")
        if tune.folds:
            splits = kfold(len(y), tune.folds, 1, tune.seed)
        elif tune.split == "latest":
            if time is None or not np.isfinite(time).any():
                raise KadnError("train.common.tune.split is latest, but the films have no release dates; set it "
                                "to random")
            splits = [latest_split(time, tune.val)]
        else:
            splits = [inner_split(np.arange(len(y)), tune.val, tune.seed)]
        totals, best = np.zeros(len(settings)), np.inf
        # A bar over the grid, like the nets' bar over epochs: an SVR grid takes minutes on the full data.
        with tqdm(total=len(settings) * len(splits), desc=f"{kind} tuning", file=sys.stderr,
                  disable=not progress, leave=False) as bar:
            for done, (fit_rows, val_rows) in enumerate(splits, 1):
                fit_rows = _capped(fit_rows, getattr(cfg, "tune_rows", None), tune.seed)
                X_tune = X if inner_X is None else inner_X(fit_rows)
                for i, score in _split_scores(kind, cfg, settings, X_tune, y, fit_rows, val_rows, seed, threads,
                                              weight):
                    totals[i] += score
                    bar.update()
                    if done == len(splits):  # on the last split each setting's mean is final once scored
                        best = min(best, totals[i] / done)
                        bar.set_postfix(best_mae=f"{best:.4f}")
        chosen = settings[int(np.argmin(totals))]
    elif settings:
        chosen = settings[0]
    return fit_baseline(kind, X, y, cfg.with_setting(chosen), seed, threads, weight), chosen
