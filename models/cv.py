"""Repeated k-fold cross-validation: the snapshot is small, so one split's figures are mostly noise.

Folds run over every film (train, val and test of the fixed split alike) and are identical for every model
(seeded by `train.common.cv.seed`). Inside a fold, the vocabularies are rebuilt from the fold's training
rows, and a seeded slice of those rows is held back as the nets' validation set (early stopping and the
best checkpoint); the baselines are fitted on exactly the nets' training rows.
"""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from models.data import FitData, cv_folds, features_from, fold_split
from models.fit import fit_model
from pipeline.encode import Encoded
from pipeline.params import Baseline, Common, NetConfig


def errors(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    e = np.asarray(pred, np.float64) - np.asarray(y, np.float64)
    return float(np.abs(e).mean()), float(np.sqrt((e**2).mean()))


def cross_validate(name: str, enc: Encoded, cfg: Baseline | NetConfig, common: Common, progress: bool = False,
                   feature_set: str = "pre_release", chosen: list | None = None, oof: dict | None = None) -> dict:
    """{output: {"mae": [per fold], "rmse": [per fold]}} for `name`'s outputs; a baseline's setting chosen
    in each fold (on that fold's training rows) is appended to `chosen`; `oof`, if given, gets per output the
    held-out predictions, [repeats, films] (NaN where a film was not held out: outside the range)."""
    spec = common.cv
    y = enc.rating.astype(np.float32)
    track_cfg = common.track_records
    # Films from before the range (clean.history) only ever train: held-out rows are in-range films.
    folds = cv_folds(len(y), spec.folds, spec.repeats, spec.seed, enc.in_range)
    result: dict[str, dict[str, list[float]]] = {}
    bar = tqdm(folds, desc=f"{name} CV" + ("" if feature_set == "pre_release" else f" ({feature_set})"), file=sys.stderr, disable=not progress, leave=False)
    for k, (train_rows, held_rows) in enumerate(bar):
        fit_rows, val_rows = fold_split(train_rows, spec.val, spec.seed + k, enc.in_range)
        restricted = enc.restrict(fit_rows, common.min_count)
        # Dense inputs (if any) are standardised on the fold's training rows alone, and track records read
        # only their scores (the nets' validation rows and the held-out fold are never a source).
        build = features_from(enc, restricted.x, feature_set, track_cfg)
        x, _ = build(fit_rows)
        trained = fit_model(name, cfg, common, FitData(x, restricted.freq, y, fit_rows, val_rows),
                            common.seed + 1000 * (k + 1), features=build)
        if chosen is not None and trained.estimator is not None:
            chosen.append(trained.chosen)
        for out, pred in trained.scores(held_rows).items():
            if oof is not None:
                oof.setdefault(out, np.full((spec.repeats, len(y)), np.nan))[k // spec.folds, held_rows] = pred
            mae, rmse = errors(pred, y[held_rows])
            result.setdefault(out, {"mae": [], "rmse": []})
            result[out]["mae"].append(round(mae, 6))
            result[out]["rmse"].append(round(rmse, 6))
        primary = "student" if "student" in result else "out"
        bar.set_postfix(mae=f"{np.mean(result[primary]['mae']):.4f}")
    return result
