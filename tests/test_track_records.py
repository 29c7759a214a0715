"""Track-record features: a film's features never read its own score, a held-out score, a score
from its own out-of-fold part, or (time split) a later release; saved models rebuild them exactly."""

import json
import re
import shutil

import numpy as np
import pytest

from models.stages.train import run_train
from models.training import track_records as track
from models.training.data import DENSE, with_dense
from pipeline.errors import KadnError
from pipeline.features.encode import load_encoded, release_int
from tests.model_support import encoded_catalogue, fast, fast_params
from tests.params_support import shipped

CFG = shipped("train.common.track_records", enabled=True, actors=2, folds=3)


def toy(n=60, people=12, seed=0):
    """Random films over a small cast, so most people have several films; ids start at 2 (0 pad, 1 OOV)."""
    rng = np.random.default_rng(seed)
    ids = {"directors": rng.integers(2, 2 + people, (n, 1)), "writers": rng.integers(2, 2 + people, (n, 2)),
           "actors": rng.integers(2, 2 + people, (n, 4))}
    ids["writers"][::4, 1] = 0  # padding
    ids["directors"][::7, 0] = 0  # no director: no history
    y = rng.uniform(3, 9, n)
    release = np.array([20070101 + 10000 * (i % 7) + 100 * (i % 3) for i in range(n)])  # many same-day ties
    release[::9] = release[::9] // 10000 * 10000  # year only: 2011 -> 20110000
    return ids, y, release


def naive(ids, y, sources, target, actors):
    """Pooled mean and count over (person, film) pairs, films in `sources`, the target excluded."""
    out = []
    for role in track.ROLES:
        mine = {p for p in (ids[role][target, :actors] if role == "actors" else ids[role][target]) if p > 1}
        pairs = [y[f] for f in sources if f != target for p in mine if p in set(ids[role][f]) - {0, 1}]
        out += [np.mean(pairs) if pairs else np.nan, len(pairs)]
    return np.array(out)


def test_features_are_pooled_means_and_counts_from_source_rows():
    ids, y, _ = toy()
    source = np.arange(40)
    feats = track.track_features(ids, y, source, CFG)
    folds = track.oof_folds(source, CFG.folds, CFG.seed)
    for i in range(len(y)):
        fold = next((f for f in folds if i in f), None)
        sources = np.setdiff1d(source, fold) if fold is not None else source
        expect = naive(ids, y, sources, i, CFG.actors)
        scale = CFG.folds / (CFG.folds - 1) if fold is not None else 1.0
        assert np.allclose(feats[i, 0::2], expect[0::2], equal_nan=True), i
        assert np.allclose(feats[i, 1::2], np.log1p(expect[1::2] * scale)), i
    assert np.isnan(feats[::7, 0]).all() and (feats[::7, 1] == 0).all()  # no director: NaN mean, zero count


@pytest.mark.parametrize("time_split", [False, True])
def test_own_score_and_held_out_scores_never_reach_any_feature(time_split):
    ids, y, release = toy()
    source = np.arange(0, 60, 2)
    release = release if time_split else None
    base = track.track_features(ids, y, source, CFG, release)
    for i in range(len(y)):  # a film's own score: its own features do not move
        y2 = y.copy()
        y2[i] += 3.0
        assert np.array_equal(track.track_features(ids, y2, source, CFG, release)[i], base[i], equal_nan=True)
    y3 = y.copy()
    y3[1::2] = np.random.default_rng(1).uniform(0, 10, 30)  # every non-source (val/test) score scrambled
    assert np.array_equal(track.track_features(ids, y3, source, CFG, release), base, equal_nan=True)
    y4 = y.copy()
    y4[source] += 1.0  # the source scores are read
    assert not np.array_equal(track.track_features(ids, y4, source, CFG, release), base, equal_nan=True)


def test_training_films_get_out_of_fold_features():
    ids, y, _ = toy()
    source = np.arange(45)
    base = track.track_features(ids, y, source, CFG)
    folds = track.oof_folds(source, CFG.folds, CFG.seed)
    assert sorted(np.concatenate(folds).tolist()) == source.tolist()
    for fold in folds:
        y2 = y.copy()
        y2[fold] = 0.0  # the fold's own scores: none of its films' features move
        moved = track.track_features(ids, y2, source, CFG)
        assert np.array_equal(moved[fold], base[fold], equal_nan=True)
        assert not np.array_equal(moved, base, equal_nan=True)  # ... while other films' features do


def test_time_split_reads_only_films_released_strictly_earlier():
    ids, y, release = toy()
    source = np.arange(50)
    lo, hi = track.date_bounds(release)
    feats = track.track_features(ids, y, source, CFG, release)
    for i in range(len(y)):
        earlier = [f for f in source if hi[f] < lo[i]]
        expect = naive(ids, y, earlier, i, CFG.actors)
        assert np.allclose(feats[i, 0::2], expect[0::2], equal_nan=True), i
        assert np.allclose(feats[i, 1::2], np.log1p(expect[1::2])), i  # no OOF, no rescaling
        y2 = y.copy()
        y2[[f for f in range(len(y)) if f not in earlier]] += 2.0  # itself, later, same day, non-source
        assert np.array_equal(track.track_features(ids, y2, source, CFG, release)[i], feats[i], equal_nan=True)


def test_partial_dates_count_as_their_whole_month_or_year():
    assert [release_int(d) for d in ("2011-05-03", "2011-05", "2011", None)] == [20110503, 20110500, 20110000, 0]
    assert release_int(None, 2012) == 20120000
    assert release_int("2011/5/3") == 20110503 and release_int("soon", 2012) == 20120000  # the importer's forms
    lo, hi = track.date_bounds(np.array([20110503, 20110500, 20110000, 0]))
    assert lo.tolist()[:3] == [20110503, 20110500, 20110000]
    assert hi.tolist()[:3] == [20110503, 20110599, 20111299] and hi[3] > 99991299
    # 2011-04-30 is surely before 2011-05; 2011-05-01 is not; nothing in 2011 is surely before 2011 itself.
    assert hi[2] >= lo[0] and track.date_bounds(np.array([20110430]))[1][0] < lo[1]


def test_missing_history_becomes_zero_plus_a_missing_flag():
    ids, y, _ = toy()
    feats = track.track_features(ids, y, np.arange(40), CFG)
    x, dense = with_dense({}, np.full((60, 3), np.nan, np.float32), np.arange(40), "pre_release", feats)
    assert dense.to_dict()["columns"] == list(track.COLUMNS)
    nan_rows = np.isnan(feats[:, 0])
    assert nan_rows.any()
    assert (x[DENSE][nan_rows, 0] == 0).all() and (x[DENSE][nan_rows, len(track.COLUMNS)] == 1).all()
    assert (x[DENSE][~nan_rows, len(track.COLUMNS)] == 0).all()


def test_settings_are_checked():
    params = fast_params()
    shipped_keys = params["train"]["common"].pop("track_records")
    # No default to fall back on: a params file without the section is refused, naming it.
    with pytest.raises(KadnError, match=re.escape("missing key train.common.track_records") + "$"):
        fast(params)
    for key in shipped_keys:
        params["train"]["common"]["track_records"] = {k: v for k, v in shipped_keys.items() if k != key}
        with pytest.raises(KadnError, match=re.escape(f"missing key train.common.track_records.{key}")):
            fast(params)
    for bad, message in (({"enable": True}, "unknown key train.common.track_records.enable; did you mean 'enabled'"),
                         ({"folds": 1}, "track_records.folds: Input should be greater than or equal to 2"),
                         ({"enabled": "yes"}, "track_records.enabled: Input should be a valid boolean"),
                         ({"actors": 2.5}, "track_records.actors: Input should be a valid integer"),
                         ({"counts": None}, "track_records.counts: Input should be a valid boolean")):
        params["train"]["common"]["track_records"] = {**shipped_keys, **bad}
        with pytest.raises(KadnError, match=re.escape(message)):
            fast(params)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return encoded_catalogue(tmp_path_factory.mktemp("track"))


@pytest.mark.parametrize("method", ["random", "time"])
def test_saved_payload_rebuilds_the_training_features_exactly(catalogue, tmp_path, method):
    enc_dir = tmp_path / "enc"
    shutil.copytree(catalogue, enc_dir)
    meta = json.loads((enc_dir / "meta.json").read_text())
    meta["params"]["split"]["method"] = method  # only the track computation reads it here
    (enc_dir / "meta.json").write_text(json.dumps(meta))
    enc = load_encoded(enc_dir)
    train = enc.index("train")
    direct = track.for_rows(enc, train, CFG)
    saved = json.loads(json.dumps(track.payload(enc, train, CFG)))  # as vocab.json holds it
    assert saved["time"] == (method == "time") and len(saved["score"]) == len(train)
    assert np.allclose(track.for_encoded(enc, saved), direct, equal_nan=True, atol=1e-5)
    # A new film: history from the training films only, through its tokens.
    tokens = {r: [track.tokens_of(enc, r, train[:1])[0]] for r in track.ROLES}
    new = track.from_payload(saved, tokens, np.array([track.AFTER_ALL]))
    assert np.isfinite(new[0, 0::2]).any()


def test_older_encodings_without_dates_are_refused_in_time_mode(catalogue):
    enc = load_encoded(catalogue)
    enc.release = None
    enc.params = {**enc.params, "split": {**enc.params["split"], "method": "time"}}
    with pytest.raises(KadnError, match="re-run `kadn encode`"):
        track.for_rows(enc, enc.index("train"), CFG)


def test_train_evaluate_and_predict_with_track_records(catalogue, tmp_path):
    from models.serving.predict import predict
    from models.stages.evaluate import run_evaluate

    params = fast_params()
    params["models"] = {"baselines": ["svm"], "nets": ["kadn"]}
    params["train"]["common"]["track_records"].update(enabled=True, actors=3, folds=3, seed=1)
    for name in ("svm", "kadn"):
        for feature_set, root in (("pre_release", "pre"), ("with_popularity", "pop")):
            meta = run_train(name, fast(params), catalogue, tmp_path / root, feature_set=feature_set)
            assert meta["track_records"]["enabled"]
    params["train"]["common"]["track_records"]["counts"] = True
    meta = run_train("ridge", fast(params), catalogue, tmp_path / "counts")
    assert json.loads((tmp_path / "counts" / "ridge" / "vocab.json").read_text())["dense"]["columns"] == \
        list(track.COLUMNS)
    vocab = json.loads((tmp_path / "pre" / "kadn" / "vocab.json").read_text())
    # pre_release now has dense inputs: the means alone without `counts: true`
    assert vocab["dense"]["columns"] == [c for c in track.COLUMNS if c.endswith("_mean")]
    assert len(vocab["track"]["score"]) == len(load_encoded(catalogue).index("train"))
    frag = run_evaluate(fast(params), catalogue, tmp_path / "pre", tmp_path / "e.json", tmp_path / "plots", tmp_path / "pop")
    for name in ("svm", "kadn", "kadn_teacher"):
        assert np.isfinite(frag["models"][name]["mae"]) and np.isfinite(frag["models_with_popularity"][name]["mae"])
    assert frag["distillation"]["student"]["params"] > 0
    films = tmp_path / "films.json"
    films.write_text(json.dumps([{"douban_id": None, "title": "新片", "directors": [], "writers": None,
                                  "actors": ["无名"], "genres": ["剧情"], "countries": ["中国大陆"],
                                  "languages": ["汉语普通话"], "runtime_min": 100, "release_date": None}]))
    for root in ("pre", "pop"):
        (row,) = predict(films, "kadn", tmp_path / root)
        assert 0 < row["predicted"] < 10


def test_predict_knows_a_training_film_whatever_the_type_of_its_id(catalogue, tmp_path):
    # "123" and 123 are one film: either way a training film gets its out-of-fold track record in
    # `kadn predict`, never one holding its own score.
    import pandas as pd

    from models.serving.predict import film_dense

    params = fast_params()
    params["train"]["common"]["track_records"].update(enabled=True, actors=3, folds=3, seed=1)
    run_train("ridge", fast(params), catalogue, tmp_path)
    vocab = json.loads((tmp_path / "ridge" / "vocab.json").read_text())
    frame = pd.read_parquet(catalogue.parent / "movies.parquet").set_index("douban_id", drop=False)
    enc = load_encoded(catalogue)
    unmatched_differs = 0
    for did in enc.douban_id[enc.index("train")][:20].tolist():
        row = frame.loc[did].to_dict()
        as_int = film_dense([dict(row, douban_id=int(did))], vocab)
        assert np.array_equal(film_dense([dict(row, douban_id=str(did))], vocab), as_int)
        unmatched_differs += not np.array_equal(film_dense([dict(row, douban_id=None)], vocab), as_int)
    assert unmatched_differs > 0  # without the match, the film's own score does reach its features


def test_earlier_reads_only_strictly_earlier_films_under_the_random_split_too(catalogue):
    """`earlier: true`: the ordering of the time split in every fit (backtest, CV, saved models), so a film's
    track record never holds a later film's score, not even a training film's."""
    enc = load_encoded(catalogue)
    assert enc.params["split"]["method"] == "random"
    train = enc.index("train")
    cfg = CFG.model_copy(update={"earlier": True})
    feats = track.for_rows(enc, train, cfg)
    expect = track.track_features({r: enc.x[r] for r in track.ROLES}, enc.rating, train, cfg, enc.release)
    assert np.array_equal(feats, expect, equal_nan=True)
    first = int(np.argmin(np.where(enc.release > 0, enc.release, np.iinfo(np.int32).max)))
    assert np.isnan(feats[first, 0::2]).all()  # the earliest film has no earlier film to read
    later = enc.release > enc.release[first] // 10000 * 10000 + 1299
    moved = enc.rating.copy()
    moved[later] += 2.0
    enc.rating = moved
    again = track.for_rows(enc, train, cfg)
    year = enc.release // 10000 == enc.release[first] // 10000
    assert np.array_equal(again[year], feats[year], equal_nan=True)  # the first year's films see no later score
    assert not np.array_equal(again, feats, equal_nan=True)
    saved = track.payload(enc, train, cfg)
    assert saved["time"] is True and saved["settings"]["earlier"] is True
