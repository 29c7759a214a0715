"""Films about to open: the mock site's coming-soon lists and a `-a coming=1` crawl of them, then a refresh
once the site releases them with scores. Real `scrapy crawl` runs against the mock on 127.0.0.1."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from crawler.arguments import check_arguments
from crawler.mocksite.site import MockDouban, render_subject
from crawler.parsing import PageUnparsed, coming_ids, parse_subject
from tests.test_spider import mock, run_crawl, stored  # noqa: F401 (mock is a fixture)

N_COMING = 12


def listed(site: MockDouban, path: str) -> list[int]:
    with urllib.request.urlopen(site.base_url + path, timeout=10) as answer:
        return coming_ids(answer.read().decode("utf-8"))


def test_the_mock_lists_its_coming_films_across_coming_and_the_cities(mock):  # noqa: F811
    site = mock(60, seed=3, coming=N_COMING)
    coming = [e["douban_id"] for e in site.coming]
    on_coming, beijing = listed(site, "/coming"), listed(site, "/cinema/later/beijing/")
    assert set(on_coming) | set(beijing) == set(coming)  # together the default lists give every one
    assert set(coming) - set(on_coming) and set(on_coming) & set(beijing)  # some on a city page only, some on both
    assert set(listed(site, "/cinema/later/shanghai/")) < set(coming)
    assert site.catalogue[0]["douban_id"] not in on_coming  # the "showing now" link is not the list's
    with pytest.raises(urllib.error.HTTPError):
        listed(site, "/cinema/later/atlantis/")
    # Not out yet: dated after the catalogue, unrated (尚未上映), 想看 only, and the pages parse to that truth.
    last = max(e["douban_id"] for e in site.catalogue if "coming" not in e["traits"])
    for entry, truth in zip(site.coming, site.expected_coming()):
        assert entry["douban_id"] > last and entry["release_date"] > "2026"
        assert truth["rating"] is None and truth["votes"] is None and truth["watched_count"] is None
        assert truth["wish_count"] > 0 and "尚未上映" in render_subject(entry)
        assert parse_subject(render_subject(entry), f"http://x/subject/{entry['douban_id']}/").record == truth
    assert [e["douban_id"] for e in MockDouban(60, seed=3, coming=N_COMING).coming] == coming  # deterministic


def test_release_moves_a_film_from_coming_to_rated(mock):  # noqa: F811
    site = mock(40, seed=5, coming=4)
    did = site.coming[1]["douban_id"]
    request = urllib.request.Request(f"{site.base_url}/_mock/release/{did}?rating=7.4&votes=800", method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    assert did not in listed(site, "/coming") + listed(site, "/cinema/later/beijing/")
    record = parse_subject(render_subject(site.by_id[did]), f"http://x/subject/{did}/").record
    assert (record["rating"], record["votes"], record["watched_count"]) == (7.4, 800, 1200)
    assert did not in {r["douban_id"] for r in site.expected_coming()}
    for query, why in ((f"{did}?rating=7.4&votes=800", b"not a coming film"),  # released already
                       (f"{site.coming[0]['douban_id']}?rating=7.4&votes=3", b"30 raters or more"),
                       ("x", b"usage: POST /_mock/release/ID")):
        bad = urllib.request.Request(f"{site.base_url}/_mock/release/{query}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(bad, timeout=10)
        assert exc.value.code == 400 and why in exc.value.read()


def test_coming_ids_reads_only_the_lists():
    page = ('<html><body><a href="/subject/1/">热映</a><table class="coming_list"><tr><td>'
            '<a href="https://movie.douban.com/subject/22/">a</a></td></tr></table><div id="showing-soon">'
            '<a class="thumb" href="/subject/33/"></a><h3><a href="/subject/33/">b</a></h3>'
            '<a href="/subject/22/">a</a></div></body></html>')
    assert coming_ids(page) == [22, 33]
    assert coming_ids('<div id="showing-soon"></div>') == []  # a city with nothing coming
    with pytest.raises(PageUnparsed, match="no coming-soon list"):
        coming_ids("<html><title>登录豆瓣</title></html>")


@pytest.mark.parametrize("args, message", [
    ({"coming": "1", "years": "2012"}, "cannot be combined with -a years"),
    ({"coming": "yes", "ids": "1,2"}, "cannot be combined with -a ids"),
    ({"coming": "1", "refresh": "1"}, "cannot be combined with -a refresh"),
    ({"cities": "shanghai"}, "add -a coming=1"),
    ({"coming": "1", "cities": "上海"}, "cities must be Douban city names"),
    ({"coming": "maybe"}, "coming must be 1 or 0"),
])
def test_coming_arguments_are_checked(args, message):
    with pytest.raises(ValueError, match=message):
        check_arguments(args)


def test_a_clashing_coming_crawl_exits_2_in_one_line(db_url):
    result = run_crawl("http://127.0.0.1:9", db_url, "coming=1", "years=2012")
    assert result.returncode == 2 and "Traceback" not in result.log
    assert "-a coming=1 cannot be combined with -a years" in result.log


def test_coming_arguments_that_combine():
    check_arguments({"coming": "1", "limit": "5", "cities": "beijing,shanghai"})
    check_arguments({"coming": "1", "refresh": "0", "ids": ""})  # asking for nothing clashes with nothing


def test_a_coming_crawl_stores_the_coming_films_then_a_refresh_their_scores(mock, db_url):  # noqa: F811
    site = mock(60, seed=3, coming=N_COMING)
    result = run_crawl(site.base_url, db_url, "coming=1", "cities=beijing,shanghai")
    assert result.returncode == 0, result.log[-3000:]
    truth = site.expected_coming()
    assert stored(db_url) == truth  # exactly the coming films: no score, their wish counts
    assert result["douban/coming_found"] == N_COMING and result["douban/discovery"] == "coming"
    assert result["douban/stored"] == N_COMING
    assert all(n == 1 for n in site.served.values()) and len(site.served) == N_COMING  # each fetched once
    assert site.hits["/robots.txt"] >= 1 and site.hits["/coming"] == 1  # robots.txt rules this crawl too

    released = [site.release(r["douban_id"], 6.0 + k / 10, 100 + 50 * k) for k, r in enumerate(truth[:3])]
    ids = ",".join(str(e["douban_id"]) for e in released)
    again = run_crawl(site.base_url, db_url, f"ids={ids}")
    assert again.returncode == 0, again.log[-3000:]
    after = {r["douban_id"]: r for r in stored(db_url)}
    assert len(after) == N_COMING  # updated, not duplicated
    for entry in released:
        rec = after[entry["douban_id"]]
        assert (rec["rating"], rec["votes"]) == (entry["rating"], entry["votes"])
        assert (rec["wish_count"], rec["watched_count"]) == (entry["wish_count"], entry["watched_count"])
    assert [after[r["douban_id"]] for r in truth[3:]] == truth[3:]  # the others as they were

    # `-a refresh=1` picks a release up too, once the stored copy is due (here at once: 0 days).
    fourth = site.release(truth[3]["douban_id"], 8.1, 2000)
    refreshed = run_crawl(site.base_url, db_url, "refresh=1", DOUBAN_REFRESH_DAYS="0")
    assert refreshed.returncode == 0 and refreshed["douban/discovery"] == "refresh"
    rec = {r["douban_id"]: r for r in stored(db_url)}[fourth["douban_id"]]
    assert (rec["rating"], rec["votes"], rec["watched_count"]) == (8.1, 2000, fourth["watched_count"])
    assert len(stored(db_url)) == N_COMING


def test_a_coming_crawl_obeys_limit_and_a_second_one_refetches_the_counts(mock, db_url):  # noqa: F811
    site = mock(40, seed=8, coming=N_COMING)
    first = run_crawl(site.base_url, db_url, "coming=1", "limit=3")
    assert first.returncode == 0 and first["douban/subjects_requested"] == 3 and len(stored(db_url)) == 3
    # A second run the same day fetches the listed films again: their wish counts move daily.
    second = run_crawl(site.base_url, db_url, "coming=1")
    on_default_lists = set(listed(site, "/coming")) | set(listed(site, "/cinema/later/beijing/"))
    assert second["douban/stored"] == len(on_default_lists) and second["douban/fresh_skipped"] == 0
    assert {r["douban_id"] for r in stored(db_url)} == on_default_lists



def test_a_stopped_coming_crawl_resumes_with_its_jobdir_fetching_each_film_once(mock, db_url, tmp_path):  # noqa: F811
    site = mock(40, seed=9, coming=N_COMING, error_rate=0.2)  # some lists and pages answer 5xx at first
    one_at_a_time = {"JOBDIR": str(tmp_path / "job"), "CONCURRENT_REQUESTS": "1",
                     "CONCURRENT_REQUESTS_PER_DOMAIN": "1", "DOUBAN_STORE_BATCH": "1"}
    first = run_crawl(site.base_url, db_url, "coming=1", CLOSESPIDER_ITEMCOUNT="4", **one_at_a_time)
    assert first["finish_reason"] == "closespider_itemcount", first.log[-3000:]
    assert 4 <= len(stored(db_url)) < N_COMING
    second = run_crawl(site.base_url, db_url, "coming=1", **one_at_a_time)
    assert second.returncode == 0 and second["finish_reason"] == "finished", second.log[-3000:]
    assert second["douban/resumed_from"]
    assert stored(db_url) == site.expected_coming()
    assert first["douban/stored"] + second["douban/stored"] == N_COMING
    assert max(site.served.values()) == 1 and site.counts["5xx"]


def test_coming_lists_forbidden_by_robots_txt_stop_the_crawl_plainly(mock, db_url):  # noqa: F811
    site = mock(30, seed=1, coming=4, robots="closed")
    result = run_crawl(site.base_url, db_url, "coming=1", "cities=beijing,shanghai")
    assert result.returncode == 1 and result["finish_reason"] == "discovery_blocked"
    assert dict(site.hits) == {"/robots.txt": 1} and not stored(db_url)  # nothing else was even asked for
    assert "disallows the subject pages" in result.log


def test_a_coming_list_robots_txt_forbids_is_not_read(mock, db_url):  # noqa: F811
    site = mock(30, seed=1, coming=N_COMING, robots="no-cinema")
    result = run_crawl(site.base_url, db_url, "coming=1", "cities=beijing,shanghai")
    assert result.returncode == 0, result.log[-3000:]
    assert not any(path.startswith("/cinema/") for path in site.hits)
    assert {r["douban_id"] for r in stored(db_url)} == set(listed(site, "/coming")) < {e["douban_id"] for e in site.coming}
    assert "disallows the coming-soon list /cinema/later/shanghai/" in result.log


def test_given_subjects_obey_robots_txt_before_any_page_is_requested(mock, db_url):  # noqa: F811
    # Scrapy's own robots check lets some requests through while it fetches robots.txt: the crawl reads it first.
    site = mock(30, seed=1, robots="no-subjects")
    ids = ",".join(str(r["douban_id"]) for r in site.expected_films()[:6])
    result = run_crawl(site.base_url, db_url, f"ids={ids}")
    assert result.returncode == 1 and result["finish_reason"] == "discovery_blocked", result.log[-3000:]
    assert not any(path.startswith("/subject/") for path in site.hits) and not stored(db_url)
    assert "disallows the subject pages" in result.log
