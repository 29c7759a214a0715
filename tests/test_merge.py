"""The merge rule: a thinner record never erases what a richer one found, in the store, import and one file."""

import json
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.film import store
from pipeline.film.merge import GROUPS, garbled, merge_people, merge_record, merge_release_dates
from tests.conftest import film, read_jsonl

RICH = {"douban_id": 9000100, "title": "X", "directors": ["张艺谋"], "director_ids": ["1054398"],
        "release_dates": [{"date": "2010-05-01", "region": "中国大陆", "rerelease": False},
                          {"date": "2010-09-10", "region": "多伦多电影节", "rerelease": False},
                          {"date": "2020-08-28", "region": "中国大陆", "rerelease": True}]}
THIN_CSV = "movie_id,title,total_ratings,directors,release_date\n9000100,X,,张艺谋,2010-05-01\n"


def exported(capsys) -> dict[int, dict]:
    capsys.readouterr()
    assert main(["export"]) == 0
    return {r["douban_id"]: r for r in read_jsonl(capsys.readouterr().out)}


def assert_rich_kept(rec: dict) -> None:
    assert rec["directors"] == ["张艺谋"] and rec["director_ids"] == ["1054398"]
    assert rec["release_dates"] == RICH["release_dates"]
    assert rec["release_date"] == "2010-05-01"


def test_thin_import_keeps_person_ids_and_release_dates(db_url, tmp_path, capsys):
    (tmp_path / "rich.jsonl").write_text(json.dumps(RICH, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp_path / "thin.csv").write_text(THIN_CSV, encoding="utf-8")
    assert main(["import", str(tmp_path / "rich.jsonl")]) == 0
    assert main(["import", str(tmp_path / "thin.csv")]) == 0
    assert_rich_kept(exported(capsys)[9000100])


def test_a_crawl_over_a_thin_import_merges_release_dates(db_url, tmp_path, capsys, make_film):
    # The crawl's item pipeline stores through store.upsert_records with a fetch time.
    (tmp_path / "thin.csv").write_text(THIN_CSV.replace("2010-05-01", "2010-05-01\n9000101,Y,,,2011"),
                                       encoding="utf-8")
    assert main(["import", str(tmp_path / "thin.csv")]) == 0
    crawled = [make_film(9000100, "X", directors=RICH["directors"], director_ids=RICH["director_ids"],
                         release_dates=RICH["release_dates"][1:]),
               make_film(9000101, "Y", release_dates=[{"date": "2011", "region": "法国", "rerelease": False}])]
    store.upsert_records(store.connect(db_url), crawled, source="douban-crawl",
                         fetched_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    recs = exported(capsys)
    # The CSV's date is not on the crawled page: it stays, without a region. A date the page gives with a
    # region replaces the region-less entry.
    assert recs[9000100]["release_dates"] == RICH["release_dates"][1:] + [
        {"date": "2010-05-01", "region": None, "rerelease": False}]
    assert recs[9000100]["release_date"] == "2010-05-01" and recs[9000100]["director_ids"] == ["1054398"]
    assert recs[9000101]["release_dates"] == [{"date": "2011", "region": "法国", "rerelease": False}]


def test_a_newer_crawl_of_the_page_replaces_an_older_crawls_lists(stored, db_url, make_film):
    engine = store.connect(db_url)
    for day, cast in ((1, ["旧演员", "共同"]), (2, ["新演员", "共同"])):
        store.upsert_records(engine, [make_film(4, actors=cast, actor_ids=None)], source="douban-crawl",
                             fetched_at=datetime(2026, 1, day))
    (rec,) = store.load_records(engine)
    assert rec["actors"] == ["新演员", "共同"]


def test_a_thin_crawl_record_keeps_what_the_store_knew(stored, db_url, make_film):
    engine = stored([make_film(5, actors=["甲", "乙"], actor_ids=["11", "12"], genres=["剧情", "爱情"])])
    thin = make_film(5, actors=["甲"], actor_ids=None, genres=["剧情"], rating=None, votes=None)
    store.upsert_records(engine, [thin], source="douban-crawl", fetched_at=datetime(2026, 1, 1))
    (rec,) = store.load_records(engine)
    assert (rec["actors"], rec["actor_ids"]) == (["甲", "乙"], ["11", "12"])
    assert rec["genres"] == ["剧情", "爱情"] and (rec["rating"], rec["votes"]) == (7.0, 1000)


def test_a_list_that_knows_more_replaces_the_stored_one(stored, make_film):
    engine = stored([make_film(6, actors=["甲", "乙"], actor_ids=["11", None])])
    richer = make_film(6, actors=["乙", "甲", "丙"], actor_ids=["12", None, "13"], genres=["剧情", "科幻"])
    store.upsert_records(engine, [richer], source="import:kadn")
    (rec,) = store.load_records(engine)
    # 甲 came without an id and keeps the stored one; 乙 gains one; the new order and 丙 are taken.
    assert (rec["actors"], rec["actor_ids"]) == (["乙", "甲", "丙"], ["12", "11", "13"])
    assert rec["genres"] == ["剧情", "科幻"]


def test_a_repeated_id_in_one_file_merges(db_url, tmp_path, capsys):
    thin = {"douban_id": 9000100, "title": "X2", "directors": ["张艺谋"], "release_date": "2010-05-01",
            "votes": 7}
    path = tmp_path / "twice.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in (RICH, thin)) + "\n", encoding="utf-8")
    assert main(["import", str(path)]) == 0
    assert "1 new, 0 updated" in capsys.readouterr().err
    rec = exported(capsys)[9000100]
    assert_rich_kept(rec)
    assert (rec["title"], rec["votes"]) == ("X2", 7)


def test_merge_people_fills_ids_only_when_the_name_is_unambiguous():
    stored = [("同名", "1"), ("同名", "2"), ("独一", "3")]
    incoming = [("同名", None), ("同名", "1"), ("同名", "2"), ("独一", None)]
    assert merge_people(stored, incoming) == [("同名", None), ("同名", "1"), ("同名", "2"), ("独一", "3")]
    assert merge_people(stored, [("独一", None)]) == stored  # knows less: the stored list stays


def test_a_person_is_credited_once_whatever_spellings_the_lists_give_their_id():
    # The id the stored list knows for 乙 is already in the incoming list under another spelling.
    assert merge_people([("甲", None), ("乙", "7")], [("甲", None), ("乙", None), ("甲", "7")]) == [
        ("甲", None), ("乙", "7")]


def test_two_rows_of_one_film_spelling_an_id_two_ways_round_trip(db_url, tmp_path, capsys):
    rows = [{"douban_id": 9000200, "title": "Y", "actors": ["甲", "甲", "乙"], "actor_ids": [None, None, "7"]},
            {"douban_id": 9000200, "title": "Y", "actors": ["甲", "乙", "甲"], "actor_ids": [None, None, "7"]}]
    path = tmp_path / "twice.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    assert main(["import", str(path)]) == 0
    first = exported(capsys)[9000200]
    assert (first["actors"], first["actor_ids"]) == (["甲", "乙"], [None, "7"])  # one credit for person 7
    again = tmp_path / "again.jsonl"
    again.write_text(json.dumps(first, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["import", str(again)]) == 0
    assert exported(capsys)[9000200] == first


@pytest.mark.parametrize("stored, incoming, merged", [
    # same (date, region): one entry, the incoming flag; a new region is added after the incoming ones
    ([("2010-05-01", "中国大陆", False)], [("2010-05-01", "中国大陆", True), ("2010-06", "美国", False)],
     [("2010-05-01", "中国大陆", True), ("2010-06", "美国", False)]),
    # a stored re-release keeps its flag when the incoming record has only the date
    ([("2020-08-28", "中国大陆", True)], [("2020-08-28", None, False)], [("2020-08-28", "中国大陆", True)]),
    # a region-less stored date is superseded by the same date with a region
    ([("2011", None, False)], [("2011", "法国", False)], [("2011", "法国", False)]),
    ([("2011", None, False)], [], [("2011", None, False)]),
])
def test_release_dates_merge_by_date_and_region(stored, incoming, merged):
    def entries(items):
        return [{"date": d, "region": r, "rerelease": f} for d, r, f in items]

    assert merge_release_dates(entries(stored), entries(incoming)) == entries(merged)


def test_merging_a_record_with_itself_changes_nothing(make_film):
    rec = make_film(3, release_dates=RICH["release_dates"], actor_ids=["7", None])
    assert merge_record(rec, rec) == rec
    assert merge_record(None, rec) == rec


TEXT = st.text(st.sampled_from("剧情喜剧中国大陆美国\ufffdab"), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_text_that_reads_worse_never_replaces_stored_text(data):
    # Whatever the two records hold, no field (with its ids or first date) ends up holding more U+FFFD
    # replacement characters than the stored one: a mis-decoded page cannot spoil what is there.
    def record(name):
        return film(9000200, title=data.draw(TEXT, f"{name} title"),
                    genres=data.draw(st.lists(TEXT, max_size=3, unique=True), f"{name} genres"),
                    directors=[data.draw(TEXT, f"{name} director")], director_ids=["1054398"],
                    release_dates=[{"date": "2012-05-01", "region": data.draw(TEXT, f"{name} region"),
                                    "rerelease": False}])

    stored, incoming = record("stored"), record("incoming")
    for supersedes in (False, True):
        merged = merge_record(stored, incoming, supersedes=supersedes)
        for group in GROUPS:
            assert garbled([merged[f] for f in group]) <= garbled([stored[f] for f in group]), group
            if not garbled([incoming[f] for f in group]) and not garbled([stored[f] for f in group]):
                continue
            if garbled([incoming[f] for f in group]) > garbled([stored[f] for f in group]):
                assert [merged[f] for f in group] == [stored[f] for f in group]


def test_garbled_crawl_keeps_the_stored_title_genres_and_regions(db_url):
    engine = store.connect(db_url)
    good = film(9000300, title="活着", genres=["剧情", "历史"])
    store.upsert_records(engine, [good], source="douban-crawl", fetched_at=datetime(2020, 1, 1))
    bad = film(9000300, title="\ufffd\ufffd", genres=["\ufffd\ufffd"], votes=2000,
               release_dates=[{"date": "2012-05-01", "region": "\ufffd\ufffd", "rerelease": False}])
    store.upsert_records(engine, [bad], source="douban-crawl", fetched_at=datetime(2021, 1, 1))
    (after,) = store.load_records(engine)
    assert after == dict(good, votes=2000)  # the clean count is taken, the noise is not
