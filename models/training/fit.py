"""Fitting one model on some rows: `fit_model` for any of them. The fitting itself is its kind's module
(`models.training.fit_baseline`: a baseline tuned on an inner split; `models.training.fit_net`: one net per seed), imported by
name through `pipeline.registry`, so a stage loads only its own model's kind.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from models.training.data import FitData
from models.training.recency import age_weights
from models.training.trend import Trend
from pipeline import registry
from pipeline.params import Baseline, Common, NetConfig


@dataclass
class FittedModel:
    """One model fitted on some rows: scores held-out rows per output; `fits` holds one net per seed."""

    name: str
    x: dict
    sizes: dict
    oov: str  # how a baseline's OOV columns are encoded (train.common.oov)
    inputs: str  # multi_hot or a token table (models.training.data.baseline_input)
    estimator: object | None = None
    fits: list = field(default_factory=list)
    train_s: float = 0.0
    chosen: dict = field(default_factory=dict)  # a baseline's hyper-parameters picked on inner validation
    trend: Trend = Trend()  # the target trend it was fitted under (models.training.trend), added back to its scores
    time: np.ndarray | None = None  # every film's release time, which the trend reads

    def scores(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        raw = registry.kind_module(self.name, "fit").raw_scores(self, rows)
        if self.time is None:
            return raw
        offset = self.trend.offset(self.time[rows])
        return {k: np.asarray(v, np.float64) + offset for k, v in raw.items()}


def detrended(data: FitData, common: Common) -> tuple[FitData, Trend]:
    """`data` with the target trend (`train.common.trend_years`) fitted on its training rows and taken out of
    every score, and that trend (flat when off or without release times)."""
    if common.trend_years is None or data.time is None:
        return data, Trend()
    trend = Trend.fit(data.time, data.y, data.train_rows, common.trend_years)
    y = (data.y - trend.offset(data.time)).astype(data.y.dtype)
    return dataclasses.replace(data, y=y), trend


def recency_weighted(data: FitData, common: Common) -> FitData:
    """`data` with each film's sample weight (`train.common.recency_half_life`; models.training.recency),
    its age counted from the latest year among the fit's training and validation rows, so every seed of a
    rotated ensemble weighs a film alike; unchanged when off or without release times."""
    if common.recency_half_life is None or data.time is None:
        return data
    rows = np.union1d(data.train_rows, data.val_rows)
    return dataclasses.replace(data, weight=age_weights(np.floor(data.time), rows, common.recency_half_life))


def fit_model(name: str, cfg: Baseline | NetConfig, common: Common, data: FitData, seed: int,
              progress: bool = False, features=None) -> FittedModel:
    """`features(source_rows)` (models.training.data.features_from), if given, rebuilds `data.x` from other source rows:
    a baseline's inner tuning split then gets features read from its inner fit rows alone."""
    sizes, x = data.sizes, data.x
    inputs = getattr(cfg, "inputs", "multi_hot")  # only CatBoost has a choice; the other baselines read multi-hot
    data, trend = detrended(data, common)
    data = recency_weighted(data, common)
    trained = FittedModel(name, x, sizes, oov=common.oov, inputs=inputs, trend=trend,
                          time=data.time if common.trend_years is not None else None)
    started = time.perf_counter()
    registry.kind_module(name, "fit").fit(trained, name, cfg, common, data, seed, progress, features)
    trained.train_s = time.perf_counter() - started
    return trained
