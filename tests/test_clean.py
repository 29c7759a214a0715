"""The range and the paper's four rules, each on a small database we write."""

import json
import re

import pandas as pd
import pytest
from sqlalchemy import text

from crawler.mocksite.catalogue import films, generate_catalogue
from pipeline.cli import main
from pipeline.errors import KadnError
from pipeline.features.clean import apply_rules, run_clean, to_frame, write_table
from pipeline.features.rules import normalise_title
from pipeline.film import store
from pipeline.film.records import ID_FIELD, ROLES
from pipeline.io import load_params
from pipeline.params import load, parse

PARAMS = load("params.yaml").clean


def rd(date, region="中国大陆", rerelease=False):
    return {"date": date, "region": region, "rerelease": rerelease}


def ids(records):
    return sorted(r["douban_id"] for r in records)


def test_range_edges(make_film):
    films = [
        make_film(1, release_dates=[rd("2006-12-31")]),
        make_film(2, release_dates=[rd("2007-01-01")]),
        make_film(3, release_dates=[rd("2019-12-31")]),
        make_film(4, release_dates=[rd("2020-01-01")]),
        make_film(5, release_dates=[rd("2019")]),        # year only, inside
        make_film(6, release_dates=[rd("2006-12")]),     # month only, outside
        # first shown 2005, re-released 2012: the re-release never counts, so out of range
        make_film(7, release_dates=[rd("2005-03-01", "日本"), rd("2012-06-01", "中国大陆重映", True)]),
    ]
    kept, removed = apply_rules(films, PARAMS)
    assert ids(kept) == [2, 3, 5]
    assert ids(removed["out_of_range"]) == [1, 4, 6, 7]


def test_rerelease_pair_keeps_the_latest(make_film):
    a = make_film(10, "小森林 夏秋篇", directors=["森淳一"], director_ids=["1001"], release_dates=[rd("2014-08-30", "日本")])
    b = make_film(11, "小森林：夏秋篇", directors=["森淳一"], director_ids=[None], release_dates=[rd("2015-02-14", "日本")])
    namesake = make_film(12, "小森林夏秋篇", directors=["别人"], director_ids=["2002"], release_dates=[rd("2016-01-01")])
    kept, removed = apply_rules([a, b, namesake], PARAMS)
    assert ids(kept) == [11, 12]   # same title but no shared director: another film
    assert ids(removed["rerelease"]) == [10]


def test_rerelease_chain_through_shared_directors(make_film):
    # A shares a director with B, B with C: one film in three records.
    a = make_film(20, "同名", directors=["甲"], director_ids=[None], release_dates=[rd("2008-01-01")])
    b = make_film(21, "同名", directors=["甲", "乙"], director_ids=[None, None], release_dates=[rd("2010-01-01")])
    c = make_film(22, "同名", directors=["乙"], director_ids=[None], release_dates=[rd("2009-01-01")])
    kept, removed = apply_rules([a, b, c], PARAMS)
    assert ids(kept) == [21] and ids(removed["rerelease"]) == [20, 22]


def test_non_film_under_gewu(make_film):
    gala = make_film(30, "2015年中央电视台春节联欢晚会", genres=["歌舞"])
    concert = make_film(31, "Taylor Swift: The Eras Tour", genres=["歌舞", "纪录片"])
    musical = make_film(32, "爱乐之城", genres=["剧情", "歌舞"])           # a real film under 歌舞
    live_drama = make_film(33, "Live 现场", genres=["剧情"])               # keyword but not 歌舞
    kept, removed = apply_rules([gala, concert, musical, live_drama], PARAMS)
    assert ids(removed["non_film"]) == [30, 31]
    assert ids(kept) == [32, 33]


def test_missing_labels(make_film):
    no_cast = make_film(40, "与死神共舞之夜", actors=[], actor_ids=None)
    no_lang = make_film(41, languages=[])
    no_date = make_film(42, release_dates=[], year=2012)
    no_writer = make_film(43, writers=[], writer_ids=None)  # writers are not required by default
    kept, removed = apply_rules([no_cast, no_lang, no_date, no_writer], PARAMS)
    assert ids(removed["missing_labels"]) == [40, 41, 42]
    assert ids(kept) == [43]


def test_required_groups_are_configurable(make_film):
    params = PARAMS.model_copy(update={"required": ["directors", "writers"]})
    kept, removed = apply_rules([make_film(43, writers=[], writer_ids=None), make_film(44, actors=[])], params)
    assert ids(removed["missing_labels"]) == [43] and ids(kept) == [44]


def test_few_raters(make_film):
    films = [
        make_film(50, votes=29, rating=6.0),
        make_film(51, votes=30, rating=6.0),
        make_film(52, votes=None, rating=None),
        make_film(53, votes=None, rating=7.5),   # score shown, count unknown: Douban showed a score
        make_film(54, votes=500, rating=0.0),    # 0 is no score (a store written by another tool)
    ]
    kept, removed = apply_rules(films, PARAMS)
    assert ids(removed["few_raters"]) == [50, 52, 54]
    assert ids(kept) == [51, 53]


def test_rules_apply_in_order(make_film):
    # Out of range *and* no cast: counted once, under the earlier rule.
    film = make_film(60, actors=[], release_dates=[rd("2001-01-01")])
    _, removed = apply_rules([film], PARAMS)
    assert ids(removed["out_of_range"]) == [60] and removed["missing_labels"] == []


def test_unreadable_date_is_dropped_not_guessed(make_film):
    film = make_film(61)
    film["release_dates"] = [rd("2012-13-45")]   # e.g. written by another tool
    film["release_date"] = "2012-13-45"
    kept, removed = apply_rules([film, make_film(62)], PARAMS)
    assert ids(removed["unreadable"]) == [61] and ids(kept) == [62]


def test_dates_another_tool_wrote_are_read_or_dropped_not_guessed(stored, db_url, make_film, tmp_path, capsys):
    engine = stored([make_film(1), make_film(2), make_film(3)])
    with engine.begin() as conn:
        conn.execute(text("UPDATE release_dates SET date = '2012/5/1' WHERE movie_id = 1"))
        conn.execute(text("UPDATE release_dates SET date = 'sometime' WHERE movie_id = 2"))
    assert main(["export"]) == 0  # reading the store survives both
    out, report = tmp_path / "movies.parquet", tmp_path / "report.json"
    run_clean(db_url, PARAMS, out, report)
    data = json.loads(report.read_text())
    assert data["removed"]["unreadable"] == 1 and data["examples"]["unreadable"] == ["2 电影2"]
    frame = pd.read_parquet(out).set_index("douban_id")
    assert frame.loc[1, "release_date"] == "2012-05-01" and 2 not in frame.index


@pytest.mark.parametrize("change, message", [
    ({"required": ["directors", "cast"]}, "params.yaml: clean.required.1: Input should be 'directors'"),
    ({"date_min": "2007-13-01"}, "params.yaml: clean.date_min: month out of range in '2007-13-01'"),
    ({"min_votes": None}, "params.yaml: clean.min_votes: Input should be a valid integer, not None"),
    ({"min_votes": -1}, "params.yaml: clean.min_votes: Input should be greater than or equal to 0, not -1"),
    ({"min_votes": 2.5}, "params.yaml: clean.min_votes: Input should be a valid integer, not 2.5"),
    ({"min_votes": True}, "params.yaml: clean.min_votes: Input should be a valid integer, not True"),
    ({"non_film": {"genre": "歌舞", "keywords": [1]}}, "params.yaml: clean.non_film.keywords.0: Input should be a valid string, not 1"),
    ({"min_votess": 30}, "params.yaml: unknown key clean.min_votess; did you mean 'min_votes'?"),
])
def test_bad_params_name_themselves(change, message):
    raw = load_params("params.yaml")
    raw["clean"].update(change)
    with pytest.raises(KadnError, match=re.escape(message)):
        parse(raw)


def test_missing_param_key_is_named():
    raw = load_params("params.yaml")
    del raw["clean"]["non_film"]
    with pytest.raises(KadnError, match="params.yaml: missing key clean.non_film"):
        parse(raw)


def test_normalise_title():
    assert normalise_title("小森林 夏秋篇") == normalise_title("小森林：夏秋篇") == normalise_title("小森林·夏秋篇")
    assert normalise_title("ＡＢＣ") == normalise_title("abc")


def test_stage_writes_table_and_report(stored, db_url, make_film, tmp_path, capsys):
    stored([make_film(1), make_film(2, votes=3), make_film(3, release_dates=[rd("1999-01-01")])])
    out, report = tmp_path / "c" / "movies.parquet", tmp_path / "c" / "report.json"
    assert main(["clean", "--out", str(out), "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["stored"] == 3 and data["kept"] == 1
    assert data["removed"]["few_raters"] == 1 and data["removed"]["out_of_range"] == 1
    frame = pd.read_parquet(out)
    assert frame["douban_id"].tolist() == [1]
    assert list(frame.loc[0, "actors"]) == make_film(1)["actors"]


def test_empty_database_stops_with_message(db_url, tmp_path):
    store.connect(db_url)
    out = tmp_path / "movies.parquet"
    with pytest.raises(KadnError, match="holds no movies"):
        run_clean(db_url, PARAMS, out, tmp_path / "r.json")
    assert not out.exists()


def test_everything_removed_names_the_rules(stored, db_url, make_film, tmp_path):
    stored([make_film(1, votes=5), make_film(2, release_dates=[rd("1990-01-01")])])
    out = tmp_path / "movies.parquet"
    with pytest.raises(KadnError, match=r"out_of_range removed 1, few_raters removed 1"):
        run_clean(db_url, PARAMS, out, tmp_path / "r.json")
    assert not out.exists() and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("kind", ["catalogue", "no_person_ids", "one_film_no_lists"])
def test_the_table_is_written_byte_for_byte_as_to_parquet_writes_it(tmp_path, kind):
    records = [{k: v for k, v in e.items() if k not in ("kind", "traits")} for e in films(generate_catalogue(300, 5))]
    if kind == "no_person_ids":  # every id column all unknown: Arrow types them list<null>
        records = [{**r, **{ID_FIELD[role]: [None] * len(r[role]) for role in ROLES}} for r in records]
    elif kind == "one_film_no_lists":
        records = [{**records[0], **{k: [] for k in (*ROLES, *ID_FIELD.values(), "genres", "countries", "languages")}}]
    frame = to_frame(records)
    frame.to_parquet(tmp_path / "pandas.parquet", index=False)
    write_table(frame, tmp_path / "ours.parquet")
    assert (tmp_path / "ours.parquet").read_bytes() == (tmp_path / "pandas.parquet").read_bytes()
