import json
import shutil

import pytest
from sqlalchemy import text

from pipeline.cli import main
from pipeline.film import store
from tests.conftest import FIXTURES, read_jsonl


def export_jsonl(capsys) -> list[dict]:
    assert main(["export", "--format", "jsonl"]) == 0
    return read_jsonl(capsys.readouterr().out)


def test_import_cc0(db_url, capsys):
    assert main(["import", str(FIXTURES / "cc0_sample.csv")]) == 0
    recs = {r["douban_id"]: r for r in export_jsonl(capsys)}
    assert sorted(recs) == [90000001, 90000002, 90000003]
    a = recs[90000001]
    assert a["actors"] == ["王甲", "李乙", "赵丙"] and a["writers"] == ["周丁"]
    assert a["languages"] == ["汉语普通话", "粤语"] and a["genres"] == ["剧情", "爱情"]
    assert (a["runtime_min"], a["release_date"], a["year"], a["rating"], a["votes"]) == (112, "2015-03-20", 2015, 8.1, 120345)
    b = recs[90000002]
    assert b["votes"] is None and b["release_date"] == "2011" and b["runtime_min"] == 95
    assert b["countries"] == ["美国", "英国"]
    c = recs[90000003]
    assert c["writers"] == [] and c["runtime_min"] is None and c["release_date"] == "2018-07"
    assert c["review_count"] is None and c["imdb_id"] is None


def test_import_moviedata(db_url, capsys):
    assert main(["import", str(FIXTURES / "moviedata_sample.csv")]) == 0
    recs = {r["douban_id"]: r for r in export_jsonl(capsys)}
    a = recs[91000001]
    assert a["actors"] == ["甲演员", "乙演员", "丙演员"]
    assert a["actor_ids"] == ["1310001", "1310002", None]
    assert a["director_ids"] == ["1270001"] and a["imdb_id"] == "tt1234567"
    assert (a["rating"], a["votes"], a["runtime_min"]) == (7.8, 30211, 104)
    b = recs[91000002]
    assert b["rating"] is None and b["votes"] is None and b["runtime_min"] is None  # the dump's zeros


def test_reimport_is_idempotent(db_url, capsys):
    for _ in range(2):
        assert main(["import", str(FIXTURES / "cc0_sample.csv")]) == 0
    assert len(export_jsonl(capsys)) == 3


def test_upsert_updates_changed_rating(db_url, tmp_path, capsys):
    assert main(["import", str(FIXTURES / "cc0_sample.csv")]) == 0
    changed = tmp_path / "changed.csv"
    changed.write_text((FIXTURES / "cc0_sample.csv").read_text(encoding="utf-8").replace("8.1,120345", "8.3,130001"),
                       encoding="utf-8")
    assert main(["import", str(changed)]) == 0
    recs = {r["douban_id"]: r for r in export_jsonl(capsys)}
    assert (recs[90000001]["rating"], recs[90000001]["votes"]) == (8.3, 130001)
    assert len(recs) == 3


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_round_trip(fmt, tmp_path, monkeypatch, capsys):
    first = f"sqlite:///{tmp_path / 'a.sqlite'}"
    second = f"sqlite:///{tmp_path / 'b.sqlite'}"
    monkeypatch.setenv("DATABASE_URL", first)
    assert main(["import", str(FIXTURES / "cc0_sample.csv")]) == 0
    assert main(["import", str(FIXTURES / "moviedata_sample.csv")]) == 0
    out1 = tmp_path / f"one.{fmt}"
    assert main(["export", "--format", fmt, "-o", str(out1)]) == 0
    monkeypatch.setenv("DATABASE_URL", second)
    assert main(["import", str(out1)]) == 0
    out2 = tmp_path / f"two.{fmt}"
    assert main(["export", "--format", fmt, "-o", str(out2)]) == 0
    assert out1.read_bytes() == out2.read_bytes()
    assert out1.stat().st_size > 500


def test_round_trip_keeps_every_field_of_the_original_records(stored, tmp_path, monkeypatch, capsys, make_film):
    films = [
        make_film(1, release_dates=[{"date": "2010-09-01", "region": "中国大陆", "rerelease": False},
                                    {"date": "2020-08-28", "region": "中国大陆重映", "rerelease": True}],
                  imdb_id="tt0000001"),
        make_film(2, directors=["甲", "乙"], director_ids=["11", None], review_count=None, runtime_min=None),
        make_film(3, title="[REC] 3", genres=[], comment_count=0),
    ]
    stored(films)
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"all.{fmt}"
        assert main(["export", "--format", fmt, "-o", str(out)]) == 0
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / (fmt + '.sqlite')}")
        assert main(["import", str(out)]) == 0
        assert store.load_records(store.connect()) == films


def test_a_write_the_database_refuses_leaves_it_unchanged(seeded, db_url, tmp_path, capsys):
    engine = store.connect(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TRIGGER no_credits BEFORE INSERT ON credits "
                          "BEGIN SELECT RAISE(ABORT, 'credits are read-only'); END"))
    path = bad_copy(tmp_path, "山海之间", "山海之间（改）")
    assert main(["import", str(path)]) == 1
    err = capsys.readouterr().err
    assert "nothing imported" in err and "credits are read-only" in err and len(err.splitlines()) == 1
    assert snapshot_of(db_url) == seeded


def test_export_keeps_release_dates_and_rerelease_flags(stored, capsys, make_film):
    dates = [{"date": "2010-09-01", "region": "中国大陆", "rerelease": False},
             {"date": "2020-08-28", "region": "中国大陆重映", "rerelease": True}]
    stored([make_film(3541415, "盗梦空间", release_dates=dates, imdb_id="tt1375666")])
    (rec,) = export_jsonl(capsys)
    assert rec["release_dates"] == dates and rec["release_date"] == "2010-09-01"


# --- bad input: a clear message naming file, line and field; non-zero exit; nothing written ---

def snapshot_of(url: str) -> list[dict]:
    return store.load_records(store.connect(url))


@pytest.fixture
def seeded(db_url, capsys):
    assert main(["import", str(FIXTURES / "cc0_sample.csv")]) == 0
    capsys.readouterr()
    return snapshot_of(db_url)


def bad_copy(tmp_path, old: str, new: str, name="bad.csv"):
    path = tmp_path / name
    text = (FIXTURES / "cc0_sample.csv").read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


@pytest.mark.parametrize("old, new, where", [
    ("8.1,120345", "8.x,120345", ":2: 'rating':"),
    ("6.4,,", "6.4,lots,", ":3: 'votes' (column total_ratings):"),
    ("2018-07,", "2018-17,", ":4: 'release_date':"),
    ("112分钟", "long", ":2: 'runtime_min' (column runtime):"),
])
def test_bad_row_names_file_line_field_and_changes_nothing(seeded, db_url, tmp_path, capsys, old, new, where):
    # Change the *first* film too, so a partial import would be visible.
    path = bad_copy(tmp_path, old, new)
    text = path.read_text(encoding="utf-8").replace("山海之间", "山海之间（改）")
    path.write_text(text, encoding="utf-8")
    assert main(["import", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}{where}" in err and "Traceback" not in err
    assert snapshot_of(db_url) == seeded


def test_missing_file(db_url, tmp_path, capsys):
    assert main(["import", str(tmp_path / "nope.csv")]) == 1
    assert "nope.csv: no such file" in capsys.readouterr().err


def test_unreadable_file(seeded, db_url, tmp_path, capsys):
    path = tmp_path / "latin1.csv"
    path.write_bytes("movie_id,title,rating,total_ratings\n1,caf\xe9,7.0,100\n".encode("latin-1"))
    assert main(["import", str(path)]) == 1
    assert "not UTF-8" in capsys.readouterr().err
    assert snapshot_of(db_url) == seeded


def test_unknown_format(db_url, tmp_path, capsys):
    path = tmp_path / "other.csv"
    path.write_text("id,name,score\n1,x,7\n", encoding="utf-8")
    assert main(["import", str(path)]) == 1
    err = capsys.readouterr().err
    assert "other.csv: unknown format" in err and "id, name, score" in err


def test_malformed_jsonl(db_url, tmp_path, capsys):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"douban_id": 1, "title": "a"}) + "\n{not json\n", encoding="utf-8")
    assert main(["import", str(path)]) == 1
    assert f"{path}:2: not valid JSON" in capsys.readouterr().err
    assert store.count_movies(store.connect(db_url)) == 0


def test_database_of_another_schema(tmp_path, monkeypatch, capsys):
    foreign = tmp_path / "foreign.sqlite"
    shutil.copy(FIXTURES / "cc0_sample.csv", tmp_path / "x.csv")
    import sqlite3
    with sqlite3.connect(foreign) as conn:
        conn.execute("create table films (id integer)")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{foreign}")
    assert main(["import", str(tmp_path / "x.csv")]) == 1
    err = capsys.readouterr().err
    assert "not written by douban-kadn" in err and "Traceback" not in err
    assert main(["export"]) == 1


def jsonl_line(**fields) -> str:
    return json.dumps({"douban_id": 90000009, "title": "坏片", **fields}, ensure_ascii=False)


@pytest.mark.parametrize("line, where", [
    (jsonl_line(votes=2**64), ":1: 'votes': '18446744073709551616' is outside 0..2147483647"),
    (jsonl_line(douban_id=2**64), ":1: 'douban_id': '18446744073709551616' is outside 1.."),
    (jsonl_line(votes=-1), ":1: 'votes': '-1' is outside 0.."),
    ('{"douban_id": 90000009, "title": "x", "votes": ' + "7" * 5000 + "}", ":1: 'votes': '7777"),
    ('{"douban_id": 90000009, "title": "x", "genres": ' + "[" * 100_000 + "]" * 100_000 + "}",
     ":1: not valid JSON: nested too deeply"),
    (jsonl_line(title={"zh": "标题"}), ":1: 'title': expected text, got dict"),
    (jsonl_line(directors=[["甲"]]), ":1: 'directors': expected text, got list"),
    (jsonl_line(rating=True), ":1: 'rating': expected a number, got True"),
    (jsonl_line(release_date="2010-02-31"), ":1: 'release_date': no such day in '2010-02-31'"),
    (jsonl_line(release_dates=[{"date": "2010-05-01", "region": "中国", "rerelease": "no"}]),
     ":1: 'release_dates[0].rerelease': expected true or false, got 'no'"),
])
def test_bad_jsonl_value_is_one_line_naming_the_field(seeded, db_url, tmp_path, capsys, line, where):
    path = tmp_path / "bad.jsonl"
    path.write_text(jsonl_line(douban_id=90000001, title="改名") + "\n" + line + "\n",
                    encoding="utf-8")
    assert main(["import", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}{where.replace(':1:', ':2:')}" in err and len(err.splitlines()) == 1, err[:300]
    assert len(err) < 400  # a huge value is quoted cut short, never whole
    assert snapshot_of(db_url) == seeded


def test_a_huge_field_is_quoted_short(seeded, db_url, tmp_path, capsys):
    path = tmp_path / "huge.jsonl"
    path.write_text(jsonl_line(release_date="9" * 5_000_000) + "\n", encoding="utf-8")
    assert main(["import", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:1: 'release_date': cannot parse '9999" in err and len(err) < 300
    assert snapshot_of(db_url) == seeded


@pytest.mark.parametrize("cell, where", [
    ("18446744073709551616", "'douban_id' (column movie_id): '18446744073709551616' is outside"),
    ("9" * 5000, "'douban_id' (column movie_id): '9999"),
])
def test_csv_id_beyond_64_bits_is_refused(seeded, db_url, tmp_path, capsys, cell, where):
    path = tmp_path / "big.csv"
    path.write_text(f"movie_id,title,total_ratings\n{cell},x,1\n", encoding="utf-8")
    assert main(["import", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2: {where}" in err and len(err) < 300
    assert snapshot_of(db_url) == seeded


def test_a_long_csv_id_is_stored_exactly(db_url, tmp_path, capsys):
    # 2**53 + 1 has no float of its own: read through a float it would become its neighbour.
    path = tmp_path / "exact.csv"
    path.write_text("movie_id,title,total_ratings\n9007199254740993,x,1\n", encoding="utf-8")
    assert main(["import", str(path)]) == 0
    assert [r["douban_id"] for r in export_jsonl(capsys)] == [9007199254740993]


def test_database_path_through_a_regular_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "plain").write_text("not a directory\n", encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'plain' / 'sub' / 'db.sqlite'}")
    assert main(["import", str(FIXTURES / "cc0_sample.csv")]) == 1
    err = capsys.readouterr().err
    assert err == f"kadn import: error: cannot use database {tmp_path / 'plain' / 'sub' / 'db.sqlite'}: " \
                  f"{tmp_path / 'plain'} is a file, not a directory\n"
    assert (tmp_path / "plain").read_text(encoding="utf-8") == "not a directory\n"


def test_export_to_a_directory(seeded, tmp_path, capsys):
    assert main(["export", "-o", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"kadn export: error: {tmp_path}: is a directory; -o names the file to write\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.sqlite"]  # no temporary file left behind


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\u0085"])
def test_unicode_line_separators_in_strings_survive_jsonl(db_url, tmp_path, capsys, sep):
    title = f"上{sep}下"
    path = tmp_path / "raw.jsonl"
    # Written raw, as json.dumps(ensure_ascii=False) and other tools do.
    path.write_text(jsonl_line(title=title) + "\n" + jsonl_line(douban_id=90000010, title="二") + "\n",
                    encoding="utf-8")
    assert main(["import", str(path)]) == 0
    out = tmp_path / "out.jsonl"
    assert main(["export", "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert sep not in text and len(text.splitlines()) == 2  # escaped: line-splitting readers see 2 lines
    assert [r["title"] for r in read_jsonl(text)] == [title, "二"]


def test_csv_export_quotes_a_carriage_return(stored, tmp_path, monkeypatch, make_film):
    films = [make_film(1, title="上\r下", genres=["剧\r情"]), make_film(2)]
    stored(films)
    out = tmp_path / "all.csv"
    assert main(["export", "--format", "csv", "-o", str(out)]) == 0
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'again.sqlite'}")
    assert main(["import", str(out)]) == 0
    assert store.load_records(store.connect()) == films
