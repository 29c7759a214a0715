"""Repeated k-fold cross-validation: the snapshot is small, so one split's figures are mostly noise.

Folds run over every film (train, val and test of the fixed split alike) and are identical for every model
(seeded by `train.common.cv.seed`). Inside a fold, the vocabularies are rebuilt from the fold's training
rows, and a seeded slice of those rows is held back as the nets' validation set (early stopping and the
best checkpoint); the baselines are fitted on exactly the nets' training rows.

Every fold draws its randomness from its own seeds alone, so the folds can run in worker processes
(`train.common.workers`, models.training.runtime) in any order and give the same figures as one after the
other.
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.metrics import mean_absolute_error, root_mean_squared_error
from tqdm import tqdm

from models.training.conformal import known_share
from models.training.data import cv_folds, fit_inputs, fold_split
from models.training.fit import fit_model
from models.training.runtime import run_task
from pipeline.features.encode import Encoded
from pipeline.params import Baseline, Common, NetConfig


def errors(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(MAE, RMSE) of `pred` against `y`, in float64."""
    pred, y = np.asarray(pred, np.float64), np.asarray(y, np.float64)
    return float(mean_absolute_error(y, pred)), float(root_mean_squared_error(y, pred))


def cv_fold(enc: Encoded, name: str, cfg: Baseline | NetConfig, common: Common, feature_set: str, k: int,
            train_rows: np.ndarray, held_rows: np.ndarray) -> tuple[dict[str, tuple[float, float]], dict | None, dict]:
    """Fold `k`: ({output: (MAE, RMSE) on the held-out rows}, the baseline's chosen setting or None, the
    held-out rows with their scores and known shares: what intervals are calibrated on, models.training.conformal)."""
    spec = common.cv
    y = enc.rating.astype(np.float32)
    # Dense inputs (if any) are standardised on the fold's training rows alone, and track records read only
    # their scores: the held-out fold is never a source.
    inputs = fit_inputs(enc, name, common, feature_set, *fold_split(train_rows, spec.val, spec.seed + k, enc.in_range))
    trained = fit_model(name, cfg, common, inputs.data, common.seed + 1000 * (k + 1), features=inputs.build)
    preds = trained.scores(held_rows)
    scores = {out: errors(pred, y[held_rows]) for out, pred in preds.items()}
    held = {"repeat": k // spec.folds, "fold": k % spec.folds, "rows": held_rows,
            "known": known_share(inputs.restricted.x, held_rows), "pred": preds}
    return scores, (trained.chosen if trained.estimator is not None else None), held


def submit_folds(pool, enc: Encoded, name: str, cfg: Baseline | NetConfig, common: Common,
                 feature_set: str) -> list:
    spec = common.cv
    # Films from before the range (clean.history) only ever train: held-out rows are in-range films.
    folds = cv_folds(len(enc.rating), spec.folds, spec.repeats, spec.seed, enc.in_range)
    return [run_task(pool, enc, cv_fold, name, cfg, common, feature_set, k, tr, held)
            for k, (tr, held) in enumerate(folds)]


def gather_folds(tasks: list, name: str, feature_set: str = "pre_release", progress: bool = False,
                 chosen: list | None = None, held: list | None = None) -> dict:
    """The folds' figures in fold order, whichever finished first; each fold's held-out scores go to `held`."""
    result: dict[str, dict[str, list[float]]] = {}
    bar = tqdm(tasks, desc=f"{name} CV" + ("" if feature_set == "pre_release" else f" ({feature_set})"),
               file=sys.stderr, disable=not progress, leave=False)
    for task in bar:
        scores, setting, fold_held = task.result()
        if chosen is not None and setting is not None:
            chosen.append(setting)
        if held is not None:
            held.append(fold_held)
        for out, (mae, rmse) in scores.items():
            result.setdefault(out, {"mae": [], "rmse": []})
            result[out]["mae"].append(round(mae, 6))
            result[out]["rmse"].append(round(rmse, 6))
        primary = "student" if "student" in result else "out"
        bar.set_postfix(mae=f"{np.mean(result[primary]['mae']):.4f}")
    return result


def out_of_fold(held: list[dict], n_films: int, repeats: int) -> dict[str, np.ndarray]:
    """Per output, the folds' held-out predictions as [repeats, films] (NaN where a film was never held out:
    films before the range only ever train): what the blend is fitted on."""
    oof: dict[str, np.ndarray] = {}
    for fold in held:
        for out, pred in fold["pred"].items():
            oof.setdefault(out, np.full((repeats, n_films), np.nan))[fold["repeat"], fold["rows"]] = pred
    return oof


def cross_validate(name: str, enc: Encoded, cfg: Baseline | NetConfig, common: Common, progress: bool = False,
                   feature_set: str = "pre_release", chosen: list | None = None, pool=None,
                   held: list | None = None, oof: dict | None = None) -> dict:
    """{output: {"mae": [per fold], "rmse": [per fold]}} for `name`'s outputs; a baseline's setting chosen
    in each fold (on that fold's training rows) is appended to `chosen`, each fold's held-out scores to
    `held`. With `pool` (models.training.runtime), the folds run in its worker processes."""
    held = [] if held is None and oof is not None else held
    result = gather_folds(submit_folds(pool, enc, name, cfg, common, feature_set), name, feature_set, progress,
                          chosen, held)
    if oof is not None:
        oof.update(out_of_fold(held, len(enc.rating), common.cv.repeats))
    return result
