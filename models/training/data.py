"""Feature arrays -> what each kind of model consumes: index tensors for the nets, a sparse multi-hot
matrix for the baselines. Both come from the same `Restricted` arrays, so every model sees the same features.

Two feature sets: `pre_release` (the groups: crew, cast, attributes) and `with_popularity` (plus the dense
popularity inputs of `Dense`: log rater, review and short-comment counts, post-release signals). With
`train.common.track_records.enabled`, both sets also get the track-record columns of `models.training.track_records` as
dense inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from models.training import track_records
from models.training.trend import Trend, release_time
from pipeline import groups, registry
from pipeline.features.encode import OOV, PAD, POPULARITY, Encoded, Restricted
from pipeline.params import Common, TrackRecords

FEATURE_SETS = ("pre_release", "with_popularity")
DENSE = "dense"  # the key of the dense inputs [N, 2k] in a feature dict, when the feature set has any
DENSE_NAMES = POPULARITY + track_records.COLUMNS  # the columns of `dense_values`, by name


@dataclass
class FitData:
    """What one fit reads: features in the model's ids, each group's token frequencies (from the training
    rows), the scores, and which rows it trains on and validates on."""

    x: dict[str, np.ndarray]
    freq: dict[str, np.ndarray]
    y: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    in_range: np.ndarray | None = None  # per film, whether it may validate (films before the range only train)
    time: np.ndarray | None = None  # per film, its release time (models.training.trend.release_time) for the target trend
    weight: np.ndarray | None = None  # per film, its sample weight (train.common.recency_half_life); None: alike

    def rotated(self, seed: int) -> FitData:
        """The same rows split anew: a seeded validation share as large as `val_rows`, in-range rows only."""
        rows = np.union1d(self.train_rows, self.val_rows)
        pool = rows if self.in_range is None else rows[self.in_range[rows]]
        order = np.random.default_rng(seed).permutation(pool)
        val = np.sort(order[: len(self.val_rows)])
        return dataclasses.replace(self, train_rows=np.setdiff1d(rows, val), val_rows=val)

    def train_weights(self) -> np.ndarray | None:
        """The training rows' sample weights scaled to mean 1 (so the models' regularisation and learning
        rate keep their meaning), or None when every film weighs alike."""
        if self.weight is None:
            return None
        w = np.asarray(self.weight, np.float64)[self.train_rows]
        return w / w.mean()

    @property
    def sizes(self) -> dict[str, int]:
        return {g: len(f) for g, f in self.freq.items()}


def restricted_for(enc: Encoded, train_rows: np.ndarray, common: Common, name: str) -> Restricted:
    """Model `name`'s vocabularies of a fit on `train_rows`: `min_count` applied, the year token dropped unless
    `train.common.year_token` (the target trend carries the release time either way, models.training.trend),
    the people groups dropped for a model in `train.common.records_only` (its track records still read them)."""
    people = groups.names("people") if name in common.records_only else ()
    dropped = (() if common.year_token else ("year",)) + people
    return enc.restrict(train_rows, common.min_count, dropped)


def trend_scores(enc: Encoded, fit_rows: np.ndarray, common: Common) -> np.ndarray:
    """The ratings with the target trend a fit on `fit_rows` takes out (models.training.fit.detrended fits the same
    one): what its track records read, so a person's record is measured against each film's year level."""
    if common.trend_years is None or enc.release is None:
        return enc.rating
    time = release_time(enc.release)
    return enc.rating - Trend.fit(time, enc.rating, fit_rows, common.trend_years).offset(time)


def fit_data(enc: Encoded, x: dict[str, np.ndarray], restricted: Restricted, fit_rows: np.ndarray,
             val_rows: np.ndarray) -> FitData:
    """What a fit on `fit_rows` (validated on `val_rows`) reads from the encoded films."""
    time = release_time(enc.release) if enc.release is not None else None
    return FitData(x, restricted.freq, enc.rating.astype(np.float32), fit_rows, val_rows, enc.in_range, time)


def tensors(x: dict[str, np.ndarray], rows: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    out = {g: torch.from_numpy(np.ascontiguousarray(x[g] if rows is None else x[g][rows]).astype(np.int64))
           for g in groups.names()}
    if DENSE in x:
        out[DENSE] = torch.from_numpy(np.ascontiguousarray(x[DENSE] if rows is None else x[DENSE][rows],
                                                           dtype=np.float32))
    return out


def drop_people(xb: dict[str, torch.Tensor], share: float, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A batch with each known person (director, writer, actor: every people group) replaced by OOV with
    probability `share`."""
    out = dict(xb)
    for g in groups.names("people"):
        ids = xb[g]
        hit = (torch.rand(ids.shape, generator=gen) < share) & (ids > OOV)
        out[g] = torch.where(hit, torch.full_like(ids, OOV), ids)
    return out


def dense_columns(popularity: np.ndarray) -> tuple[list[int], list[str]]:
    """Popularity columns known for at least one film, and a note per column dropped for being unknown
    for every film (the shipped snapshot has rater counts but no review or comment counts)."""
    known = np.isfinite(popularity).any(0) if len(popularity) else np.zeros(popularity.shape[1], bool)
    keep = [i for i in range(popularity.shape[1]) if known[i]]
    notes = [f"{POPULARITY[i]} dropped: unknown for every film" for i in range(popularity.shape[1]) if not known[i]]
    return keep, notes


@dataclass
class Dense:
    """Dense inputs: each kept column standardised with its training rows' mean and sd, NaN -> 0, plus a
    missing indicator per column. Fitted on training rows only.

    Kept instead of scikit-learn's SimpleImputer(add_indicator=True) + StandardScaler: the statistics are
    saved as plain JSON in the model folder (`kadn predict` rebuilds the inputs from them without unpickling),
    and the nets and baselines read the same columns."""

    columns: list[int]
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, values: np.ndarray, train_rows: np.ndarray, columns: list[int]) -> Dense:
        mean, std = [], []
        for c in columns:
            v = values[train_rows, c].astype(np.float64)
            v = v[np.isfinite(v)]
            mean.append(float(v.mean()) if len(v) else 0.0)
            sd = float(v.std()) if len(v) > 1 else 0.0
            std.append(sd if sd > 1e-8 else 1.0)
        return cls(list(columns), mean, std)

    @property
    def width(self) -> int:
        return 2 * len(self.columns)

    def transform(self, values: np.ndarray) -> np.ndarray:
        v = values[:, self.columns].astype(np.float64)
        missing = ~np.isfinite(v)
        z = (v - np.asarray(self.mean)) / np.asarray(self.std)
        z[missing] = 0.0
        return np.concatenate([z, missing.astype(np.float64)], 1).astype(np.float32)

    def to_dict(self) -> dict:
        return {"columns": [DENSE_NAMES[c] for c in self.columns], "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict) -> Dense:
        return cls([DENSE_NAMES.index(c) for c in d["columns"]], list(d["mean"]), list(d["std"]))


def dense_values(popularity: np.ndarray, track: np.ndarray | None = None) -> np.ndarray:
    """Every candidate dense column (DENSE_NAMES): popularity, then track records (NaN when not built)."""
    if track is None:
        track = np.full((len(popularity), len(track_records.COLUMNS)), np.nan)
    return np.concatenate([popularity.astype(np.float64), track.astype(np.float64)], 1)


def with_dense(x: dict[str, np.ndarray], popularity: np.ndarray, train_rows: np.ndarray, feature_set: str,
               track: np.ndarray | None = None, track_columns: list[int] | None = None,
               ) -> tuple[dict[str, np.ndarray], Dense | None]:
    """The feature dict of `feature_set`: the groups alone (pre_release), or plus the dense popularity
    inputs (with_popularity), plus the track-record columns when given (`track_columns` of them, default
    all); dense columns are standardised on `train_rows`. None when there is no dense column."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; choose one of {', '.join(FEATURE_SETS)}")
    columns = dense_columns(popularity)[0] if feature_set == "with_popularity" else []
    if track is not None:
        columns += [len(POPULARITY) + i for i in (track_columns or range(len(track_records.COLUMNS)))]
    if not columns:
        return x, None
    values = dense_values(popularity, track)
    dense = Dense.fit(values, train_rows, columns)
    return {**x, DENSE: dense.transform(values)}, dense


def features_from(enc, x_groups: dict[str, np.ndarray], feature_set: str, track_cfg: TrackRecords,
                  scores: np.ndarray | None = None):
    """build(source_rows) -> (feature dict, Dense): dense inputs standardised on, and track records read from,
    `source_rows` alone (their `scores`, default the ratings). Training calls it with its training rows;
    baseline tuning again with its inner fit rows, so no validation score reaches the features it is judged on."""
    fed = track_records.fed(track_cfg)

    def build(source: np.ndarray) -> tuple[dict[str, np.ndarray], Dense | None]:
        track = track_records.for_rows(enc, source, track_cfg, scores) if track_cfg.enabled else None
        return with_dense(x_groups, enc.popularity, source, feature_set, track, fed)

    return build


@dataclass(frozen=True)
class FitInputs:
    """What one fit of a model reads (`fit_inputs`): its FitData, vocabularies, the feature builder a
    baseline's inner tuning split calls again, the dense inputs' statistics, and the rows (and their
    trend-free scores) its vocabularies and track records were read from, which a saved model keeps."""

    data: FitData
    restricted: Restricted
    build: Callable[[np.ndarray], tuple[dict[str, np.ndarray], Dense | None]]
    dense: Dense | None
    sources: np.ndarray
    scores: np.ndarray


def fit_inputs(enc: Encoded, name: str, common: Common, feature_set: str, fit_rows: np.ndarray,
               val_rows: np.ndarray) -> FitInputs:
    """The inputs of model `name` for a fit whose nets learn from `fit_rows` and stop on `val_rows` (the fixed
    split, a CV fold, a backtest year alike): the rows the model learns from (`rows_for`), and its
    vocabularies, track records, target trend and dense statistics read from its sources (`sources_for`)
    alone, never from rows outside the fit."""
    fit_rows, val_rows = rows_for(name, fit_rows, val_rows, common)
    sources = sources_for(fit_rows, val_rows, common)
    restricted = restricted_for(enc, sources, common, name)
    scores = trend_scores(enc, sources, common)
    build = features_from(enc, restricted.x, feature_set, common.track_records, scores)
    x, dense = build(sources)
    return FitInputs(fit_data(enc, x, restricted, fit_rows, val_rows), restricted, build, dense, sources, scores)


def saved_dense(vocab: dict, popularity: np.ndarray, track: np.ndarray | None) -> np.ndarray:
    """A saved model's dense inputs (vocab.json's `dense`), standardised with its training statistics."""
    return Dense.from_dict(vocab["dense"]).transform(dense_values(popularity, track))


def encoded_dense(enc, vocab: dict) -> np.ndarray:
    """A saved model's dense inputs for every encoded film, track records rebuilt from its training films."""
    saved = vocab.get("track")
    return saved_dense(vocab, enc.popularity, track_records.for_encoded(enc, saved) if saved else None)


OOV_MODES = ("count", "indicator", "scaled")


# `inputs: categorical` (CatBoost): a film's first ids of each group (its spec's `slots`), one categorical column
# per slot, read by CatBoost's ordered target statistics instead of one 0/1 column per id.
def categorical_columns() -> list[str]:
    return [f"{s.name}{k}" for s in groups.SPECS for k in range(s.slots)]


def token_table(x: dict[str, np.ndarray], rows: np.ndarray | None = None) -> pd.DataFrame:
    """Per film, its k-th id of each group (PAD where it has fewer) as the integer columns of
    `categorical_columns()`, then the dense inputs (track records, popularity) as float columns."""
    columns = {}
    for s in groups.SPECS:
        g = s.name
        arr = x[g] if rows is None else x[g][rows]
        for k in range(s.slots):
            columns[f"{g}{k}"] = arr[:, k].astype(np.int64) if k < arr.shape[1] else np.full(len(arr), PAD, np.int64)
    if DENSE in x:
        dense = x[DENSE] if rows is None else x[DENSE][rows]
        columns.update({f"dense{j}": dense[:, j].astype(np.float64) for j in range(dense.shape[1])})
    return pd.DataFrame(columns)


def baseline_input(x: dict[str, np.ndarray], sizes: dict[str, int], rows: np.ndarray | None, oov: str, inputs: str):
    """What a baseline is fitted on and scores: the multi-hot matrix, or the token table (`categorical`)."""
    return token_table(x, rows) if inputs == "categorical" else multi_hot(x, sizes, rows, oov)


def multi_hot(x: dict[str, np.ndarray], sizes: dict[str, int], rows: np.ndarray | None, oov: str) -> sp.csr_matrix:
    """One column per (group, model id) except padding. Every column is 0/1 but each group's OOV column,
    which holds a film's number of unknown tokens (`count`, up to the group's length), that number clipped
    to 0/1 (`indicator`), or divided by the group's length (`scaled`): a raw count of 8 unknown actors
    outweighs every 0/1 column in an RBF kernel's distances."""
    if oov not in OOV_MODES:
        raise ValueError(f"oov must be one of {', '.join(OOV_MODES)}, not {oov!r}")
    blocks = []
    for g in groups.names():
        arr = x[g] if rows is None else x[g][rows]
        r, c = np.nonzero(arr != PAD)
        block = sp.csr_matrix((np.ones(len(r), np.float32), (r, arr[r, c])), shape=(len(arr), sizes[g]))
        block.sum_duplicates()  # one stored entry per (film, id): the OOV entry holds the film's count
        at_oov = block.indices == OOV
        if oov == "indicator":
            block.data[at_oov] = 1.0
        elif oov == "scaled":
            block.data[at_oov] /= max(1, arr.shape[1])
        blocks.append(block)
    if DENSE in x:
        blocks.append(sp.csr_matrix(x[DENSE] if rows is None else x[DENSE][rows]))
    return sp.hstack(blocks, format="csr")


def kfold(n: int, folds: int, repeats: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Repeated k-fold over `n` rows: (train positions, held-out positions), identical for every model.

    Kept instead of scikit-learn's RepeatedKFold (which splits alike but draws other folds from the same
    seed): swapping would move every published fold and so every CV figure in metrics.json across commits;
    `cv_folds` also needs the in-range rows alone to be folded."""
    out = []
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        order = rng.permutation(n)
        parts = np.array_split(order, folds)
        for k in range(folds):
            held = np.sort(parts[k])
            out.append((np.sort(np.concatenate([p for j, p in enumerate(parts) if j != k])), held))
    return out


def cv_folds(n: int, folds: int, repeats: int, seed: int, in_range: np.ndarray | None = None
             ) -> list[tuple[np.ndarray, np.ndarray]]:
    """`kfold` over the in-range rows only; every fold's training rows also get every row outside the range
    (films from before it: training context, never held out). Without such rows, exactly `kfold(n, ...)`."""
    if in_range is None or in_range.all():
        return kfold(n, folds, repeats, seed)
    inside, outside = np.flatnonzero(in_range), np.flatnonzero(~in_range)
    return [(np.sort(np.concatenate([inside[tr], outside])), inside[held])
            for tr, held in kfold(len(inside), folds, repeats, seed)]


def fold_split(rows: np.ndarray, val_fraction: float, seed: int, in_range: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """`inner_split` of a fold's training rows, the validation rows drawn from in-range rows only (so early
    stopping judges what is reported); out-of-range rows all go to the fit rows."""
    if in_range is None or in_range[rows].all():
        return inner_split(rows, val_fraction, seed)
    fit, val = inner_split(rows[in_range[rows]], val_fraction, seed)
    return np.sort(np.concatenate([fit, rows[~in_range[rows]]])), val


def rows_for(name: str, fit_rows: np.ndarray, val_rows: np.ndarray, common: Common
             ) -> tuple[np.ndarray, np.ndarray]:
    """Model `name`'s (fit rows, validation rows) of a fit whose nets learn from `fit_rows` and stop on
    `val_rows`: the same for every model, or with `train.common.baseline_rows: all` a baseline's fit rows are
    both (and it has no validation rows: it stops on nothing)."""
    if common.baseline_rows == "all" and name in registry.BASELINES:
        return np.union1d(fit_rows, val_rows), val_rows[:0]
    return fit_rows, val_rows


def sources_for(fit_rows: np.ndarray, val_rows: np.ndarray, common: Common) -> np.ndarray:
    """The rows a fit reads vocabularies, track records and dense statistics from (`train.common.sources`):
    its fit rows, or its validation rows too."""
    return np.union1d(fit_rows, val_rows) if common.sources == "all" else fit_rows


def latest_split(time: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The latest-released `val_fraction` of positions 0..len(time)-1 held back for validation (ties by
    position; a film without a release time always fits): (fit positions, validation positions), sorted."""
    order = np.argsort(np.where(np.isfinite(time), time, -np.inf), kind="stable")
    n_val = max(1, round(len(time) * val_fraction))
    return np.sort(order[:-n_val]), np.sort(order[-n_val:])


def inner_split(rows: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded share of `rows` held back for validation: (fit rows, validation rows), both sorted."""
    order = np.random.default_rng(seed).permutation(rows)
    n_val = max(1, round(len(rows) * val_fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])
