"""End-to-end: real `scrapy crawl douban` runs against the mock Douban site on 127.0.0.1.

Each test starts the mock in this process (so it can read the mock's counters) and the crawl as a
subprocess with DATABASE_URL pointing at a temporary SQLite file. Politeness is switched off and pauses
shortened so the runs stay within seconds; loopback only, never the internet.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from crawler.mocksite.catalogue import films, films_in_years, generate_catalogue, store_catalogue
from crawler.mocksite.harness import parse_stats
from crawler.mocksite.site import MockDouban
from pipeline.film import store
from tests.conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
SCRAPY = str(Path(sys.executable).with_name("scrapy"))
FAST = {
    "AUTOTHROTTLE_ENABLED": "0", "DOWNLOAD_DELAY": "0", "CONCURRENT_REQUESTS": "32",
    "CONCURRENT_REQUESTS_PER_DOMAIN": "32", "RETRY_BACKOFF_BASE": "0.02", "RETRY_BACKOFF_MAX": "0.2",
    "DOUBAN_BAN_PAUSE": "0.1", "DOUBAN_BAN_PAUSE_MAX": "0.5", "DOWNLOAD_TIMEOUT": "10",
}


class Crawl:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.returncode = proc.returncode
        self.log = proc.stderr + proc.stdout
        self.stats = parse_stats(self.log)

    def __getitem__(self, key):
        return self.stats.get(key, 0)


def crawl_cmd(base: str, *args: str, **settings: str) -> list[str]:
    cmd = [SCRAPY, "crawl", "douban", "-s", f"DOUBAN_BASE_URL={base}"]
    for key, value in {**FAST, **settings}.items():
        cmd += ["-s", f"{key}={value}"]
    for arg in args:
        cmd += ["-a", arg]
    return cmd


def run_crawl(base: str, db_url: str, *args: str, env: dict | None = None, timeout: float = 240,
              **settings: str) -> Crawl:
    full_env = {**os.environ, "DATABASE_URL": db_url, **(env or {})}
    proc = subprocess.run(crawl_cmd(base, *args, **settings), cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    return Crawl(proc)


@pytest.fixture
def mock():
    sites = []

    def start(*args, **kwargs) -> MockDouban:
        site = MockDouban(*args, **kwargs)
        site.serve(0)
        sites.append(site)
        return site

    yield start
    for site in sites:
        site.close()


def stored(db_url: str) -> list[dict]:
    return store.load_records(store.connect(db_url))


def in_years_tv(site: MockDouban, lo=2007, hi=2019) -> int:
    return sum(e["kind"] == "tv" and e["year"] is not None and lo <= e["year"] <= hi for e in site.catalogue)


REAL = SHARED / "douban_pages" / "subject_3541415.html"


@pytest.mark.skipif(not REAL.exists(), reason="../shared/douban_pages absent")
def test_real_page_by_id(mock, db_url):
    site = mock(catalogue=[], files={3541415: REAL})  # the file is read from ../shared at request time
    result = run_crawl(site.base_url, db_url, "ids=3541415")
    assert result.returncode == 0, result.log[-3000:]
    assert result["douban/stored"] == 1 and result["douban/discovery"] == "ids"
    (rec,) = stored(db_url)
    assert rec["douban_id"] == 3541415 and rec["title"] == "盗梦空间" and rec["year"] == 2010
    assert rec["directors"] == ["克里斯托弗·诺兰"] and rec["director_ids"] == ["1054524"]
    assert rec["actors"][0] == "莱昂纳多·迪卡普里奥" and len(rec["actors"]) == len(rec["actor_ids"]) > 10
    assert rec["genres"] == ["剧情", "科幻", "悬疑", "冒险"] and rec["countries"] == ["美国", "英国"]
    assert rec["runtime_min"] == 148 and rec["release_date"] == "2010-07-16"
    assert any(d["rerelease"] and d["region"] == "中国大陆重映" for d in rec["release_dates"])
    assert rec["rating"] == 9.4 and rec["votes"] > 1_000_000 and rec["imdb_id"] == "tt1375666"
    assert rec["comment_count"] > rec["review_count"] > 0


@pytest.mark.slow
def test_full_crawl_stores_exactly_the_catalogue(mock, db_url):
    site = mock(3000, seed=21)
    result = run_crawl(site.base_url, db_url)
    assert result.returncode == 0, result.log[-3000:]
    expected = site.expected_films()
    got = stored(db_url)
    assert [r["douban_id"] for r in got] == [r["douban_id"] for r in expected]  # none missing, none extra
    assert got == expected  # every field equal to the catalogue's truth
    assert result["douban/discovery"] == "listing"
    assert result["douban/stored"] == len(expected)  # each film written once
    assert result["douban/tv_skipped"] == in_years_tv(site) > 0
    assert result["douban/parse_failed"] == 0 and result["douban/banned"] == 0
    assert "douban crawl finished: discovery=listing" in result.log
    # The catalogue's special cases went through the real crawl too.
    traits = {t for e in site.catalogue if e["kind"] == "film" and 2007 <= e["year"] <= 2019 for t in e["traits"]}
    assert {"no_score", "rerelease", "concert", "no_actors", "year_only", "no_date"} <= traits


@pytest.mark.slow
def test_crawl_with_faults(mock, db_url):
    site = mock(600, seed=5, error_rate=0.08, slow_rate=0.02, slow_ms=1500, truncate_rate=0.05,
                ban_after=150, ban_for=12)
    result = run_crawl(site.base_url, db_url, DOWNLOAD_TIMEOUT="1")
    assert result.returncode == 0, result.log[-3000:]
    assert site.counts["5xx"] > 0 and site.counts["truncated"] > 0 and site.counts["ban"] == 12
    assert site.counts["slow"] > 0
    assert stored(db_url) == site.expected_films()
    assert result["douban/banned"] == 12
    assert sum(v for k, v in result.stats.items() if k.startswith("retry/reason_count/") and "Timeout" in k) > 0  # stalled answers retried
    assert result["retry/count"] > site.counts["slow"]  # and 5xx answers too
    assert result["douban/parse_retried"] == site.counts["truncated"]  # cut pages fetched again
    assert result["douban/parse_failed"] == 0
    assert "ban detected" in result.log


def test_login_walled_subjects_are_skipped_not_a_ban(mock, db_url):
    site = mock(300, seed=19, login_rate=0.03)
    walled = [e["douban_id"] for e in site.catalogue if site.needs_login(e["douban_id"])
              and 2007 <= e["year"] <= 2019]  # films and TV subjects alike: the listing serves both
    assert walled
    result = run_crawl(site.base_url, db_url, DOUBAN_BAN_PAUSE="5", DOUBAN_BAN_PAUSE_MAX="5",
                       CONCURRENT_REQUESTS="4", CONCURRENT_REQUESTS_PER_DOMAIN="4")
    assert result.returncode == 0, result.log[-3000:]
    assert stored(db_url) == site.expected_films()
    assert result["douban/login_required"] == len(walled) and "login required for" in result.log
    # Isolated walls are not taken for an IP ban: a pause (5 s each here) is rare, not one per wall.
    assert result.log.count("ban detected") < len(walled) // 2


def test_ban_storm_stops_the_crawl(mock, db_url):
    site = mock(200, seed=20, ban_after=40, ban_for=100_000)
    result = run_crawl(site.base_url, db_url, DOUBAN_BAN_MAX_CONSECUTIVE="6", DOUBAN_BAN_PAUSE="0.05",
                       DOUBAN_BAN_PAUSE_MAX="0.1")
    assert result["finish_reason"] == "banned" and result.returncode == 1, result.log[-3000:]
    assert "stopping the crawl; resume later" in result.log
    assert result["douban/banned"] >= 7


@pytest.mark.slow
def test_broken_pages_never_overwrite_and_refresh_updates_counts(mock, db_url):
    site = mock(400, seed=8, broken_rate=0.06)
    truth = {r["douban_id"]: r for r in films(site.catalogue)}
    # The store already holds every film, fetched long ago, with stale scores and counts.
    # (Only known values go stale: the store keeps a stored value when a new record leaves it unknown.)
    stale = [dict(r, votes=r["votes"] and r["votes"] + 7, rating=r["rating"] and 5.0, comment_count=1)
             for r in truth.values()]
    engine = store.connect(db_url)
    store.upsert_records(engine, stale, source="old", fetched_at=datetime.datetime(2020, 1, 1))
    before = {r["douban_id"]: r for r in stored(db_url)}

    result = run_crawl(site.base_url, db_url, "refresh=1", DOUBAN_REFRESH_DAYS="30")
    assert result.returncode == 0, result.log[-3000:]
    assert result["douban/discovery"] == "refresh"
    after = {r["douban_id"]: r for r in stored(db_url)}
    broken = {d for d in truth if site.is_broken(d)}
    assert broken and result["douban/parse_failed"] == len(broken)
    for did, rec in after.items():
        if did in broken:
            assert rec == before[did]  # a page that did not parse leaves the stored film as it was
        else:
            assert rec == truth[did]  # score and counts refreshed
    assert "page did not parse, nothing stored for it" in result.log

    # Just refreshed: a second refresh with the same age finds nothing stale except the broken films.
    again = run_crawl(site.base_url, db_url, "refresh=1", DOUBAN_REFRESH_DAYS="30")
    assert again["douban/subjects_requested"] == len(broken)


def test_refresh_without_the_subject_gate_stops_saying_why(mock, db_url):
    site = mock(30, seed=8)
    store_catalogue(site.catalogue, db_url, fetched_at=datetime.datetime(2020, 1, 1))  # every film is due
    result = run_crawl(site.base_url, db_url, "refresh=1",
                       SPIDER_MIDDLEWARES='{"crawler.spidermiddlewares.SubjectGate": null}')
    assert result.returncode == 1 and result["finish_reason"] == "discovery_blocked", result.log[-3000:]
    assert "-a refresh=1 needs the spider middleware crawler.spidermiddlewares.SubjectGate" in result.log
    assert "Traceback" not in result.log
    assert not [path for path in site.hits if path.startswith("/subject/")]


def test_discovery_skips_recently_fetched_films(mock, db_url):
    site = mock(150, seed=4)
    expected = site.expected_films()
    store_catalogue(site.catalogue, db_url, fetched_at=datetime.datetime.now(datetime.timezone.utc))  # fresh copies
    result = run_crawl(site.base_url, db_url)
    assert result.returncode == 0, result.log[-3000:]
    assert result["douban/fresh_skipped"] == len(expected)
    assert result["douban/subjects_requested"] == in_years_tv(site)  # only subjects not stored yet


@pytest.mark.slow
def test_kill_and_resume_stores_every_film_once(mock, db_url, tmp_path):
    # Slow enough to interrupt mid-way; with faults, so retries sit in the JOBDIR queue at the stop.
    site = mock(1200, seed=13, slow_rate=1.0, slow_ms=8, error_rate=0.1, truncate_rate=0.05, ban_after=300,
                ban_for=6)
    expected = site.expected_films()
    jobdir = tmp_path / "job"
    settings = {"JOBDIR": str(jobdir), "CONCURRENT_REQUESTS": "8", "CONCURRENT_REQUESTS_PER_DOMAIN": "8",
                "DOUBAN_STORE_BATCH": "10"}
    env = {**os.environ, "DATABASE_URL": db_url}
    proc = subprocess.Popen(crawl_cmd(site.base_url, **settings), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    engine = store.connect(db_url)
    deadline = time.monotonic() + 120
    while store.count_movies(engine) < len(expected) // 3:
        assert proc.poll() is None and time.monotonic() < deadline, "crawl ended before it could be killed"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # as one Ctrl-C: Scrapy stops gracefully and keeps the JOBDIR state
    out, _ = proc.communicate(timeout=120)
    first = parse_stats(out)
    assert first.get("finish_reason") == "shutdown", out[-3000:]
    assert 0 < store.count_movies(engine) < len(expected)

    second = run_crawl(site.base_url, db_url, **settings)
    assert second.returncode == 0, second.log[-3000:]
    assert second["finish_reason"] == "finished"
    assert stored(db_url) == expected
    # Exactly once: the two runs together stored each film one time and fetched no subject page twice
    # (a page answered 5xx, banned or cut is fetched again, in whichever run, until served whole once).
    assert first.get("douban/stored", 0) + second["douban/stored"] == len(expected)
    assert site.counts["5xx"] and site.counts["truncated"] and site.counts["ban"]
    assert second["retry/count"] or second["douban/duplicate_skipped"]  # the faults reached the resumed run
    assert max(site.served.values()) == 1


@pytest.mark.slow
def test_hard_kill_then_resume_loses_nothing(mock, db_url, tmp_path):
    # SIGKILL leaves Scrapy's seen-set on disk without its queue; the crawl must still finish the job.
    site = mock(700, seed=14, slow_rate=1.0, slow_ms=8)
    expected = site.expected_films()
    settings = {"JOBDIR": str(tmp_path / "job"), "CONCURRENT_REQUESTS": "8",
                "CONCURRENT_REQUESTS_PER_DOMAIN": "8", "DOUBAN_STORE_BATCH": "10"}
    proc = subprocess.Popen(crawl_cmd(site.base_url, **settings), cwd=ROOT,
                            env={**os.environ, "DATABASE_URL": db_url}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    engine = store.connect(db_url)
    deadline = time.monotonic() + 120
    while store.count_movies(engine) < len(expected) // 3:
        assert proc.poll() is None and time.monotonic() < deadline, "crawl ended before it could be killed"
        time.sleep(0.1)
    proc.kill()
    proc.wait(timeout=30)
    killed_at = store.count_movies(engine)
    assert killed_at < len(expected)

    second = run_crawl(site.base_url, db_url, **settings)
    assert second.returncode == 0, second.log[-3000:]
    assert "resuming the crawl begun" in second.log
    assert stored(db_url) == expected
    assert second["douban/stored"] == len(expected) - killed_at  # what was stored stays stored
    # Only pages in flight or in the unflushed batch at the kill can be fetched twice.
    twice = sum(n > 1 for path, n in site.hits.items() if path.startswith("/subject/"))
    assert twice <= 10 + 8 + in_years_tv(site)


@pytest.mark.slow
@pytest.mark.parametrize("discovery", ["auto", "listing"])
def test_blocked_listing_falls_back_or_stops(mock, db_url, discovery):
    site = mock(200, seed=12, block_listing=True)  # robots.txt allows /j/, the server answers 403
    result = run_crawl(site.base_url, db_url, DOUBAN_DISCOVERY=discovery, DOUBAN_BAN_RETRIES="1")
    assert result.returncode == (0 if discovery == "auto" else 1), result.log[-3000:]
    assert result["douban/banned"] > 0
    if discovery == "auto":
        assert result["douban/discovery"] == "sitemap"
        assert "discovery: sitemap (the listing /j/new_search_subjects failed" in result.log
        assert stored(db_url) == site.expected_films()
    else:
        assert result["finish_reason"] == "discovery_blocked"
        assert "discovery blocked: the listing /j/new_search_subjects failed before" in result.log
        assert stored(db_url) == []


def test_sitemap_discovery_when_robots_disallows_listing(mock, db_url):
    site = mock(250, seed=3, robots="no-listing")
    result = run_crawl(site.base_url, db_url)
    assert result.returncode == 0, result.log[-3000:]
    assert result["douban/discovery"] == "sitemap"
    assert "discovery: sitemap (robots.txt disallows the listing /j/new_search_subjects" in result.log
    assert site.hits.get("/j/new_search_subjects", 0) == 0
    assert stored(db_url) == site.expected_films()
    outside = sum(e["kind"] == "film" and not 2007 <= e["year"] <= 2019 for e in site.catalogue)
    assert result["douban/out_of_years"] == outside > 0


@pytest.mark.parametrize("robots, discovery", [("closed", "auto"), ("no-listing", "listing"),
                                               ("no-subjects", "auto")])
def test_blocked_discovery_stops_plainly(mock, db_url, robots, discovery):
    site = mock(50, seed=1, robots=robots)
    result = run_crawl(site.base_url, db_url, DOUBAN_DISCOVERY=discovery)
    assert result["finish_reason"] == "discovery_blocked" and result.returncode == 1
    assert result["douban/discovery"] == "blocked"
    assert "discovery blocked:" in result.log and "nothing was crawled" in result.log
    assert not [p for p in site.hits if p.startswith(("/subject/", "/j/"))]
    assert stored(db_url) == []


def test_robots_crawl_delay_is_honoured(mock, db_url):
    site = mock(120, seed=7, robots="crawl-delay")
    result = run_crawl(site.base_url, db_url, "years=2012", "limit=4", DOWNLOAD_DELAY_JITTER="0")
    assert result.returncode == 0, result.log[-3000:]
    assert result["douban/crawl_delay"] == 1.0 and "Crawl-delay: 1 s; honoured" in result.log
    pages = result["downloader/response_count"]
    assert pages >= 5 and result["elapsed_time_seconds"] >= (pages - 2) * 1.0  # one request a second


def test_robots_can_be_overridden(mock, db_url):
    site = mock(60, seed=2, robots="closed")
    result = run_crawl(site.base_url, db_url, ROBOTSTXT_OBEY="False")
    assert result["douban/discovery"] == "listing"
    assert stored(db_url) == site.expected_films()


@pytest.mark.parametrize("status", [403, 503])
@pytest.mark.parametrize("obey", [True, False])
def test_unreadable_robots_txt_stops_only_when_obeyed(mock, db_url, status, obey):
    site = mock(60, seed=2, robots_status=status)
    result = run_crawl(site.base_url, db_url, ROBOTSTXT_OBEY=str(obey), DOUBAN_BAN_RETRIES="1", RETRY_TIMES="1")
    assert site.counts["robots_error"] > 0
    if obey:
        assert result["finish_reason"] == "discovery_blocked" and result.returncode == 1, result.log[-3000:]
        assert stored(db_url) == []
    else:  # as if robots.txt were empty
        assert result.returncode == 0 and result["finish_reason"] == "finished", result.log[-3000:]
        assert result["douban/discovery"] == "listing"
        assert "ROBOTSTXT_OBEY is off, so discovery goes on as if it were empty" in result.log
        assert stored(db_url) == site.expected_films()


def test_cookie_is_sent_but_never_logged_or_stored(mock, db_url, tmp_path):
    secret = "dbcl2=s3cr3t-cookie-value"
    site = mock(40, seed=6, error_rate=0.3)  # retries put requests back into the JOBDIR queue
    jobdir = tmp_path / "job"
    result = run_crawl(site.base_url, db_url, env={"DOUBAN_COOKIE": secret}, JOBDIR=str(jobdir),
                       LOG_LEVEL="DEBUG")
    assert result.returncode == 0, result.log[-3000:]
    assert site.cookies and all(secret in c for c in site.cookies)
    assert secret not in result.log
    for path in [*jobdir.rglob("*"), Path(db_url.removeprefix("sqlite:///"))]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_limit_and_years(mock, db_url):
    site = mock(300, seed=9)
    result = run_crawl(site.base_url, db_url, "years=2012", "limit=7")
    assert result.returncode == 0, result.log[-3000:]
    assert result["douban/subjects_requested"] == 7
    got = stored(db_url)
    assert 0 < len(got) <= 7 and all(r["year"] == 2012 for r in got)


def test_listing_that_ignores_start_does_not_paginate_forever(mock, db_url):
    site = mock(300, seed=9, listing_ignores_start=True)  # every listing page repeats the first
    result = run_crawl(site.base_url, db_url, "years=2012", timeout=60)
    assert result.returncode == 0 and result["finish_reason"] == "finished", result.log[-3000:]
    assert site.hits["/j/new_search_subjects"] == 2  # the first page, and the repeat that stopped it
    assert result["douban/listing_repeated"] == 1
    assert "brought no film not already listed in this run: year 2012 stops at offset 20" in result.log
    first_page = [e["douban_id"] for e in site.by_year[2012][:20] if e["kind"] == "film"]
    assert sorted(r["douban_id"] for r in stored(db_url)) == sorted(first_page)


@pytest.mark.parametrize("arg, message", [
    ("years=twenty", "-a years=twenty: years must look like 2007-2019"),
    ("ids=x,y", "-a ids=x,y: ids must be Douban subject ids"),
    ("limit=abc", "-a limit=abc: limit must be a positive number"),
    ("limit=0", "-a limit=0: limit must be a positive number"),
    ("yeras=2012", "unknown spider argument -a yeras=2012: did you mean -a years?"),
    ("refresh=maybe", "-a refresh=maybe: refresh must be 1 or 0"),
])
def test_bad_arguments_fail_clearly(db_url, arg, message):
    result = run_crawl("http://127.0.0.1:9", db_url, arg)
    assert result.returncode == 2  # a usage error, before anything is crawled
    # One line: no usage block, no start-up log.
    assert result.log.startswith("scrapy crawl: error: ") and result.log.count("\n") == 1, result.log[-3000:]
    assert message in result.log


@pytest.mark.parametrize("setting, message", [
    ({"CONCURRENT_REQUESTS": "many"}, "-s CONCURRENT_REQUESTS=many: CONCURRENT_REQUESTS must be an integer"),
    ({"DOUBAN_BAN_PAUSE": "-5"}, "-s DOUBAN_BAN_PAUSE=-5: DOUBAN_BAN_PAUSE must be at least 0"),
    ({"DOUBAN_BASE_URL": "ftp://d.test"}, "-s DOUBAN_BASE_URL=ftp://d.test: DOUBAN_BASE_URL must be an absolute"),
    ({"DOUBAN_REFRESH_DAYS": "soon"}, "-s DOUBAN_REFRESH_DAYS=soon: DOUBAN_REFRESH_DAYS must be a number"),
    ({"ROBOTSTXT_OBEY": "yes"}, "-s ROBOTSTXT_OBEY=yes: ROBOTSTXT_OBEY must be true/false"),
    ({"DOWNLOAD_DELAY": "9" * 50_000 + "x"}, "-s DOWNLOAD_DELAY=" + "9" * 40 + "...: DOWNLOAD_DELAY must be"),
])
def test_bad_settings_fail_clearly(db_url, setting, message):
    result = run_crawl("http://127.0.0.1:9", db_url, **setting)
    assert result.returncode == 2 and message in result.log
    # One line (a bad value quoted cut short): no usage block, no start-up log.
    assert result.log.startswith("scrapy crawl: error: bad setting ") and result.log.count("\n") == 1, result.log
    assert len(result.log) < 500


def test_settings_check_accepts_what_scrapy_accepts():
    from scrapy.exceptions import UsageError

    from crawler.commands.crawl import check_settings

    check_settings(["DOWNLOAD_TIMEOUT=7.5", "CONCURRENT_REQUESTS=8", "DOWNLOAD_DELAY=0", "ROBOTSTXT_OBEY=False",
                    "COOKIES_ENABLED=0", "DOUBAN_LEASE_SECONDS=30", "DOUBAN_REDIS_PREFIX=crawl-2", "NOT_OURS=x"])
    for bad in ("DOUBAN_LEASE_SECONDS=soon", "DOUBAN_LEASE_MAX_ATTEMPTS=2.5", "CONCURRENT_ITEMS=many"):
        with pytest.raises(UsageError, match=bad.split("=")[0]):
            check_settings([bad])


def test_unreachable_store_fails_in_one_line(mock):
    site = mock(20, seed=1)
    result = run_crawl(site.base_url, "postgresql+psycopg://kadn:kadn@127.0.0.1:1/kadn", timeout=60)
    assert result.returncode == 1
    errors = [line for line in result.log.splitlines() if "cannot open the movie store" in line]
    assert len(errors) == 1 and "127.0.0.1:1" in errors[0], result.log[-3000:]
    assert "Traceback" not in result.log
    assert not site.hits  # nothing was fetched


def test_rate_limit_answer_is_a_ban_not_the_end_of_a_year(mock, db_url):
    # Listing requests 3 to 8 get HTTP 200 with Douban's "abnormal requests from your IP" JSON and no data.
    site = mock(400, seed=24, throttle_after=2, throttle_for=6)
    result = run_crawl(site.base_url, db_url)
    assert result.returncode == 0, result.log[-3000:]
    assert site.counts["throttled"] == 6
    assert result["douban/banned/throttled"] == 6 and result["douban/banned"] == 6
    assert result["douban/listing_unreadable"] == 0 and "ban detected (throttled" in result.log
    assert stored(db_url) == site.expected_films()  # every year discovered to its end


def test_unknown_spider_fails_clearly(db_url):
    proc = subprocess.run([SCRAPY, "crawl", "nosuch"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DATABASE_URL": db_url})
    assert proc.returncode == 2
    assert proc.stderr == "scrapy crawl: error: no spider named 'nosuch'; this project has: douban\n"


def test_spider_that_cannot_start_gives_one_traceback(db_url):
    # A component whose from_crawler fails: Scrapy reports it; our crawl command must not add its own traceback.
    result = run_crawl("http://127.0.0.1:9", db_url, RETRY_EXCEPTIONS="nosuch.Error")
    assert result.returncode == 1
    assert "No module named 'nosuch'" in result.log
    assert "Crawler.stats is not set yet" not in result.log


@pytest.mark.parametrize("base, setting, message", [
    ("http://127.0.0.1:9", {"DOUBAN_BAN_PAUSE": "-5"}, "-s DOUBAN_BAN_PAUSE=-5: DOUBAN_BAN_PAUSE must be at least 0"),
    ("ftp://127.0.0.1:9", {}, "-s DOUBAN_BASE_URL=ftp://127.0.0.1:9: DOUBAN_BASE_URL must be an absolute http"),
    ("http://127.0.0.1:9", {"CONCURRENT_REQUESTS": "-1"}, "CONCURRENT_REQUESTS must be at least 1"),
    ("http://127.0.0.1:9", {"DOUBAN_DISCOVERY": "bogus"}, "DOUBAN_DISCOVERY must be one of auto, listing, sitemap"),
    ("http://127.0.0.1:9", {"RETRY_TIMES": "-3"}, "RETRY_TIMES must be at least 0"),
    ("http://127.0.0.1:9", {"REDIS_URL": "http://u:hunter2@127.0.0.1:9/0?password=hunter2"},
     "REDIS_URL=http://u:***@127.0.0.1:9/0?password=***: REDIS_URL must be an absolute redis"),
])
def test_settings_out_of_range_are_refused_before_the_crawl(db_url, base, setting, message):
    result = run_crawl(base, db_url, timeout=60, **setting)
    assert result.returncode == 2 and message in result.log, result.log[-3000:]
    assert "Traceback" not in result.log and "hunter2" not in result.log
    assert "Spider opened" not in result.log  # refused before anything started


def test_passwords_in_query_parameters_are_never_shown(mock, db_url):
    site = mock(20, seed=1)
    url = "postgresql+psycopg://kadn@127.0.0.1:1/kadn?sslmode=disable&password=hunter2"
    result = run_crawl(site.base_url, url, timeout=60)
    assert result.returncode == 1 and "cannot open the movie store" in result.log, result.log[-3000:]
    assert "hunter2" not in result.log and "password=***" in result.log
    # A store that opens (SQLite ignores the parameter): its log line and the stats show it masked.
    url = f"{db_url}?password=hunter2"
    result = run_crawl(site.base_url, url, "years=2012", timeout=60, DATABASE_URL=url)
    assert result.returncode == 0 and result["douban/database"].endswith("password=***"), result.log[-3000:]
    assert "hunter2" not in result.log and result.log.count("password=***") >= 2


def test_read_only_store_fails_the_crawl_at_its_last_flush(mock, tmp_path):
    site = mock(60, seed=11)
    path = tmp_path / "ro.sqlite"
    store.connect(f"sqlite:///{path}").dispose()  # the schema exists; every write will be refused
    # One batch larger than the crawl: the only write is the final flush.
    result = run_crawl(site.base_url, f"sqlite:///file:{path}?mode=ro&uri=true", "years=2012",
                       DOUBAN_STORE_BATCH="1000")
    assert result["finish_reason"] == "store_failed" and result.returncode == 1, result.log[-3000:]
    assert result["douban/store_failed"] > 0 and "could not store" in result.log
    assert "douban crawl store_failed:" in result.log  # the closing summary says so too
    assert stored(f"sqlite:///{path}") == []


def test_mislabelled_gbk_pages_are_read_right_or_refused(mock, db_url):
    site = mock(200, seed=31, gbk_rate=0.3, mislabel_rate=0.15)
    truth = films_in_years(site.catalogue, 2011, 2013)
    refused = {r["douban_id"] for r in truth if site.is_mislabelled(r["douban_id"])}
    assert refused and site.expected_films((2011, 2013))
    # The store holds every film, fetched long ago: a refused page must leave its film exactly as it was.
    store.upsert_records(store.connect(db_url), truth, source="old", fetched_at=datetime.datetime(2020, 1, 1))
    result = run_crawl(site.base_url, db_url, "years=2011-2013", DOUBAN_PARSE_RETRIES="1")
    assert result.returncode == 0, result.log[-3000:]
    assert site.counts["gbk"] > 0 and site.counts["mislabelled"] == 2 * len(refused)  # fetched, retried once
    assert result["douban/parse_failed"] == len(refused) and "U+FFFD" in result.log
    assert stored(db_url) == truth  # GBK pages read in their own charset; the unreadable ones left alone


@pytest.mark.parametrize("garbage", ["html", "null"])
def test_garbled_listing_pages_are_retried(mock, db_url, garbage):
    site = mock(300, seed=32, listing_garbage=garbage, listing_garbage_rate=0.4, listing_garbage_repeats=2)
    result = run_crawl(site.base_url, db_url, "years=2010-2014")
    assert result.returncode == 0, result.log[-3000:]
    assert site.counts["listing_garbage"] > 0 and result["douban/listing_unreadable"] == site.counts["listing_garbage"]
    assert stored(db_url) == site.expected_films((2010, 2014))  # every year to its end


def test_listing_that_stays_garbled_falls_back_to_the_sitemaps(mock, db_url):
    site = mock(300, seed=33, listing_garbage="null", listing_garbage_rate=0.4, listing_garbage_repeats=1000)
    result = run_crawl(site.base_url, db_url, "years=2010-2014", RETRY_TIMES="2")
    assert result.returncode == 0, result.log[-3000:]
    assert result["douban/discovery"] == "sitemap" and "listing failed" in result["douban/discovery_fallback"]
    assert stored(db_url) == site.expected_films((2010, 2014))


def test_forced_listing_that_stays_garbled_exits_1_naming_the_year(mock, db_url):
    site = mock(300, seed=33, listing_garbage="html", listing_garbage_rate=0.4, listing_garbage_repeats=1000)
    result = run_crawl(site.base_url, db_url, "years=2010-2014", RETRY_TIMES="2", DOUBAN_DISCOVERY="listing")
    assert result.returncode == 1, result.log[-3000:]
    errors = [line for line in result.log.splitlines() if line.startswith("scrapy crawl: error:")]
    assert len(errors) == 1 and "discovery incomplete, films of year 20" in errors[0], result.log[-3000:]
    assert 0 < len(stored(db_url)) < len(site.expected_films((2010, 2014)))


def test_one_bad_listing_entry_skips_that_film_only(mock, db_url):
    site = mock(400, seed=34, bad_entry_rate=0.3)
    lost = site.unlisted()
    assert lost
    result = run_crawl(site.base_url, db_url)
    assert result.returncode == 0, result.log[-3000:]
    assert result["douban/listing_bad_entries"] == len(lost) == site.counts["bad_entry"]
    assert result.log.count("skipped an entry without a subject id") == len(lost)
    assert stored(db_url) == site.expected_films()  # every other film of every page


def test_mock_listing_is_bounded_like_the_real_one():
    site = MockDouban(50, seed=1)  # not served: handle() directly
    status, _, body = site.handle("/j/new_search_subjects", {"year_range": ["1,999999999"], "start": ["0"]})
    assert status == 200 and len(json.loads(body)["data"]) == 20  # the real years only, and fast
    status, _, body = site.handle("/j/new_search_subjects", {"year_range": ["3000,999999999"], "start": ["0"]})
    assert json.loads(body) == {"data": []}


def test_catalogue_pages_parse_back_to_truth():
    # Every markup variant the mock renders parses back to the catalogue's record (no network needed).
    from crawler.mocksite.site import render_subject
    from crawler.parsing import parse_subject

    for entry in generate_catalogue(600, seed=17):
        result = parse_subject(render_subject(entry), f"http://127.0.0.1/subject/{entry['douban_id']}/")
        if entry["kind"] == "tv":
            assert result.kind == "tv"
        else:
            assert result.kind == "film" and result.record == films([entry])[0], entry["douban_id"]


def test_expected_films_are_the_catalogues_films_in_years_minus_unreachable_pages():
    site = MockDouban(400, seed=23, broken_rate=0.05, login_rate=0.05)  # not served: no network
    unreachable = {e["douban_id"] for e in site.catalogue if site.is_broken(e["douban_id"])
                   or site.needs_login(e["douban_id"])}
    assert unreachable
    for years in ((2007, 2019), (2012, 2013)):
        truth = films_in_years(site.catalogue, *years)
        assert site.expected_films(years) == [r for r in truth if r["douban_id"] not in unreachable]
    assert MockDouban(catalogue=site.catalogue).expected_films() == films_in_years(site.catalogue)


def test_store_failure_stops_the_crawl_plainly(mock, db_url):
    site = mock(200, seed=10)
    victim = site.expected_films()[60]["douban_id"]
    engine = store.connect(db_url)
    with engine.begin() as conn:  # the database refuses one film, as a full disk or a lost server would
        conn.exec_driver_sql(f"CREATE TRIGGER refuse BEFORE INSERT ON movies WHEN NEW.douban_id = {victim} "
                             "BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END")
    result = run_crawl(site.base_url, db_url, DOUBAN_STORE_BATCH="10", CONCURRENT_REQUESTS="4",
                       CONCURRENT_REQUESTS_PER_DOMAIN="4")
    assert result["finish_reason"] == "store_failed" and result.returncode == 1, result.log[-3000:]
    assert "could not store 10 films" in result.log and "simulated write failure" in result.log
    assert result["douban/store_failed"] >= 10
    ids = {r["douban_id"] for r in stored(db_url)}
    assert victim not in ids and result["douban/stored"] == len(ids)


def test_kadn_mock_douban_command(tmp_path):
    kadn = str(Path(sys.executable).with_name("kadn"))
    proc = subprocess.Popen([kadn, "mock-douban", "--port", "0", "--movies", "30", "--seed", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"(\d+) films and (\d+) TV subjects at (http://127\.0\.0\.1:\d+)", line)
        assert m and m.group(1) == "30", line
        with urllib.request.urlopen(m.group(3) + "/robots.txt", timeout=5) as answer:
            assert "Sitemap:" in answer.read().decode()
        port = m.group(3).rsplit(":", 1)[1]
        busy = subprocess.run([kadn, "mock-douban", "--port", port, "--movies", "5"], capture_output=True,
                              text=True, timeout=60)
        assert busy.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
        for bad, message in ((["--movies", "-5"], "--movies must be zero or more, got -5"),
                             (["--error-rate", "2"], "--error-rate must be a share from 0 to 1"),
                             (["--port", "70000"], "--port must be from 0 to 65535")):
            refused = subprocess.run([kadn, "mock-douban", *bad], capture_output=True, text=True, timeout=60)
            assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
            assert message in refused.stderr and "Traceback" not in refused.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)
