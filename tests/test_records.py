import pytest

from crawler.arguments import check_arguments
from pipeline.errors import RecordError
from pipeline.film.records import (
    cut,
    first_release,
    normalise_record,
    parse_date,
    parse_runtime,
    short,
    split_list,
)


@pytest.mark.parametrize("text, expected", [
    ("2010-09-01", "2010-09-01"), ("2010-9-1", "2010-09-01"), ("2011", "2011"), ("1992-09", "1992-09"),
    ("", None), (None, None),
])
def test_parse_date(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize("bad", ["2010-13-01", "soon", "2010-09-01(中国大陆)", "20100901"])
def test_parse_date_rejects(bad):
    with pytest.raises(RecordError) as exc:
        parse_date(bad)
    assert exc.value.field == "release_date"


@pytest.mark.parametrize("text, minutes", [
    ("148", 148), ("148分钟", 148), ("95 分钟", 95), ("约60min", 60), ("117分钟(中国大陆)", 117), ("", None), (0, None),
])
def test_parse_runtime(text, minutes):
    assert parse_runtime(text) == minutes


def test_parse_runtime_rejects_text_without_number():
    with pytest.raises(RecordError):
        parse_runtime("unknown")


def test_parse_runtime_names_the_field_for_a_5000_digit_number():
    with pytest.raises(RecordError) as err:
        parse_runtime("9" * 5000 + "分钟")
    assert "runtime_min" in str(err.value) and len(str(err.value)) < 200


def test_split_list():
    assert split_list("剧情, 喜剧") == ["剧情", "喜剧"]
    assert split_list("汉语普通话 / 英语 / ") == ["汉语普通话", "英语"]
    assert split_list(None) == []


def test_first_release_ignores_rereleases_and_sorts_partial_dates():
    dates = [
        {"date": "2020-08-28", "region": "中国大陆重映", "rerelease": True},
        {"date": "2010-09-01", "region": "中国大陆", "rerelease": False},
        {"date": "2010-07-16", "region": "美国", "rerelease": False},
    ]
    assert first_release(dates) == "2010-07-16"
    assert first_release([{"date": "2011", "region": None, "rerelease": False},
                          {"date": "2011-03-02", "region": None, "rerelease": False}]) == "2011"
    assert first_release([{"date": "2020-01-01", "region": "重映", "rerelease": True}]) is None


def test_normalise_fills_year_and_nulls_unknowns():
    rec = normalise_record({"douban_id": "42", "title": " 片 ", "directors": ["A", "A"],
                            "release_dates": [{"date": "2015-02-14", "region": "日本"}],
                            "rating": "", "votes": None, "imdb_id": ""})
    assert rec["douban_id"] == 42 and rec["title"] == "片"
    assert rec["directors"] == ["A"] and rec["director_ids"] == [None]
    assert rec["year"] == 2015 and rec["release_date"] == "2015-02-14"
    assert rec["rating"] is None and rec["votes"] is None and rec["imdb_id"] is None
    assert rec["genres"] == [] and rec["runtime_min"] is None


def test_normalise_credits_a_person_id_once_under_its_first_spelling():
    rec = normalise_record({"douban_id": 42, "title": "片", "actors": ["甲", "乙", "甲", "丙"],
                            "actor_ids": ["7", "7", None, "8"]})
    assert (rec["actors"], rec["actor_ids"]) == (["甲", "甲", "丙"], ["7", None, "8"])


@pytest.mark.parametrize("field, value", [
    ("rating", "9.x"), ("rating", 11), ("votes", "many"), ("votes", -3), ("douban_id", None),
    ("imdb_id", "1375666"), ("director_ids", ["12", "34"]), ("title", ""),
])
def test_normalise_names_the_bad_field(field, value):
    raw = {"douban_id": 1, "title": "t", "directors": ["A"], field: value}
    with pytest.raises(RecordError) as exc:
        normalise_record(raw)
    assert exc.value.field == field


def test_values_in_error_lines_are_cut_to_a_marked_prefix():
    assert cut("abc") == "abc" and cut("x" * 41) == "x" * 40 + "..." and cut(123456, 3) == "123..."
    assert short("x" * 41) == repr("x" * 40) + "..." and short([1] * 30, 10) == repr([1] * 30)[:10] + "..."
    with pytest.raises(ValueError) as err:  # a spider argument of a megabyte is named by its prefix
        check_arguments({"limit": "x" * 1_000_000})
    assert "x" * 40 + "'..." in str(err.value) and len(str(err.value)) < 200
