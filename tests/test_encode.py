"""Feature groups, vocabularies, OOV handling and splits."""

import json

import numpy as np
import pytest

from pipeline.errors import KadnError
from pipeline.features.clean import to_frame
from pipeline.features.encode import OOV, PAD, SPLITS, load_encoded, make_split, record_tokens, run_encode
from pipeline.params import Split, load

PARAMS = load("params.yaml").encode


def frame_of(films):
    return to_frame(films)


def encode(tmp_path, films, **override):
    table = tmp_path / "movies.parquet"
    frame_of(films).to_parquet(table)
    params = PARAMS.model_copy(update=override)
    run_encode(table, params, tmp_path / "enc")
    return load_encoded(tmp_path / "enc")


def test_tokens_key_people_by_id_else_name(make_film):
    rec = make_film(1, directors=["甲", "乙"], director_ids=["77", None], runtime_min=95,
                    release_dates=[{"date": "2013-07-05", "region": None, "rerelease": False}])
    (toks,) = record_tokens([rec], PARAMS.model_dump())
    assert toks["directors"] == ["id:77", "name:乙"]
    assert toks["runtime"] == ["90-100"] and toks["year"] == ["2013"] and toks["month"] == ["07"]


def test_first_k_actors_and_missing_values(make_film):
    cast = [f"演员{i}" for i in range(20)]
    rec = make_film(1, actors=cast, actor_ids=None, runtime_min=None,
                    release_dates=[{"date": "2013", "region": None, "rerelease": False}])
    (toks,) = record_tokens([rec], PARAMS.model_dump())
    assert toks["actors"] == [f"name:演员{i}" for i in range(PARAMS.max_len.actors)]
    assert toks["runtime"] == ["unknown"] and toks["month"] == ["unknown"]


def test_an_undated_film_gets_its_year_in_the_stage_as_when_forecast(tmp_path, make_film):
    # The stage reads dates back from parquet as text, missing ones as NaN: not a date (once the token "nan").
    films = [make_film(i, year=2016, **({"release_dates": []} if i % 2 else {})) for i in range(1, 31)]
    assert all(f["release_date"] is None for f in films[::2]) and films[1]["release_date"] == "2012-05-01"
    enc = encode(tmp_path, films)
    undated = enc.douban_id % 2 == 1
    for group, expected in (("year", "2016"), ("month", "unknown")):
        tokens = {enc.vocab[group][j - 2] for j in enc.x[group][undated, 0]}
        assert tokens == {expected} == {record_tokens([films[0]], PARAMS.model_dump())[0][group][0]}


def test_arrays_match_vocabulary(tmp_path, make_film):
    films = [make_film(i, actors=[f"a{i % 3}", f"b{i % 4}", "c"]) for i in range(1, 41)]
    enc = encode(tmp_path, films)
    for i, film in enumerate(sorted(films, key=lambda f: f["douban_id"])):
        row = enc.x["actors"][i]
        names = [enc.vocab["actors"][j - 2] for j in row if j != PAD]
        assert names == [f"name:{a}" for a in film["actors"]]
    assert len(enc) == 40 and enc.rating.dtype == np.float32


def test_restrict_maps_rare_tokens_to_oov_using_training_rows_only(tmp_path, make_film):
    films = [make_film(i, actors=["常客", f"独{i}"], actor_ids=None) for i in range(1, 21)]
    films.append(make_film(99, actors=["常客", "独1"], actor_ids=None))  # 独1 now twice in all data
    enc = encode(tmp_path, films)
    rows = np.arange(len(enc))
    train = rows[enc.douban_id != 99]
    r = enc.restrict(train, min_count=2)
    vocab = enc.vocab["actors"]
    regular = r.remap["actors"][vocab.index("name:常客") + 2]
    assert regular > OOV
    # 独1 occurs once in the training rows: OOV, although it occurs twice in all data.
    assert r.remap["actors"][vocab.index("name:独1") + 2] == OOV
    assert r.freq["actors"][regular] == len(train)
    assert r.freq["actors"][OOV] == len(train)  # one rare actor per training film
    assert r.x["actors"].max() < len(r.freq["actors"])
    # Padding stays padding.
    assert (r.x["directors"][enc.x["directors"] == PAD] == PAD).all()


def test_splits_are_disjoint_cover_all_and_reproducible(make_film):
    frame = frame_of([make_film(i) for i in range(1, 201)])
    split = Split(method="random", val=0.1, test=0.2, seed=7)
    a, b = make_split(frame, split), make_split(frame, split)
    assert (a == b).all()
    assert [(a == c).sum() for c in SPLITS.values()] == [140, 20, 40]
    assert not (make_split(frame, split.model_copy(update={"seed": 8})) == a).all()


def test_time_split_tests_on_the_latest_films(make_film):
    films = [make_film(i, release_dates=[{"date": f"{2007 + i % 13}-0{1 + i % 9}-01", "region": None,
                                          "rerelease": False}]) for i in range(1, 101)]
    frame = frame_of(films)
    split = make_split(frame, Split(method="time", val=0.1, test=0.1, seed=0))
    dates = frame["release_date"].to_numpy()
    assert min(dates[split == SPLITS["test"]]) >= max(dates[split == SPLITS["val"]])
    assert min(dates[split == SPLITS["val"]]) >= max(dates[split == SPLITS["train"]])


def test_empty_split_is_an_error(tmp_path, make_film):
    with pytest.raises(KadnError, match="2 films leave the val split empty"):
        encode(tmp_path, [make_film(1), make_film(2)])


def test_mismatched_vocabulary_is_refused(tmp_path, make_film):
    encode(tmp_path, [make_film(i) for i in range(1, 31)])
    vocab_path = tmp_path / "enc" / "vocab.json"
    vocab = json.loads(vocab_path.read_text())
    vocab["digest"] = "0" * 16
    vocab_path.write_text(json.dumps(vocab))
    with pytest.raises(KadnError, match="does not belong"):
        load_encoded(tmp_path / "enc")


def test_popularity_is_nan_where_unknown(tmp_path, make_film):
    films = [make_film(i, votes=None if i % 2 else 99, review_count=None) for i in range(1, 31)]
    enc = encode(tmp_path, films)
    votes = enc.popularity[:, 0]
    assert np.isnan(votes[enc.douban_id % 2 == 1]).all()
    assert np.allclose(votes[enc.douban_id % 2 == 0], np.log1p(99))
    assert np.isnan(enc.popularity[:, 1]).all()


def test_release_dates_are_stored_and_older_encodings_still_load(tmp_path, make_film):
    films = [make_film(i, release_dates=[{"date": "2013-07-05" if i % 2 else "2014", "region": None,
                                          "rerelease": False}]) for i in range(1, 31)]
    enc = encode(tmp_path, films)
    assert enc.release.tolist() == [20130705 if i % 2 else 20140000 for i in enc.douban_id]
    with np.load(tmp_path / "enc" / "arrays.npz") as npz:  # encoded before release dates were stored
        data = {k: npz[k] for k in npz.files if k != "release"}
    np.savez_compressed(tmp_path / "enc" / "arrays.npz", **data)
    assert load_encoded(tmp_path / "enc").release is None
