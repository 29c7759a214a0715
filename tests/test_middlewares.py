"""Crawler middlewares and spider helpers in isolation (no network, no reactor)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from scrapy import Request
from scrapy.exceptions import IgnoreRequest
from scrapy.http import HtmlResponse, Response, TextResponse
from scrapy.settings import Settings
from scrapy.signalmanager import SignalManager
from scrapy.statscollectors import MemoryStatsCollector

from crawler import settings as crawler_settings
from crawler.arguments import check_arguments, parse_ids, parse_limit, parse_years
from crawler.distributed import lease_done
from crawler.middlewares import (
    BanMiddleware,
    CookieMiddleware,
    DedupeMiddleware,
    DuplicateRequest,
    rate_limit_answer,
)
from crawler.spiders.douban import DoubanSpider


def fake_crawler(**overrides):
    settings = Settings()
    settings.setmodule(crawler_settings)
    settings.update(overrides)
    crawler = SimpleNamespace(settings=settings, spider=SimpleNamespace(abandoned=set()))
    crawler.stats = MemoryStatsCollector(crawler)
    crawler.engine = SimpleNamespace(pause=lambda: None, unpause=lambda: None)
    return crawler


@pytest.mark.parametrize("status, headers, url, kind", [
    (403, {}, "https://movie.douban.com/subject/1/", "403"),
    (418, {}, "https://movie.douban.com/subject/1/", "418"),
    (429, {}, "https://movie.douban.com/subject/1/", "429"),
    (302, {"Location": "https://sec.douban.com/b?r=https%3A%2F%2Fmovie.douban.com%2Fsubject%2F1%2F"},
     "https://movie.douban.com/subject/1/", "sec"),
    (302, {"Location": "https://accounts.douban.com/passport/login?redir=x"}, "https://movie.douban.com/subject/1/",
     "login"),
    (302, {"Location": "https://movie.douban.com/subject/2/"}, "https://movie.douban.com/subject/1/", None),
    (200, {}, "https://movie.douban.com/subject/1/", None),
    (404, {}, "https://movie.douban.com/subject/1/", None),
    (200, {}, "https://accounts.douban.com/passport/login", "login"),
])
def test_ban_kinds(status, headers, url, kind):
    mw = BanMiddleware(fake_crawler())
    assert mw.ban_kind(Response(url, status=status, headers=headers)) == kind


def test_ban_retry_is_lower_priority_and_counted():
    crawler = fake_crawler(DOUBAN_BAN_PAUSE_AFTER=99)  # no pause: no reactor here
    mw = BanMiddleware(crawler)
    req = Request("https://movie.douban.com/subject/1/", priority=0)
    retry = mw.process_response(req, Response(req.url, status=418))
    assert isinstance(retry, Request) and retry.priority == -1 and retry.meta["ban_retries"] == 1
    assert retry.dont_filter
    assert crawler.stats.get_value("douban/banned") == 1
    assert crawler.stats.get_value("douban/banned/418") == 1
    ok = HtmlResponse(req.url, status=200, body=b"<html></html>")
    assert mw.process_response(req, ok) is ok and mw.consecutive == 0


def test_cookie_added_for_douban_host_only_and_stripped_after(monkeypatch):
    monkeypatch.setenv("DOUBAN_COOKIE", "bid=abc; dbcl2=secret")
    crawler = fake_crawler(DOUBAN_BASE_URL="https://movie.douban.com")
    mw = CookieMiddleware.from_crawler(crawler)
    req = Request("https://movie.douban.com/subject/1/")
    mw.process_request(req)
    assert b"dbcl2=secret" in req.headers["Cookie"]
    mw.process_response(req, Response(req.url))
    assert "Cookie" not in req.headers  # a retried copy of this request carries no cookie
    other = Request("https://img.example.invalid/p.jpg")
    mw.process_request(other)
    assert "Cookie" not in other.headers
    req2 = Request("https://movie.douban.com/subject/2/")
    mw.process_request(req2)
    mw.process_exception(req2, TimeoutError())
    assert "Cookie" not in req2.headers


def test_cookie_middleware_off_without_the_variable(monkeypatch):
    from scrapy.exceptions import NotConfigured

    monkeypatch.delenv("DOUBAN_COOKIE", raising=False)
    with pytest.raises(NotConfigured):
        CookieMiddleware.from_crawler(fake_crawler())


def test_dedupe_lets_first_attempts_and_their_retries_through():
    crawler = fake_crawler()
    mw = DedupeMiddleware(crawler)
    first = Request("https://movie.douban.com/subject/1/", meta={"dedupe_key": "subject:1"})
    assert mw.process_request(first) is None
    with pytest.raises(DuplicateRequest):
        mw.process_request(Request(first.url, meta={"dedupe_key": "subject:1"}))
    # Retries (as RetryMiddleware, BanMiddleware, redirects and the spider make them: a copy of the meta) pass.
    for retry_key in DedupeMiddleware.RETRY_KEYS:
        assert mw.process_request(first.replace(meta={**first.meta, retry_key: 1})) is None
    assert mw.process_request(Request("https://movie.douban.com/robots.txt")) is None  # no key: not deduped
    assert crawler.stats.get_value("douban/duplicate_skipped") == 1


def test_dedupe_drops_a_retry_left_by_an_earlier_run_once_its_page_was_requested():
    earlier = DedupeMiddleware(fake_crawler())
    saved = Request("https://movie.douban.com/subject/1/", meta={"dedupe_key": "subject:1"})
    earlier.process_request(saved)
    retry = saved.replace(meta={**saved.meta, "retry_times": 1})  # in the JOBDIR queue at a graceful stop
    other = Request("https://movie.douban.com/subject/2/", meta={"dedupe_key": "subject:2"})
    earlier.process_request(other)
    other_retry = other.replace(meta={**other.meta, "ban_retries": 1})

    crawler = fake_crawler()
    resumed = DedupeMiddleware(crawler)
    rediscovered = Request(saved.url, meta={"dedupe_key": "subject:1"})
    assert resumed.process_request(rediscovered) is None
    with pytest.raises(DuplicateRequest):
        resumed.process_request(retry)  # the page is already fetched (or being fetched) in this run
    assert resumed.process_request(other_retry) is None  # its page is new to this run: fetched once
    with pytest.raises(DuplicateRequest):
        resumed.process_request(Request(other.url, meta={"dedupe_key": "subject:2"}))
    # The spider's re-fetch of a cut page copies the meta of the answer it got: it passes.
    refetch = rediscovered.replace(meta={**rediscovered.meta, "parse_retries": 1})
    assert resumed.process_request(refetch) is None
    assert crawler.stats.get_value("douban/duplicate_skipped") == 2


@pytest.mark.parametrize("body, throttled", [
    ('{"msg":"检测到有异常请求从您的IP发出，请登录再试!","r":1}', True),
    ('  {"r": 0, "msg": "x"}', True),
    ('{"data": [{"id": "1"}]}', False),
    ('{"data": [], "r": 0}', False),
    ('{"r": 1', False),
    ('["r"]', False),
    ('<html><body>{"r": 1}</body></html>', False),
])
def test_rate_limit_json_is_a_ban(body, throttled):
    crawler = fake_crawler(DOUBAN_BAN_PAUSE_AFTER=99)
    mw = BanMiddleware(crawler)
    url = "https://movie.douban.com/j/new_search_subjects?start=0"
    response = TextResponse(url, status=200, body=body.encode(), encoding="utf-8",
                            headers={"Content-Type": "application/json"})
    assert rate_limit_answer(response.body) is throttled
    assert mw.ban_kind(response) == ("throttled" if throttled else None)
    if throttled:
        req = Request(url)
        retry = mw.process_response(req, response)
        assert isinstance(retry, Request) and retry.meta["ban_retries"] == 1
        assert crawler.stats.get_value("douban/banned/throttled") == 1


def test_spider_arguments():
    assert parse_years("2007-2019") == (2007, 2019) and parse_years("2012") == (2012, 2012)
    assert parse_ids("3541415, 26752088,3541415") == [3541415, 26752088]
    for bad in ("2019-2007", "twenty", "2007-"):
        with pytest.raises(ValueError):
            parse_years(bad)
    with pytest.raises(ValueError):
        parse_ids("tt123")
    assert parse_limit("7") == 7 and parse_limit(None) is None and parse_limit("") is None
    for bad in ("abc", "0", "-3", "1.5"):
        with pytest.raises(ValueError, match="limit must be a positive number"):
            parse_limit(bad)
    check_arguments({"years": "2012", "ids": "1,2", "limit": "3", "refresh": "1"})
    check_arguments({"years": "2012", "_job": "6487ec79947edab326d6db28a2d86511"})  # scrapyd's job id
    assert DoubanSpider(years="2012", _job="6487ec79").years == (2012, 2012)
    for value, on in ((None, False), ("", False), ("0", False), ("no", False), ("1", True), ("True", True),
                      ("yes", True)):
        assert DoubanSpider(refresh=value).refresh is on, value
    with pytest.raises(ValueError, match=r"-a limit=abc"):
        check_arguments({"years": "2012", "limit": "abc"})
    with pytest.raises(ValueError, match=r"-a refresh=maybe: refresh must be 1 or 0"):
        check_arguments({"refresh": "maybe"})
    with pytest.raises(ValueError, match=r"unknown spider argument -a yeras=2012: did you mean -a years\?"):
        check_arguments({"yeras": "2012"})
    with pytest.raises(ValueError, match=r"unknown spider argument -a yeras=2012"):
        DoubanSpider(yeras="2012")  # built without `scrapy crawl` (a script's CrawlerProcess): refused too
    with pytest.raises(ValueError) as caught:
        check_arguments({"ids": "x" * 100_000})
    assert len(str(caught.value)) < 300  # a bad value is quoted cut short, never whole


def test_default_settings_are_polite():
    s = Settings()
    s.setmodule(crawler_settings)
    assert s.getbool("ROBOTSTXT_OBEY") and s.getbool("AUTOTHROTTLE_ENABLED")
    assert s.getfloat("DOWNLOAD_DELAY") >= 2 and s.getint("CONCURRENT_REQUESTS_PER_DOMAIN") <= 2
    assert s["DOUBAN_BASE_URL"] == os.environ.get("DOUBAN_BASE_URL", "https://movie.douban.com")
    assert 429 not in s.getlist("RETRY_HTTP_CODES")  # a rate limit is a ban, handled with a pause


def test_store_url_comes_from_the_environment_via_pipeline_store(monkeypatch):
    from pipeline.film import store

    s = Settings()
    s.setmodule(crawler_settings)
    assert s.get("DATABASE_URL") is None  # one place decides: store.database_url, as for the kadn commands
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/from-env.sqlite")
    assert store.database_url(s.get("DATABASE_URL")) == "sqlite:////tmp/from-env.sqlite"
    monkeypatch.delenv("DATABASE_URL")
    assert store.database_url(s.get("DATABASE_URL")) == store.DEFAULT_DATABASE_URL
    s.set("DATABASE_URL", "sqlite:////tmp/explicit.sqlite")  # -s DATABASE_URL=... still wins
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/from-env.sqlite")
    assert store.database_url(s.get("DATABASE_URL")) == "sqlite:////tmp/explicit.sqlite"


@pytest.mark.parametrize("errback, url, meta", [
    ("subject_failed", "https://movie.douban.com/subject/1/", {"dedupe_key": "subject:1"}),
    ("discovery_failed", "https://movie.douban.com/j/new_search_subjects?start=0", {"discovery": "listing"}),
    ("discovery_failed", "https://movie.douban.com/sitemap_index.xml", {"discovery": "sitemap"}),
    ("robots_failed", "https://movie.douban.com/robots.txt", {}),
])
@pytest.mark.parametrize("case", ["login_required", "ban_gave_up", "banned", "duplicate"])
def test_errbacks_release_the_lease_of_dropped_pages(monkeypatch, errback, url, meta, case):
    # BanMiddleware drops a page by raising IgnoreRequest from process_response: Scrapy hands that to the
    # request's errback, never to a downloader middleware, so on the Redis frontier the errback must
    # release the page's lease (else it expires and the page is fetched again).
    from twisted.python.failure import Failure

    import crawler.middlewares as middlewares
    import crawler.spiders.douban as douban

    for module in (douban, middlewares):
        monkeypatch.setattr(module, "close_spider", lambda crawler, reason: None)  # no engine here
    crawler = fake_crawler(DOUBAN_BAN_PAUSE_AFTER=99, DOUBAN_BAN_RETRIES=1, DOUBAN_BAN_MAX_CONSECUTIVE=1)
    released = []

    def on_done(token):  # what LeasedScheduler does on this signal
        released.append(token)

    crawler.signals = SignalManager()
    crawler.signals.connect(on_done, signal=lease_done)
    spider = douban.DoubanSpider()
    spider.crawler, spider.mode, spider.listing_path, spider.obey = crawler, "auto", "/j/x", True
    mw = BanMiddleware(crawler)
    req = Request(url, meta={**meta, "douban_lease": "token-1"})
    if case == "duplicate":
        exc = DuplicateRequest(url)
    else:
        if case == "login_required":
            req.meta["ban_good_mark"], mw.good = 0, 5
        elif case == "ban_gave_up":
            req.meta["ban_retries"] = 1
        else:  # banned: one ban over DOUBAN_BAN_MAX_CONSECUTIVE stops the crawl
            mw.consecutive = 1
        status = 302 if case == "login_required" else 403
        headers = {"Location": "https://accounts.douban.com/passport/login"} if status == 302 else {}
        with pytest.raises(IgnoreRequest) as caught:
            mw.process_response(req, Response(url, status=status, headers=headers))
        exc = caught.value
    failure = Failure(exc)
    failure.request = req
    list(getattr(spider, errback)(failure) or ())
    assert released == ["token-1"]


def settings_reads() -> list[tuple[str, str, bool]]:
    """(file, setting name, has a fallback default) for every settings read in crawler/ outside settings.py."""
    import ast
    from pathlib import Path

    reads = []
    for path in Path(crawler_settings.__file__).parent.rglob("*.py"):
        if path.name == "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("get", "getint", "getfloat", "getbool", "getlist", "getdict")
                    and not (isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "environ")
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                    and node.args[0].value.isupper()):
                reads.append((path.name, node.args[0].value, len(node.args) > 1 or bool(node.keywords)))
    return reads


def test_every_crawler_setting_has_one_default_in_settings_py():
    reads = settings_reads()
    assert any(name == "RETRY_BACKOFF_BASE" for _, name, _ in reads)  # the scan sees the reads
    assert [(f, name) for f, name, fallback in reads if fallback] == []  # no second default in the code
    ours = {name for _, name, _ in reads if name.startswith(("DOUBAN_", "RETRY_BACKOFF_"))}
    assert ours <= set(dir(crawler_settings)), ours - set(dir(crawler_settings))


ROBOTS_ARGS = {"robots_url": "http://d.test/robots.txt", "obey": True, "agent": "kadn", "listing_path": "/j/x",
               "listing_url": "http://d.test/j/x?start=0", "subject_url": "http://d.test/subject/1/",
               "url": lambda u: "http://d.test" + (u if u.startswith("/") else "/" + u.split("/", 3)[-1])}


@pytest.mark.parametrize("robots, mode, chosen", [
    ("User-agent: *\nDisallow: /search\n", "auto", "listing"),
    ("User-agent: *\nDisallow: /j/\n", "auto", "sitemap"),
    ("User-agent: *\nDisallow: /search\n", "sitemap", "sitemap"),
    ("User-agent: *\nDisallow: /j/\n", "listing", None),
    ("User-agent: *\nDisallow: /subject/\n", "auto", None),
    ("User-agent: *\nDisallow: /\n", "auto", None),
])
def test_plan_discovery(robots, mode, chosen):
    from crawler.discovery import DiscoveryBlocked, plan_discovery

    text = robots + "Crawl-delay: 2\nSitemap: https://movie.douban.invalid/sitemap_index.xml\n"
    if chosen is None:
        with pytest.raises(DiscoveryBlocked, match="discovery blocked: http://d.test/robots.txt disallows"):
            plan_discovery(text, mode=mode, **ROBOTS_ARGS)
        return
    plan = plan_discovery(text, mode=mode, **ROBOTS_ARGS)
    assert plan.chosen == chosen and plan.crawl_delay == 2.0
    assert plan.sitemaps == ["http://d.test/sitemap_index.xml"]  # rebuilt on the base URL
    assert plan_discovery(text, mode=mode, **{**ROBOTS_ARGS, "obey": False}).crawl_delay is None


def test_subject_gate():
    from crawler.spidermiddlewares import SubjectGate

    crawler = fake_crawler()
    crawler.signals = SimpleNamespace(connect=lambda *a, **k: None)
    crawler.spider = SimpleNamespace(limit=3)
    gate = SubjectGate(crawler)
    gate.skip = {1}

    def subject(did, **meta):
        return Request(f"http://d.test/subject/{did}/", meta={"douban_id": did, **meta})

    listing = Request("http://d.test/j/x?start=20", meta={"discovery": "listing"})
    assert not gate.admit(subject(1))  # stored and fresh
    assert gate.admit(subject(2)) and not gate.admit(subject(2))  # once per run
    assert gate.admit(subject(2, parse_retries=1))  # the re-fetch of a cut page
    assert gate.admit(listing) and gate.admit("an item")
    assert gate.admit(subject(3)) and gate.admit(subject(4)) and not gate.admit(subject(5))  # limit=3
    assert not gate.admit(listing)  # past the limit, discovery stops too
    assert gate.admit(Request("http://d.test/robots.txt"))
    get = crawler.stats.get_value
    assert (get("douban/fresh_skipped"), get("douban/duplicate_skipped"), get("douban/over_limit"),
            get("douban/subjects_requested")) == (1, 1, 1, 3)


def refresh_spider(monkeypatch, middlewares: list):
    """A `-a refresh=1` spider on a crawler whose spider middlewares are `middlewares` (found as Scrapy's
    Crawler.get_spider_middleware finds them); returns it and the close reasons it asked for."""
    import crawler.spiders.douban as douban

    closed = []
    monkeypatch.setattr(douban, "close_spider", lambda crawler, reason: closed.append(reason))  # no engine here
    crawler = fake_crawler()
    crawler.get_spider_middleware = lambda cls: next((mw for mw in middlewares if isinstance(mw, cls)), None)
    spider = douban.DoubanSpider(refresh="1")
    spider.crawler, spider.settings, spider.base, spider.obey = crawler, crawler.settings, "http://d.test", False
    return spider, closed


def test_refresh_takes_the_stale_films_from_the_gate_scrapy_finds(monkeypatch):
    from crawler.spidermiddlewares import ParseRetry, SubjectGate

    middlewares = []
    spider, closed = refresh_spider(monkeypatch, middlewares)
    spider.crawler.signals = SimpleNamespace(connect=lambda *a, **k: None)
    gate = SubjectGate(spider.crawler)
    gate.stale = [5, 7]  # as read from the store when the crawl started
    middlewares += [ParseRetry(spider.crawler), gate]
    # The old route is gone: a gate stuck onto the crawler is never looked for.
    spider.crawler.douban_gate = SimpleNamespace(stale=[99])
    requests = list(spider.plan_subjects(Response("http://d.test/robots.txt", status=404)))
    assert [r.meta["douban_id"] for r in requests] == [5, 7] and closed == []
    assert spider.crawler.stats.get_value("douban/discovery") == "refresh"


def test_refresh_without_the_gate_stops_saying_why(monkeypatch, caplog):
    spider, closed = refresh_spider(monkeypatch, [])  # SPIDER_MIDDLEWARES disables SubjectGate
    assert list(spider.plan_subjects(Response("http://d.test/robots.txt", status=404))) == []
    assert closed == ["discovery_blocked"] and spider.crawler.stats.get_value("douban/discovery") == "blocked"
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "-a refresh=1 needs the spider middleware crawler.spidermiddlewares.SubjectGate" in line


def test_crawl_delay_raises_the_floor_of_the_autothrottle_scrapy_finds():
    from scrapy.extensions.throttle import AutoThrottle

    from crawler.extensions import CrawlDelay

    crawler = fake_crawler()
    crawler.signals = SimpleNamespace(connect=lambda *a, **k: None)
    crawler.engine = SimpleNamespace(downloader=SimpleNamespace(slots={}, per_slot_settings={}))
    throttle = AutoThrottle.__new__(AutoThrottle)  # as it stands once the spider opened: only its floor matters
    throttle.mindelay = 1.0
    extensions = [throttle]
    crawler.get_extension = lambda cls: next((ext for ext in extensions if isinstance(ext, cls)), None)
    delay = CrawlDelay(crawler)
    delay.honour(4.0, "d.test")
    assert throttle.mindelay == 4.0 and crawler.engine.downloader.per_slot_settings == {"d.test": {"delay": 4.0}}
    extensions.clear()  # AUTOTHROTTLE_ENABLED off: no floor to raise, the slot's delay still is
    delay.honour(6.0, "d.test")
    assert throttle.mindelay == 4.0 and crawler.engine.downloader.per_slot_settings == {"d.test": {"delay": 6.0}}
    assert crawler.stats.get_value("douban/crawl_delay") == 6.0


PAGE = '<html><head><meta charset="{meta}"><title>活着</title></head><body>剧情 / 中国大陆</body></html>'


@pytest.mark.parametrize("header, meta, body_codec, text_ok", [
    ("utf-8", "gbk", "gb18030", True),  # a relabelling proxy: the page's own meta is right
    ("gbk", "gbk", "gb18030", True),
    ("utf-8", "utf-8", "utf-8", True),
    ("gbk", "utf-8", "utf-8", True),  # the other way round
    ("utf-8", "utf-8", "gb18030", False),  # both wrong: the text keeps U+FFFD, which the parser refuses
])
def test_charset_middleware_reads_a_page_by_its_own_meta(header, meta, body_codec, text_ok):
    from crawler.middlewares import CharsetMiddleware

    body = PAGE.format(meta=meta).encode(body_codec)
    response = HtmlResponse("https://movie.douban.com/subject/1/", body=body,
                            headers={"Content-Type": f"text/html; charset={header}"})
    text = CharsetMiddleware().process_response(Request(response.url), response).text
    assert ("活着" in text and "\ufffd" not in text) == text_ok
