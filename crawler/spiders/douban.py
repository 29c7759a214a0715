"""`scrapy crawl douban`: discover Douban films year by year, fetch their subject pages, store them.

Arguments: `-a years=2007-2019` (default; a single year or A-B), `-a ids=ID,ID` (just these subjects, no
discovery), `-a limit=N` (at most N subject pages), `-a refresh=1` (re-fetch stored films older than
DOUBAN_REFRESH_DAYS, no discovery). Discovery (DOUBAN_DISCOVERY): the year-filtered JSON listing the site
itself uses (fast), or the sitemaps named in robots.txt (robots-friendly), chosen from robots.txt in
"auto" mode; the crawl logs which one it used and why, and stops with a plain message when robots.txt
forbids the chosen path. Parsing lives in crawler.parsing, storage in crawler.pipelines.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode, urlsplit

from protego import Protego
from scrapy import Request
from scrapy.exceptions import CloseSpider
from scrapy.spiders import SitemapSpider
from sqlalchemy import select

from crawler.items import MovieItem
from crawler.parsing import SUBJECT_URL_RE, parse_subject
from pipeline import store
from pipeline.errors import KadnError

log = logging.getLogger(__name__)
YEAR_ARG_RE = re.compile(r"^\s*(\d{4})\s*(?:-\s*(\d{4})\s*)?$")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def parse_years(text: str) -> tuple[int, int]:
    m = YEAR_ARG_RE.match(str(text))
    if not m:
        raise ValueError(f"years must look like 2007-2019 or 2012, got {text!r}")
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if lo > hi:
        raise ValueError(f"years {text!r}: the first year is after the last")
    return lo, hi


def parse_ids(text: str) -> list[int]:
    ids = [t.strip() for t in re.split(r"[,\s]+", str(text)) if t.strip()]
    if not ids or not all(t.isdigit() for t in ids):
        raise ValueError(f"ids must be Douban subject ids separated by commas, got {text!r}")
    return list(dict.fromkeys(int(t) for t in ids))


class DoubanSpider(SitemapSpider):
    name = "douban"
    # SitemapSpider machinery for the robots-friendly path: subject URLs go to parse_subject, the rest of a
    # sitemap (celebrities, reviews...) is ignored.
    sitemap_rules = [(SUBJECT_URL_RE, "parse_subject")]

    def __init__(self, years: str = "2007-2019", ids: str | None = None, limit: str | None = None,
                 refresh: str | None = None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.years = parse_years(years)
        self.ids = parse_ids(ids) if ids else None
        self.limit = int(limit) if limit not in (None, "") else None
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be a positive number of subject pages")
        self.refresh = str(refresh).lower() in ("1", "true", "yes") if refresh is not None else False
        self.requested = 0  # subject pages scheduled (for limit)
        self.fresh: set[int] = set()  # stored films fetched recently: not re-fetched by discovery

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        s = crawler.settings
        spider.base = s.get("DOUBAN_BASE_URL").rstrip("/")
        if not urlsplit(spider.base).scheme or not urlsplit(spider.base).netloc:
            raise ValueError(f"DOUBAN_BASE_URL must be an absolute URL, got {spider.base!r}")
        spider.discovery = s.get("DOUBAN_DISCOVERY", "auto")
        if spider.discovery not in ("auto", "listing", "sitemap"):
            raise ValueError(f"DOUBAN_DISCOVERY must be auto, listing or sitemap, got {spider.discovery!r}")
        spider.listing_path = s.get("DOUBAN_LISTING_PATH")
        spider.page_size = s.getint("DOUBAN_LISTING_PAGE_SIZE", 20)
        spider.refresh_days = s.getfloat("DOUBAN_REFRESH_DAYS", 30.0)
        spider.parse_retries = s.getint("DOUBAN_PARSE_RETRIES", 2)
        spider.obey_robots = s.getbool("ROBOTSTXT_OBEY")
        spider.robots_agent = s.get("ROBOTSTXT_USER_AGENT") or s.get("USER_AGENT") or "*"
        spider.db_url = store.database_url(s.get("DATABASE_URL"))
        return spider

    # -- URLs ----------------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        """Any path, or an absolute URL from the site's own links, rebuilt on DOUBAN_BASE_URL."""
        parts = urlsplit(path)
        return self.base + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def subject_request(self, douban_id: int, **meta) -> Request | None:
        if douban_id in self.fresh:
            self.crawler.stats.inc_value("douban/fresh_skipped")
            return None
        if self.limit is not None and self.requested >= self.limit:
            self.crawler.stats.inc_value("douban/over_limit")
            return None
        self.requested += 1
        self.crawler.stats.inc_value("douban/subjects_requested")
        return Request(self.url(f"/subject/{douban_id}/"), callback=self.parse_subject,
                       errback=self.subject_failed, meta=meta)

    def listing_request(self, year: int, start: int) -> Request:
        query = urlencode({"sort": "U", "range": "0,10", "tags": "电影", "start": start,
                           "year_range": f"{year},{year}"})
        return Request(self.url(f"{self.listing_path}?{query}"), callback=self.parse_listing,
                       errback=self.discovery_failed, meta={"year": year, "start": start})

    # -- start ---------------------------------------------------------------------------------------
    async def start(self):
        stats = self.crawler.stats
        if self.ids:
            stats.set_value("douban/discovery", "ids")
            log.info("discovery: none, fetching the %d subject(s) given with -a ids", len(self.ids))
            for did in self.ids:
                req = self.subject_request(did)
                if req:
                    yield req
            return
        try:
            engine = store.connect(self.db_url)
        except KadnError as exc:
            raise CloseSpider(f"cannot open the movie store: {exc}") from None
        try:
            cutoff = _utcnow() - timedelta(days=self.refresh_days)
            stale = set(store.fetched_before(engine, cutoff))
            with engine.connect() as conn:
                known = {row[0] for row in conn.execute(select(store.Movie.douban_id))}
        finally:
            engine.dispose()
        if self.refresh:
            stats.set_value("douban/discovery", "refresh")
            log.info("discovery: none, refreshing %d stored film(s) last fetched before %s",
                     len(stale), cutoff.isoformat(timespec="seconds"))
            for did in sorted(stale):
                req = self.subject_request(did)
                if req:
                    yield req
            return
        if self.refresh_days > 0:
            self.fresh = known - stale
            if self.fresh:
                log.info("%d stored film(s) fetched within %g days are not re-fetched (DOUBAN_REFRESH_DAYS)",
                         len(self.fresh), self.refresh_days)
        yield Request(self.url("/robots.txt"), callback=self.plan_discovery, errback=self.robots_failed,
                      dont_filter=True, meta={"handle_httpstatus_list": [404, 410], "dont_obey_robotstxt": True})

    # -- discovery -----------------------------------------------------------------------------------
    def plan_discovery(self, response):
        """Choose the listing or the sitemaps from robots.txt, say which and why, or stop plainly."""
        robots = Protego.parse(response.text if response.status == 200 else "")
        listing_url = self.listing_request(self.years[0], 0).url
        listing_ok = not self.obey_robots or robots.can_fetch(listing_url, self.robots_agent)
        sitemaps = [self.url(u) for u in robots.sitemaps] or [self.url("/sitemap_index.xml")]
        sitemap_ok = not self.obey_robots or any(robots.can_fetch(u, self.robots_agent) for u in sitemaps)
        robots_url = response.url
        chosen, why = None, ""
        if self.discovery in ("auto", "listing") and listing_ok:
            chosen = "listing"
            why = ("robots.txt allows it" if self.obey_robots else "ROBOTSTXT_OBEY is off") + \
                  (", and it is the fast path" if self.discovery == "auto" else ", as DOUBAN_DISCOVERY asks")
        elif self.discovery in ("auto", "sitemap") and sitemap_ok:
            chosen = "sitemap"
            why = (f"robots.txt disallows the listing {self.listing_path}" if self.discovery == "auto"
                   else "DOUBAN_DISCOVERY asks for it") + f"; sitemaps: {', '.join(sitemaps)}"
        if chosen is None:
            wanted = {"auto": "the listing and the sitemaps", "listing": f"the listing {self.listing_path}",
                      "sitemap": "the sitemaps"}[self.discovery]
            msg = (f"discovery blocked: {robots_url} disallows {wanted} for user agent {self.robots_agent!r}; "
                   "nothing was crawled. Try -s DOUBAN_DISCOVERY=sitemap (robots-friendly), -a ids=..., or "
                   "-s ROBOTSTXT_OBEY=False only if you have the site's permission.")
            log.error(msg)
            self.crawler.stats.set_value("douban/discovery", "blocked")
            raise CloseSpider("discovery_blocked")
        self.crawler.stats.set_value("douban/discovery", chosen)
        log.info("discovery: %s (%s); years %d-%d", chosen, why, *self.years)
        if chosen == "listing":
            for year in range(self.years[0], self.years[1] + 1):
                yield self.listing_request(year, 0)
        else:
            for url in sitemaps:
                yield Request(url, callback=self._parse_sitemap, errback=self.discovery_failed)

    def parse_listing(self, response):
        year, start = response.meta["year"], response.meta["start"]
        try:
            data = json.loads(response.text).get("data")
            if not isinstance(data, list):
                raise ValueError("no 'data' list")
            ids = [int(item["id"]) for item in data]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.crawler.stats.inc_value("douban/listing_unreadable")
            log.error("listing %s is not the JSON expected (%s): year %d stops at offset %d",
                      response.url, exc, year, start)
            return
        self.crawler.stats.inc_value("douban/listing_pages")
        self.crawler.stats.inc_value("douban/discovered", len(ids))
        for did in ids:
            req = self.subject_request(did)
            if req:
                yield req
        # Paginate until an empty page: the endpoint's page size is not a promise.
        if ids and (self.limit is None or self.requested < self.limit):
            yield self.listing_request(year, start + len(ids))

    def sitemap_filter(self, entries):
        """Rebuild every sitemap URL on DOUBAN_BASE_URL; apply limit and freshness to subjects."""
        for entry in entries:
            loc = entry.get("loc", "")
            m = SUBJECT_URL_RE.search(loc)
            if m:
                did = int(m.group(1))
                self.crawler.stats.inc_value("douban/discovered")
                if did in self.fresh:
                    self.crawler.stats.inc_value("douban/fresh_skipped")
                    continue
                if self.limit is not None and self.requested >= self.limit:
                    continue
                self.requested += 1
                self.crawler.stats.inc_value("douban/subjects_requested")
                entry = dict(entry, loc=self.url(f"/subject/{did}/"))
            else:
                entry = dict(entry, loc=self.url(loc))
            yield entry

    # -- subjects ------------------------------------------------------------------------------------
    def parse_subject(self, response):
        stats = self.crawler.stats
        result = parse_subject(response.text, response.url)
        if result.kind == "tv":
            stats.inc_value("douban/tv_skipped")
            return
        if result.kind == "failed":
            tries = response.meta.get("parse_retries", 0)
            if tries < self.parse_retries:
                stats.inc_value("douban/parse_retried")
                log.warning("page did not parse, fetching again: %s (%s)", response.url, result.reason)
                yield response.request.replace(dont_filter=True, meta=dict(response.meta, parse_retries=tries + 1))
                return
            stats.inc_value("douban/parse_failed")
            log.error("page did not parse, nothing stored for it: %s (%s)", response.url, result.reason)
            return
        record = result.record
        if result.notes:
            stats.inc_value("douban/json_ld_fallback")
        # The sitemaps list every year; the listing and -a ids are already what was asked for.
        in_years = record["year"] is not None and self.years[0] <= record["year"] <= self.years[1]
        if stats.get_value("douban/discovery") == "sitemap" and not in_years:
            stats.inc_value("douban/out_of_years")
            return
        yield MovieItem(record=record, fetched_at=_utcnow())

    def subject_failed(self, failure):
        self.crawler.stats.inc_value("douban/fetch_failed")
        log.error("could not fetch %s: %s", failure.request.url, failure.getErrorMessage())

    def discovery_failed(self, failure):
        self.crawler.stats.inc_value("douban/discovery_failed")
        log.error("discovery request failed, its pages are not crawled: %s (%s)", failure.request.url,
                  failure.getErrorMessage())

    def robots_failed(self, failure):
        log.error("cannot read %s (%s): discovery needs it when ROBOTSTXT_OBEY is on", failure.request.url,
                  failure.getErrorMessage())
        self.crawler.stats.set_value("douban/discovery", "blocked")
        if self.crawler.engine:
            from crawler.middlewares import close_spider

            close_spider(self.crawler, "discovery_blocked")

    def closed(self, reason):
        s = self.crawler.stats
        get = s.get_value
        line = (f"douban crawl {reason}: discovery={get('douban/discovery', 'none')}, "
                f"discovered {get('douban/discovered', 0)}, requested {get('douban/subjects_requested', 0)} "
                f"subject pages, stored {get('douban/stored', 0)} films, skipped {get('douban/tv_skipped', 0)} "
                f"TV subjects and {get('douban/fresh_skipped', 0)} recently fetched films, "
                f"{get('douban/out_of_years', 0)} outside the years, {get('douban/parse_failed', 0)} pages "
                f"failed to parse, {get('douban/fetch_failed', 0)} failed to download, "
                f"{get('douban/banned', 0)} ban answers")
        (log.warning if get("douban/stored", 0) == 0 and reason == "finished" else log.info)(line)
        if get("douban/stored", 0) == 0 and reason == "finished" and get("douban/discovery") not in ("ids", "refresh"):
            log.warning("no films were stored: check the discovery line above and the stats "
                        "(douban/discovery_failed, robotstxt/forbidden, douban/banned)")
