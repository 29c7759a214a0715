"""Fitting a baseline: its grid searched on an inner split (or inner folds) of the training rows, then
refitted on all of them (`models.training.baselines.tune_baseline`). `models.training.fit.fit_model` reaches it through
`pipeline.registry` by name, so the nets' stages never import it.
"""

from __future__ import annotations

import numpy as np

from models.training.baselines import tune_baseline
from models.training.data import FitData, baseline_input
from pipeline.params import Baseline, Common


def fit(trained, name: str, cfg: Baseline, common: Common, data: FitData, seed: int, progress: bool = False,
        features=None) -> None:
    """The tuned estimator and its chosen settings into `trained`. `features(source_rows)`, if given, rebuilds
    the inputs from other source rows: the inner tuning split then reads features of its inner fit rows alone."""
    sizes, x, train_rows, inputs = trained.sizes, trained.x, data.train_rows, trained.inputs
    # The baselines' rows (train.common.baseline_rows: the nets' fit rows, or all); their grid is searched on an
    # inner split of them.
    inner = None
    if features is not None:
        def inner(fit_positions):
            return baseline_input(features(train_rows[fit_positions])[0], sizes, train_rows, common.oov, inputs)
    trained.estimator, trained.chosen = tune_baseline(name, baseline_input(x, sizes, train_rows, common.oov, inputs),
                                                      data.y[train_rows],
                                                      cfg, common.tune, seed, common.threads, inner, progress=progress,
                                                      weight=data.train_weights(),
                                                      time=None if data.time is None else data.time[train_rows])


def raw_scores(trained, rows: np.ndarray) -> dict[str, np.ndarray]:
    X = baseline_input(trained.x, trained.sizes, rows, trained.oov, trained.inputs)
    return {"out": np.asarray(trained.estimator.predict(X), np.float64)}
