"""Downloader middlewares: ban detection with pause-and-retry, retry backoff, and the optional cookie.

Methods take `spider=None` so both older Scrapy (which passes the spider) and 2.13+ (which does not) work.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from urllib.parse import urlsplit

from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import HtmlResponse
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from twisted.internet.task import deferLater
from w3lib.encoding import html_body_declared_encoding, http_content_type_encoding, read_bom, resolve_encoding

from crawler.parsing import PageUnparsed, listing_page

log = logging.getLogger(__name__)


def _reactor():
    # Imported late: importing twisted.internet.reactor at module load would install the default reactor
    # before Scrapy installs the asyncio one (the spider module imports this one).
    from twisted.internet import reactor

    return reactor


def close_spider(crawler, reason: str) -> None:
    """Stop the crawl from outside a spider callback (where CloseSpider does not apply)."""
    engine = crawler.engine
    if hasattr(engine, "close_spider_async"):  # Scrapy >= 2.14
        deferred_from_coro(engine.close_spider_async(reason=reason))
    else:
        engine.close_spider(crawler.spider, reason)


def rate_limit_answer(body: bytes) -> bool:
    """Douban's JSON endpoints answer a throttled IP with HTTP 200 and a JSON object that has `r` set and no
    `data`, e.g. {"msg": "检测到有异常请求从您的IP发出，请登录再试!", "r": 1}: a ban, not an empty listing."""
    head = body[:64].lstrip()
    if not head.startswith(b"{") or b'"r"' not in body:
        return False  # not JSON (a page), or no `r`: skip parsing
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return isinstance(answer, dict) and "r" in answer and "data" not in answer


def declared_encoding(response) -> str | None:
    """The encoding a page should be read in when its HTTP header and its own <meta charset> disagree (a
    proxy or mirror that relabels pages): the page's own, when the body reads cleanly in it; else None
    (Scrapy's choice stands: a BOM, then the header, then the meta)."""
    if read_bom(response.body)[0]:
        return None
    header = http_content_type_encoding(response.headers.get("Content-Type", b"").decode("latin-1"))
    meta = html_body_declared_encoding(response.body)
    if not header or not meta or resolve_encoding(header) == resolve_encoding(meta):
        return None
    try:
        response.body.decode(resolve_encoding(meta) or meta)
    except (LookupError, UnicodeDecodeError):
        return None
    return resolve_encoding(meta)


class CharsetMiddleware:
    """Reads an HTML page in its own <meta charset> when the HTTP header says another one (see
    `declared_encoding`). A page that still decodes to U+FFFD is refused by the parser."""

    def process_response(self, request, response, spider=None):
        if not isinstance(response, HtmlResponse):
            return response
        encoding = declared_encoding(response)
        return response.replace(encoding=encoding) if encoding else response


class DuplicateRequest(IgnoreRequest):
    """A page already downloaded in this run (see DedupeMiddleware); not an error."""


class DedupeMiddleware:
    """One download per page per run, by `meta["dedupe_key"]`, instead of Scrapy's dupefilter.

    The spider marks its requests dont_filter and re-runs discovery when a JOBDIR crawl resumes: after a
    hard kill (SIGKILL, power loss) Scrapy's queue is gone but its seen-set survives, and the seen-set
    would then silently drop every page not yet fetched. Here the first request for a page in this run
    is downloaded and stamped with a token; what descends from it (a 5xx or ban retry, a redirect, the
    spider's re-fetch of a cut page) carries the token and passes, anything else for that page is dropped:
    the same page both in the resumed queue and rediscovered, and a retry an earlier run left in the JOBDIR
    queue once this run has requested its page. Requests of a discovery path the spider abandoned
    (`spider.abandoned`) are dropped too.
    """

    # Meta keys that mark a request as another attempt at a page (the Redis frontier's check uses them).
    RETRY_KEYS = ("retry_times", "ban_retries", "parse_retries", "redirect_times")
    TOKEN = "dedupe_token"

    def __init__(self, crawler):
        self.crawler = crawler
        self.tokens: dict[str, str] = {}  # page -> token of the one line of requests fetching it in this run

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_request(self, request, spider=None):
        if request.meta.get("discovery") in getattr(self.crawler.spider, "abandoned", ()):
            raise IgnoreRequest(f"discovery path {request.meta['discovery']} abandoned: {request.url}")
        key = request.meta.get("dedupe_key")
        if key is None:
            return None
        if key not in self.tokens:
            # Unique per run and page: a token saved by an earlier run in the JOBDIR queue never matches.
            self.tokens[key] = request.meta[self.TOKEN] = uuid.uuid4().hex
            return None
        if request.meta.get(self.TOKEN) == self.tokens[key]:
            return None
        self.crawler.stats.inc_value("douban/duplicate_skipped")
        raise DuplicateRequest(f"already downloaded in this run: {request.url}")


class BanMiddleware:
    """Douban answers crawlers with 403/418/429, a redirect to sec.douban.com or a login page, or (on its JSON
    listing) a 200 answer saying the IP is throttled (`rate_limit_answer`, kind `throttled`).

    On such an answer: count it (`douban/banned`, per kind under `douban/banned/<kind>`) and retry the
    request. Once DOUBAN_BAN_PAUSE_AFTER different pages are refused in a row, the ban is taken as per IP,
    so every request would fail alike: the whole engine pauses for DOUBAN_BAN_PAUSE seconds, doubling while bans continue,
    up to DOUBAN_BAN_PAUSE_MAX. A request banned more than DOUBAN_BAN_RETRIES times is dropped
    (`douban/ban_gave_up`); DOUBAN_BAN_MAX_CONSECUTIVE bans in a row with no good answer between stop the
    crawl with reason `banned`. A page that keeps redirecting to the login page while other pages load is
    a subject restricted to logged-in users, not a ban: it is dropped at once (`douban/login_required`;
    DOUBAN_COOKIE lets the crawl see it). Sits above RedirectMiddleware (600) so it sees the redirect
    itself, and above RetryMiddleware so 429 is a ban, not a plain retry.
    """

    def __init__(self, crawler):
        s = crawler.settings
        self.crawler = crawler
        self.stats = crawler.stats
        self.codes = {int(c) for c in s.getlist("DOUBAN_BAN_CODES")}
        self.location_re = re.compile(s.get("DOUBAN_BAN_LOCATION_RE"))
        self.pause_s = s.getfloat("DOUBAN_BAN_PAUSE")
        self.pause_max = s.getfloat("DOUBAN_BAN_PAUSE_MAX")
        self.retries = s.getint("DOUBAN_BAN_RETRIES")
        self.max_consecutive = s.getint("DOUBAN_BAN_MAX_CONSECUTIVE")
        self.pause_after = s.getint("DOUBAN_BAN_PAUSE_AFTER")
        self.consecutive = 0
        self.streak: set[str] = set()  # distinct URLs banned since the last good answer
        self.good = 0  # good answers so far: tells a page-specific login wall from an IP ban
        self.paused = False

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def ban_kind(self, response) -> str | None:
        if response.status in self.codes:
            return str(response.status)
        if response.status == 200 and rate_limit_answer(response.body):
            return "throttled"
        if 300 <= response.status < 400:
            location = response.headers.get("Location", b"").decode("latin-1")
            if self.location_re.search(location):
                return "login" if re.search(r"login|accounts|passport", location) else "sec"
        elif self.location_re.search(response.url):
            return "login"  # already redirected (e.g. by a proxy) onto a login or sec page
        return None

    def process_response(self, request, response, spider=None):
        kind = self.ban_kind(response)
        if kind is None:
            if response.status < 400:
                self.consecutive = 0
                self.streak.clear()
                self.good += 1
            return response
        mark = request.meta.get("ban_good_mark")
        if kind == "login" and mark is not None and self.good - mark >= 3:
            self.stats.inc_value("douban/login_required")
            log.warning("login required for %s (other pages load): skipped; DOUBAN_COOKIE would let the crawl "
                        "see it", request.url)
            raise IgnoreRequest(f"login required: {request.url}")
        self.consecutive += 1
        self.streak.add(request.url)
        self.stats.inc_value("douban/banned")
        self.stats.inc_value(f"douban/banned/{kind}")
        tries = request.meta.get("ban_retries", 0) + 1
        if self.consecutive > self.max_consecutive:
            log.error("banned %d times in a row (last: %s on %s): stopping the crawl; resume later with the "
                      "same JOBDIR", self.consecutive, kind, request.url)
            close_spider(self.crawler, "banned")
            raise IgnoreRequest("crawl stopped: banned")
        if len(self.streak) >= self.pause_after:  # several pages refused: the IP is banned, not one page
            self._pause(kind, request.url)
        if tries > self.retries:
            self.stats.inc_value("douban/ban_gave_up")
            log.error("giving up on %s after %d bans (%s)", request.url, tries - 1, kind)
            raise IgnoreRequest(f"banned {tries - 1} times: {request.url}")
        meta = dict(request.meta, ban_retries=tries, ban_good_mark=self.good)
        # Lower priority: the retry waits behind the queued pages, whose answers tell an IP ban (they fail
        # too) from a page-specific login wall (they load).
        return request.replace(meta=meta, dont_filter=True, priority=request.priority - 1)

    def _pause(self, kind: str, url: str) -> None:
        if self.paused:
            return  # requests already in flight when the ban began: retried after the same pause
        delay = min(self.pause_max, self.pause_s * 2 ** min(self.consecutive - 1, 20))
        log.warning("ban detected (%s on %s): pausing the crawl for %.1f s", kind, url, delay)
        self.paused = True
        self.crawler.engine.pause()

        def resume():
            self.paused = False
            engine = self.crawler.engine
            engine.unpause()
            # unpause() only clears a flag; the engine would look for work again at its next 5 s heartbeat.
            nextcall = getattr(getattr(engine, "_slot", None), "nextcall", None)
            if nextcall is not None:
                nextcall.schedule()

        _reactor().callLater(delay, resume)


class BackoffRetryMiddleware(RetryMiddleware):
    """Scrapy's retries (5xx, timeouts, dropped connections), waiting RETRY_BACKOFF_BASE * 2**(n-1) seconds
    (capped by RETRY_BACKOFF_MAX) before the n-th retry, so a struggling server gets room to recover.

    A listing page answered 200 with something that is not the listing's JSON (an error page, {"data": null})
    is a failed download too: retried the same way, then given up (IgnoreRequest, to the spider's errback),
    never read as the end of its year."""

    def __init__(self, settings):
        super().__init__(settings)
        self.base = settings.getfloat("RETRY_BACKOFF_BASE")
        self.cap = settings.getfloat("RETRY_BACKOFF_MAX")

    async def _wait(self, result):
        if self.base > 0 and hasattr(result, "meta") and result.meta.get("retry_times"):
            delay = min(self.cap, self.base * 2 ** (result.meta["retry_times"] - 1))
            await maybe_deferred_to_future(deferLater(_reactor(), delay, lambda: None))
        return result

    async def process_response(self, request, response, spider=None):
        result = super().process_response(request, response)
        if result is response and request.meta.get("discovery") == "listing" and response.status == 200:
            result = self._unreadable_listing(request, response)
        return await self._wait(result)

    def _unreadable_listing(self, request, response):
        try:
            listing_page(response.text)
        except (PageUnparsed, AttributeError) as exc:  # AttributeError: a body Scrapy cannot read as text
            why = f"not the listing's JSON ({exc})"
            self.crawler.stats.inc_value("douban/listing_unreadable")
            retry = self._retry(request, why)
            if retry is None:
                raise IgnoreRequest(f"{why} after {self.max_retry_times} retries") from None
            return retry
        return response

    async def process_exception(self, request, exception, spider=None):
        return await self._wait(super().process_exception(request, exception))


class CookieMiddleware:
    """Sends $DOUBAN_COOKIE (a browser's Cookie header) with requests to the Douban base host.

    The header is added just before download and removed from the request object as soon as the answer
    (or error) comes back, so retried requests written to a JOBDIR queue never carry it, and it is never
    logged. Sits closest to the downloader (highest order) for that reason.
    """

    def __init__(self, cookie: str, host: str):
        self.cookie = cookie
        self.host = host

    @classmethod
    def from_crawler(cls, crawler):
        cookie = os.environ.get("DOUBAN_COOKIE", "").strip()
        if not cookie:
            raise NotConfigured
        crawler.stats.set_value("douban/cookie", "from environment")
        return cls(cookie, urlsplit(crawler.settings.get("DOUBAN_BASE_URL")).hostname or "")

    def process_request(self, request, spider=None):
        if urlsplit(request.url).hostname == self.host:
            existing = request.headers.get("Cookie")
            value = f"{existing.decode('latin-1')}; {self.cookie}" if existing else self.cookie
            request.headers["Cookie"] = value
            request.meta["_douban_cookie"] = True
        return None

    def _strip(self, request):
        if request.meta.pop("_douban_cookie", None):
            request.headers.pop("Cookie", None)

    def process_response(self, request, response, spider=None):
        self._strip(request)
        return response

    def process_exception(self, request, exception, spider=None):
        self._strip(request)
        return None
