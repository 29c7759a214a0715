"""The subject-page parser: our hand-written fixtures for every markup variant, and the saved real pages."""

from __future__ import annotations

import re

import pytest

from crawler.parsing import PageUnparsed, listing_page, parse_subject
from tests.conftest import FIXTURES, SHARED

PAGES = FIXTURES / "douban"


def page(name: str) -> str:
    return (PAGES / name).read_text(encoding="utf-8")


def test_full_film_every_field():
    result = parse_subject(page("film_full.html"), "https://movie.douban.com/subject/1234567/")
    assert result.kind == "film", result.reason
    rec = result.record
    assert rec["douban_id"] == 1234567
    assert rec["title"] == "长夜行舟"  # the <title>'s Chinese title, not the v:itemreviewed "长夜行舟 The Long..."
    assert rec["year"] == 2011
    # /celebrity/ID/, www.douban.com/personage/ID/ and subject_search (no id) links
    assert rec["directors"] == ["林远舟", "安娜·克拉克"]
    assert rec["director_ids"] == ["1000101", "27000302"]
    assert rec["writers"] == ["林远舟", "陈小河"]
    assert rec["writer_ids"] == ["1000101", None]
    # hidden cast spans are still the cast, in billing order; the 更多... toggle is not a person
    assert rec["actors"] == ["周雨晴", "马克·琼斯", "赵一诺", "吴天佑", "郑思远"]
    assert rec["actor_ids"] == ["1000201", "27000455", None, "1000204", "1000205"]
    assert rec["genres"] == ["剧情", "悬疑"]
    assert rec["countries"] == ["中国大陆", "中国香港"]
    assert rec["languages"] == ["汉语普通话", "粤语"]
    assert rec["runtime_min"] == 118
    assert rec["release_dates"] == [
        {"date": "2011-05-20", "region": "中国大陆", "rerelease": False},
        {"date": "2011-03-02", "region": "香港电影节", "rerelease": False},
        {"date": "2019-08-01", "region": "中国大陆重映", "rerelease": True},
    ]
    assert rec["release_date"] == "2011-03-02"  # earliest, never the re-release
    assert rec["rating"] == 8.1
    assert rec["votes"] == 48211
    assert rec["comment_count"] == 9876  # the 全部 N 条 link, not the "61234人看过" link to the same URL
    assert rec["review_count"] == 321
    assert rec["imdb_id"] == "tt7654321"
    assert rec["watched_count"] == 61234 and rec["wish_count"] is None  # the page shows 看过 only
    assert result.notes == []  # nothing needed the JSON-LD


def test_sparse_film_falls_back_to_json_ld():
    result = parse_subject(page("film_sparse.html"), "https://movie.douban.com/subject/2345678/")
    assert result.kind == "film", result.reason
    rec = result.record
    assert rec["directors"] == ["高晨"] and rec["director_ids"] == ["27001001"]
    assert rec["writers"] == [] and rec["actors"] == []
    assert rec["genres"] == ["纪录片"] and "genres" in result.notes
    assert rec["runtime_min"] == 62 and "runtime_min" in result.notes
    assert rec["release_dates"] == [{"date": "2011", "region": None, "rerelease": False}]
    assert rec["release_date"] == "2011"
    assert rec["rating"] is None and rec["votes"] is None  # 暂无评分
    assert rec["comment_count"] is None and rec["review_count"] is None
    assert rec["imdb_id"] == "tt0123456"  # IMDb链接 with a link


_AVERAGE = re.compile(r"<strong[^>]*v:average[^>]*>[^<]*</strong>")


@pytest.mark.parametrize("name, rating, votes, noted", [
    ("film_full.html", 8.1, 48211, True),  # no score block: the JSON-LD aggregateRating supplies it
    ("film_sparse.html", None, None, False),  # no score block and an empty JSON-LD rating: nothing filled
])
def test_rating_from_json_ld_is_noted_only_when_json_ld_has_it(name, rating, votes, noted):
    html, n = _AVERAGE.subn("", page(name))
    assert n == 1
    result = parse_subject(html, "https://movie.douban.com/subject/1234567/")
    assert result.kind == "film", result.reason
    assert result.record["rating"] == rating and result.record["votes"] == votes
    assert ("rating" in result.notes) is noted


def test_missing_release_date_keeps_year_and_bare_runtime():
    result = parse_subject(page("film_no_date.html"), "http://127.0.0.1:1/subject/3456789/")
    assert result.kind == "film", result.reason
    rec = result.record
    assert rec["release_dates"] == [] and rec["release_date"] is None
    assert rec["year"] == 2012
    assert rec["runtime_min"] == 60  # 约60min, no v:runtime property
    assert rec["directors"] == ["路人"] and rec["director_ids"] == [None]
    assert rec["rating"] is None and rec["votes"] is None  # 评价人数不足
    assert rec["comment_count"] == 12
    assert rec["imdb_id"] is None


@pytest.mark.parametrize("name, why", [
    ("tv_season.html", "集数"),  # all three TV labels
    ("tv_episodes_only.html", "集数"),
    ("tv_premiere_only.html", "首播"),
    ("tv_episode_length_only.html", "单集片长"),
    ("tv_json_ld_only.html", "JSON-LD @type TVSeries"),  # #info looks like a film's
    ("tv_json_ld_season_list.html", "JSON-LD @type TVSeason"),  # @type given as a list
])
def test_tv_subject_is_recognised(name, why):
    result = parse_subject(page(name), "https://movie.douban.com/subject/4567890/")
    assert result.kind == "tv", result.reason
    assert result.record is None
    assert why in result.reason


@pytest.mark.parametrize("name, why", [("login_wall.html", "no #info"), ("changed_layout.html", "no labelled")])
def test_unparseable_pages_fail_with_a_reason(name, why):
    result = parse_subject(page(name), "https://movie.douban.com/subject/5678901/")
    assert result.kind == "failed" and result.record is None
    assert why in result.reason


def test_truncated_page_fails():
    html = page("film_full.html")
    for cut in (len(html) // 4, len(html) // 2, len(html) - 20):
        result = parse_subject(html[:cut], "https://movie.douban.com/subject/1234567/")
        assert result.kind == "failed" and "truncated" in result.reason


def test_bad_date_fails_naming_the_field():
    html = page("film_full.html").replace('content="2011-05-20(中国大陆)"', 'content="5月20日(中国大陆)"')
    result = parse_subject(html, "https://movie.douban.com/subject/1234567/")
    assert result.kind == "failed" and "release_dates" in result.reason


def test_film_not_yet_out_has_no_score_and_its_wish_count():
    result = parse_subject(page("film_coming.html"), "https://movie.douban.com/subject/36100001/")
    assert result.kind == "film", result.reason
    rec = result.record
    assert rec["rating"] is None and rec["votes"] is None  # 尚未上映: unknown, never 0
    assert rec["wish_count"] == 12345 and rec["watched_count"] is None
    assert rec["release_date"] == "2030-02-14" and rec["year"] == 2030
    assert "rating" not in result.notes


@pytest.mark.parametrize("average, ld_rating", [
    ('<strong class="ll rating_num" property="v:average">0.0</strong>', ""),  # a 0 shown for "none"
    ("", "0"),  # no v:average at all; the JSON-LD says 0
    ("", ""),
])
def test_a_zero_or_empty_score_is_no_score(average, ld_rating):
    html = page("film_coming.html").replace('<strong class="ll rating_num" property="v:average"></strong>', average)
    html = html.replace('"ratingValue": ""', f'"ratingValue": "{ld_rating}"')
    result = parse_subject(html, "https://movie.douban.com/subject/36100001/")
    assert result.kind == "film", result.reason
    assert result.record["rating"] is None and result.record["votes"] is None
    assert "rating" not in result.notes


def test_wish_and_watched_counts_whatever_the_links_point_to():
    result = parse_subject(page("film_interests.html"), "https://movie.douban.com/subject/26200002/")
    assert result.kind == "film", result.reason
    rec = result.record
    assert (rec["wish_count"], rec["watched_count"]) == (1234, 5678)
    assert (rec["rating"], rec["votes"]) == (7.6, 3210)


def test_url_without_subject_id_fails():
    assert parse_subject(page("film_full.html"), "https://movie.douban.com/").kind == "failed"


REAL = SHARED / "douban_pages"


@pytest.mark.skipif(not (REAL / "subject_3541415.html").exists(), reason="../shared/douban_pages absent")
def test_real_film_page():
    html = (REAL / "subject_3541415.html").read_text(encoding="utf-8")
    result = parse_subject(html, "https://movie.douban.com/subject/3541415/")
    assert result.kind == "film", result.reason
    rec = result.record
    assert rec["title"] == "盗梦空间" and rec["year"] == 2010
    assert rec["directors"] == ["克里斯托弗·诺兰"] and rec["director_ids"] == ["1054524"]
    assert rec["writers"] == ["克里斯托弗·诺兰"]
    assert rec["actors"][:2] == ["莱昂纳多·迪卡普里奥", "约瑟夫·高登-莱维特"] and len(rec["actors"]) > 10
    assert all(pid and pid.isdigit() for pid in rec["actor_ids"])
    assert rec["genres"] == ["剧情", "科幻", "悬疑", "冒险"]
    assert rec["countries"] == ["美国", "英国"] and rec["languages"] == ["英语", "日语", "法语"]
    assert rec["runtime_min"] == 148
    assert {"date": "2020-08-28", "region": "中国大陆重映", "rerelease": True} in rec["release_dates"]
    assert rec["release_date"] == "2010-07-16"
    assert rec["rating"] == 9.4 and rec["votes"] > 1_000_000
    assert rec["comment_count"] > 100_000 and 1000 < rec["review_count"] < rec["comment_count"]
    assert rec["imdb_id"] == "tt1375666"
    assert rec["watched_count"] > rec["votes"] and 100_000 < rec["wish_count"] < rec["watched_count"]


@pytest.mark.skipif(not (REAL / "subject_35597581.html").exists(), reason="../shared/douban_pages absent")
def test_real_tv_page_is_skipped():
    html = (REAL / "subject_35597581.html").read_text(encoding="utf-8")
    assert parse_subject(html, "https://movie.douban.com/subject/35597581/").kind == "tv"


def test_listing_page():
    page = listing_page('{"data": [{"id": "1291546", "title": "x"}, {"id": 1292052}]}')
    assert (page.ids, page.size, page.bad) == ([1291546, 1292052], 2, [])
    assert listing_page('{"data": []}').size == 0
    for bad, why in (('{"msg": "x", "r": 1}', "no 'data' list"), ('{"data": null}', "no 'data' list"),
                     ("<html>", "JSONDecodeError"), ('["data"]', "AttributeError"),
                     ('{"data": [{"title": "x"}, {"id": "x"}]}', "none of its 2 entries has a subject id")):
        with pytest.raises(PageUnparsed, match=why):
            listing_page(bad)


def test_listing_page_skips_only_its_bad_entries():
    page = listing_page('{"data": [{"id": "1"}, {"title": "x"}, {"id": "tt1"}, null, {"id": [3]}, {"id": -4}, {"id": 2}]}')
    assert page.ids == [1, 2] and page.size == 7
    assert [b.split(":")[1].strip() for b in page.bad] == ["KeyError", "ValueError", "TypeError", "ValueError",
                                                            "ValueError"]


def test_page_read_in_the_wrong_encoding_is_refused():
    from crawler.mocksite.catalogue import generate_catalogue
    from crawler.mocksite.site import render_subject

    entry = next(e for e in generate_catalogue(40, seed=3) if e["kind"] == "film")
    url = f"https://movie.douban.com/subject/{entry['douban_id']}/"
    garbled = render_subject(entry).encode("gb18030").decode("utf-8", errors="replace")
    result = parse_subject(garbled, url)
    assert result.kind == "failed" and "U+FFFD" in result.reason and "title" in result.reason
    assert parse_subject(render_subject(entry), url).kind == "film"
