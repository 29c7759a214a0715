"""The two age levers: training films' sample weights decaying with their age (`train.common.recency_half_life`)
and earlier films' weights in a person's track record (`train.common.track_records.half_life`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from models.nets.loss import joint_loss
from models.stages.backtest import fit_year
from models.training import track_records as track
from models.training.baselines import tune_baseline
from models.training.data import FitData
from models.training.fit import recency_weighted
from models.training.recency import age_weights, release_year
from pipeline.features.encode import load_encoded
from pipeline.params import RidgeConfig
from tests.model_support import encoded_catalogue, fast, shipped_head
from tests.params_support import shipped

CFG = shipped("train.common.track_records", enabled=True, actors=2, folds=3)


def test_a_films_weight_halves_at_each_half_life_counted_from_the_latest_training_year():
    year = np.array([2014.0, 2012.0, 2010.0, np.nan, 2016.0])
    w = age_weights(year, np.array([0, 1, 2, 3]), 2.0)  # 2016 is not a training row: 2014 is the latest
    assert w[:3].tolist() == [1.0, 0.5, 0.25]
    assert w[3] == 1.0  # unknown year: nothing says it is old
    assert w[4] == 1.0  # after the training years: never above a training film of the last year
    assert age_weights(year, np.array([0, 4]), 4.0)[:3].tolist() == pytest.approx([0.5 ** 0.5, 0.5 ** 1, 0.5 ** 1.5])
    assert release_year(np.array([20140305, 20110000, 0])).tolist()[:2] == [2014.0, 2011.0]
    assert np.isnan(release_year(np.array([0])))[0]


def _data(n=40, seed=0) -> FitData:
    rng = np.random.default_rng(seed)
    x = {"directors": rng.integers(2, 8, (n, 1))}
    time = 2007.5 + np.arange(n) % 8  # 2007..2014, mid-year
    return FitData(x, {}, rng.uniform(4, 9, n).astype(np.float32), np.arange(0, n - 8), np.arange(n - 8, n),
                   None, time)


def test_recency_off_leaves_the_fit_data_as_it_was_and_on_weighs_every_training_row():
    data = _data()
    off = fast().train.common.model_copy(update={"recency_half_life": None})
    assert recency_weighted(data, off) is data and data.train_weights() is None
    on = recency_weighted(data, off.model_copy(update={"recency_half_life": 2.0}))
    w = on.weight
    assert w[np.floor(data.time) == 2014].tolist() == [1.0] * 5 and w[np.floor(data.time) == 2012][0] == 0.5
    scaled = on.train_weights()
    assert len(scaled) == len(data.train_rows) and scaled.mean() == pytest.approx(1.0)
    # The age counts from the fit's last year whatever rows a rotated seed validates on.
    assert np.array_equal(on.rotated(5).weight, w)


@pytest.mark.parametrize("kind", ["regression", "classification", "soft"])
def test_weighted_net_loss_is_each_films_loss_times_its_weight(kind):
    head = shipped_head(kind, 7.0, regression_loss="huber")
    out = torch.randn(4, head.out_dim, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([6.0, 8.5, 7.25, 3.0])
    # Unit weights: the unweighted loss (what every fit computes with the lever off).
    assert head.loss(out, y, torch.ones(4)).item() == pytest.approx(head.loss(out, y).item(), rel=1e-6)
    # A film of weight 0 adds nothing; weight 2 counts the film twice.
    w = torch.tensor([2.0, 0.0, 1.0, 1.0])
    each = torch.stack([head.loss(out[i:i + 1], y[i:i + 1]) for i in range(4)])
    assert head.loss(out, y, w).item() == pytest.approx(float((each * w).mean()), rel=1e-5)
    pair = {"teacher": out, "student": out + 0.5}
    total, parts = joint_loss(pair, y, head, hint_weight=0.3, block_gradient=True, weight=w)
    assert parts["hint"].item() == pytest.approx(0.3 * float(((0.5 ** 2) * out.shape[1] * w).mean()), rel=1e-5)
    assert total.item() == pytest.approx(sum(p.item() for p in parts.values()), rel=1e-6)


def test_weighted_baselines_follow_the_weights_and_unit_weights_change_nothing():
    rng = np.random.default_rng(1)
    X = sp.csr_matrix(rng.integers(0, 2, (80, 12)).astype(np.float64))
    y = X @ rng.normal(0, 1, 12) + rng.normal(0, 0.3, 80) + 6.0
    for cfg in (shipped("train.ridge", alpha=1.0, grid={"alpha": [0.3, 3.0]}),
                shipped("train.svm", kernel="rbf", C=3.0, epsilon=0.1, grid={"C": [1.0, 10.0]})):
        kind = "ridge" if isinstance(cfg, RidgeConfig) else "svm"
        plain, chosen = tune_baseline(kind, X, y, cfg, shipped("train.common.tune", val=0.25, seed=2), 0, 1)
        ones, chosen_ones = tune_baseline(kind, X, y, cfg, shipped("train.common.tune", val=0.25, seed=2), 0, 1,
                                           weight=np.ones(80))
        assert chosen == chosen_ones
        assert np.allclose(plain.predict(X), ones.predict(X), atol=1e-6)
    # The mean baseline with weights: the weighted mean, so recent films pull it their way.
    w = age_weights(np.repeat([2010.0, 2014.0], 40), np.arange(80), 1.0)
    old_new = np.r_[np.full(40, 5.0), np.full(40, 8.0)]
    mean, _ = tune_baseline("mean", X, old_new, fast().train.baseline("mean"), shipped("train.common.tune"), 0, 1,
                            weight=w)
    assert mean.predict(X[:1])[0] == pytest.approx((40 * 5.0 / 16 + 40 * 8.0) / (40 / 16 + 40))


def _one_person(years, scores):
    """Films of one director (id 2) released in `years` with `scores`, and a last film of theirs to describe."""
    n = len(years) + 1
    people = {"directors": np.full((n, 1), 2), "writers": np.zeros((n, 1), np.int64),
              "actors": np.zeros((n, 1), np.int64)}
    y = np.r_[np.asarray(scores, np.float64), 0.0]
    year = np.r_[np.asarray(years, np.float64), max(years) + 1]
    return people, y, year


@pytest.mark.parametrize("time_mode", [False, True])
def test_track_record_decay_weighs_recent_films_more_the_shorter_the_half_life(time_mode):
    # An old run of good films (9) then recent poorer ones (5): the plain record says 7.
    people, y, year = _one_person([2008, 2009, 2014, 2015], [9.0, 9.0, 5.0, 5.0])
    source = np.arange(4)
    release = (year * 10000 + 101).astype(np.int64) if time_mode else None
    means = {}
    for half in (None, 8.0, 2.0, 0.5):
        weight = None if half is None else age_weights(year, source, half)
        feats = track.track_features(people, y, source, CFG, release, weight)
        means[half] = feats[4, 0]
        assert feats[4, 1] == pytest.approx(np.log1p(4))  # the count stays the number of films
    assert means[None] == pytest.approx(7.0)
    assert 7.0 > means[8.0] > means[2.0] > means[0.5] > 5.0
    w = 0.5 ** (np.array([7, 6, 1, 0]) / 2.0)
    assert means[2.0] == pytest.approx(float((w * y[:4]).sum() / w.sum()), rel=1e-6)


def test_track_record_decay_off_is_the_plain_record_and_unit_weights_give_it_too():
    rng = np.random.default_rng(3)
    ids = {"directors": rng.integers(2, 10, (50, 1)), "writers": rng.integers(2, 10, (50, 2)),
           "actors": rng.integers(2, 10, (50, 3))}
    y = rng.uniform(3, 9, 50)
    source = np.arange(35)
    plain = track.track_features(ids, y, source, CFG)
    assert np.allclose(track.track_features(ids, y, source, CFG, None, np.ones(50)), plain, equal_nan=True)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return encoded_catalogue(tmp_path_factory.mktemp("recency"))


def test_saved_models_rebuild_decayed_track_records_exactly(catalogue):
    enc = load_encoded(catalogue)
    train = enc.index("train")
    cfg = CFG.model_copy(update={"half_life": 2.0})
    direct = track.for_rows(enc, train, cfg)
    assert not np.allclose(direct, track.for_rows(enc, train, CFG), equal_nan=True)
    saved = json.loads(json.dumps(track.payload(enc, train, cfg)))  # as vocab.json holds it
    assert len(saved["weight"]) == len(np.unique(train)) and max(saved["weight"]) == 1.0
    assert np.allclose(track.for_encoded(enc, saved), direct, equal_nan=True, atol=1e-5)
    assert "weight" not in track.payload(enc, train, CFG)  # off: the payload is as before the lever


@pytest.mark.parametrize("name", ["ridge", "lightgbm", "kadn"])
def test_recency_weighting_reaches_baselines_and_nets(catalogue, name):
    enc = load_encoded(catalogue)
    year = int(np.max(enc.release // 10000))
    params = fast()

    def half_life(value):
        common = params.train.common.model_copy(update={"recency_half_life": value})
        return params.model_copy(update={"train": params.train.model_copy(update={"common": common})})

    off, on = half_life(None), half_life(1.0)
    off, again, on = (fit_year(enc, p, year, name)[name] for p in (off, off, on))
    assert np.array_equal(off, again)  # seeded: a difference below is the weights'
    assert not np.allclose(off, on)
