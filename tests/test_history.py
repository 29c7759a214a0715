"""Films from before the range as training context (clean.history), and re-releases found by their id."""

from __future__ import annotations

import numpy as np
import pytest

from models.training.cv import cross_validate
from models.training.data import cv_folds, fold_split, kfold
from pipeline.features.clean import apply_rules, to_frame
from pipeline.features.encode import HISTORY, SPLITS, load_encoded, make_split, run_encode
from pipeline.features.rules import old_id_threshold
from pipeline.params import Split, load
from tests.model_support import fast

PARAMS = load("params.yaml")


def rd(date, rerelease=False):
    return {"date": date, "region": "中国大陆", "rerelease": rerelease}


def ids(records):
    return sorted(r["douban_id"] for r in records)


def test_history_keeps_films_before_the_range_only_as_flagged_rows(make_film):
    films = [make_film(1, release_dates=[rd("2006-12-31")]), make_film(2, release_dates=[rd("2007-01-01")]),
             make_film(3, release_dates=[rd("2020-01-01")]), make_film(4, release_dates=[rd("2006-12")]),
             make_film(5, release_dates=[rd("1999")], actors=[])]  # before the range but missing actors
    off_kept, off_removed = apply_rules(films, PARAMS.clean)
    assert ids(off_kept) == [2] and ids(off_removed["out_of_range"]) == [1, 3, 4, 5]
    kept, removed = apply_rules(films, PARAMS.clean.model_copy(update={"history": True}))
    assert ids(kept) == [1, 2, 4]
    assert {r["douban_id"]: r["history"] for r in kept} == {1: True, 2: False, 4: True}
    assert ids(removed["out_of_range"]) == [3] and ids(removed["missing_labels"]) == [5]
    assert to_frame(kept)["history"].tolist() == [True, False, True]


def test_old_ids_with_an_in_range_date_are_rereleases(make_film):
    # Subjects of films first shown in 2005 (two years before the range): ids 100..500 -> median 300.
    films = [make_film(i, release_dates=[rd("2005-05-01")]) for i in (100, 200, 300, 400, 500)]
    films += [make_film(150, "龙猫", release_dates=[rd("2018-12-14")])]   # an old subject, a 2018 date
    films += [make_film(1000 + i, release_dates=[rd("2008-01-01")]) for i in range(20)]
    assert old_id_threshold(films, 2007, 2) == 300
    assert old_id_threshold(films, 2007, 5) is None  # nothing released in 2002: no threshold
    assert old_id_threshold(films[1:], 2007, 2) is None  # four films that year: too few to set one
    info: dict = {}
    kept, removed = apply_rules(films, PARAMS.clean.model_copy(update={"rerelease_id_years": 2}), info)
    assert ids(removed["rerelease"]) == [150] and len(kept) == 20
    assert info == {"rerelease_id_threshold": 300}
    # Ids that do not follow time (half the range's films under the threshold): the rule stands down.
    mixed = films + [make_film(10 + i, release_dates=[rd("2009-01-01")]) for i in range(20)]
    assert old_id_threshold(mixed, 2007, 2) is None
    # Off, the old subject stays.
    assert 150 in ids(apply_rules(films, PARAMS.clean.model_copy(update={"rerelease_id_years": None}))[0])
    # A film from before the range is not judged by the rule: it is history, whatever its id.
    kept, _ = apply_rules(films, PARAMS.clean.model_copy(update={"rerelease_id_years": 2, "history": True}))
    assert ids(kept)[:5] == [100, 200, 300, 400, 500] and 150 not in ids(kept)


def test_history_rows_stay_out_of_the_split_and_leave_the_in_range_split_unchanged(make_film, tmp_path):
    in_range = [make_film(i, release_dates=[rd("2010-01-01")]) for i in range(10, 60)]
    old = [make_film(i, release_dates=[rd("2001-01-01")]) for i in (5, 33, 70)]
    for r in old:
        r["history"] = True
    split = Split(method="random", val=0.1, test=0.2, seed=7)
    plain = make_split(to_frame(in_range), split)
    frame = to_frame(in_range + old)
    labels = make_split(frame, split)
    assert (labels[frame["history"].to_numpy()] == HISTORY).all()
    assert np.array_equal(labels[~frame["history"].to_numpy()], plain)
    table = tmp_path / "movies.parquet"
    frame.to_parquet(table)
    meta = run_encode(table, PARAMS.encode, tmp_path / "enc")
    assert meta["films"] == 50 and meta["history"] == 3 and sum(meta["split"].values()) == 50
    enc = load_encoded(tmp_path / "enc")
    history_rows = np.flatnonzero(~enc.in_range)
    assert sorted(enc.douban_id[history_rows]) == [5, 33, 70]
    assert set(history_rows) <= set(enc.index("train"))
    assert not set(history_rows) & (set(enc.index("val")) | set(enc.index("test")))
    assert len(enc.index("train")) == (enc.split == SPLITS["train"]).sum() + 3


def test_cv_holds_out_in_range_rows_only_and_trains_on_every_history_row():
    in_range = np.ones(30, bool)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(cv_folds(30, 5, 2, 4, in_range), kfold(30, 5, 2, 4)))
    in_range[[0, 7, 8, 29]] = False
    folds = cv_folds(30, 5, 2, 4, in_range)
    inside = np.flatnonzero(in_range)
    held_all = np.concatenate([h for _, h in folds[:5]])
    assert sorted(held_all.tolist()) == inside.tolist()
    for (tr, held), (_, held0) in zip(folds, kfold(len(inside), 5, 2, 4)):
        assert np.array_equal(held, inside[held0])  # the same in-range folds as without history
        assert {0, 7, 8, 29} <= set(tr) and not set(tr) & set(held)
        fit, val = fold_split(tr, 0.2, 3, in_range)
        assert in_range[val].all() and {0, 7, 8, 29} <= set(fit)
        assert sorted(np.concatenate([fit, val]).tolist()) == sorted(tr.tolist())


@pytest.fixture(scope="module")
def history_catalogue(tmp_path_factory):
    """The mock catalogue cleaned with history on: in-range films plus training-only older ones."""
    from crawler.mocksite.catalogue import generate_catalogue

    folder = tmp_path_factory.mktemp("history")
    kept, _ = apply_rules(generate_catalogue(400, 5), PARAMS.clean.model_copy(update={"history": True}))
    assert 0 < sum(r["history"] for r in kept) < len(kept)
    to_frame(kept).to_parquet(folder / "movies.parquet")
    run_encode(folder / "movies.parquet", PARAMS.encode, folder / "enc")
    return folder / "enc"


def test_cross_validation_scores_in_range_films_only(history_catalogue, monkeypatch):
    import models.training.cv as cv

    enc = load_encoded(history_catalogue)
    params = fast()
    common = params.train.common.model_copy(update={"track_records": params.train.common.track_records.model_copy(
        update={"enabled": False})})
    scored: list[np.ndarray] = []
    real = cv.errors

    def spy(pred, y):
        scored.append(np.asarray(y))
        return real(pred, y)

    monkeypatch.setattr(cv, "errors", spy)
    cross_validate("ridge", enc, params.train.ridge, common)
    scored_all = np.sort(np.concatenate(scored))
    assert np.allclose(scored_all, np.sort(enc.rating[enc.in_range]))
