"""`scrapy crawl douban`: discover Douban films year by year, fetch their subject pages, store them.

Arguments: `-a years=2007-2019` (default; a single year or A-B), `-a ids=ID,ID` (just these subjects, no
discovery), `-a limit=N` (at most N subject pages), `-a refresh=1` (re-fetch stored films older than
DOUBAN_REFRESH_DAYS, no discovery). Discovery (DOUBAN_DISCOVERY): the year-filtered JSON listing the site
itself uses (fast), or the sitemaps named in robots.txt (robots-friendly), chosen from robots.txt in
"auto" mode; the crawl logs which one it used and why, and stops with a plain message when robots.txt
forbids the chosen path. Parsing lives in crawler.parsing, storage in crawler.pipelines.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from protego import Protego
from scrapy import Request
from scrapy.exceptions import CloseSpider
from scrapy.spiders import SitemapSpider
from sqlalchemy import select

from crawler.distributed import release_lease
from crawler.items import MovieItem
from crawler.middlewares import DuplicateRequest, close_spider
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
        raise ValueError(f"years must look like 2007-2019 or 2012, got {short(text)}")
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if lo > hi:
        raise ValueError(f"years {short(text)}: the first year is after the last")
    return lo, hi


def parse_ids(text: str) -> list[int]:
    ids = [t.strip() for t in re.split(r"[,\s]+", str(text)) if t.strip()]
    if not ids or not all(t.isdigit() for t in ids):
        raise ValueError(f"ids must be Douban subject ids separated by commas, got {short(text)}")
    return list(dict.fromkeys(int(t) for t in ids))


def parse_limit(text: str | None) -> int | None:
    if text is None or str(text).strip() == "":
        return None
    t = str(text).strip()
    if not t.isdigit() or int(t) < 1:
        raise ValueError(f"limit must be a positive number of subject pages, got {short(text)}")
    return int(t)


def parse_flag(text: str | None) -> bool:
    t = "" if text is None else str(text).strip().lower()
    if t not in FLAGS:
        raise ValueError(f"refresh must be 1 or 0 (yes/no, true/false), got {short(text)}")
    return FLAGS[t]


FLAGS = {"": False, "0": False, "no": False, "false": False, "1": True, "yes": True, "true": True}
# The spider's arguments (`-a NAME=VALUE`), each with its parser; `scrapy crawl` checks them before starting.
ARGUMENTS = {"years": parse_years, "ids": lambda text: parse_ids(text) if text else None, "limit": parse_limit,
             "refresh": parse_flag}


def cut(value, width: int = 40) -> str:
    """A value for an error line, cut to a short prefix (an argument may be megabytes long)."""
    text = str(value)
    return text if len(text) <= width else text[:width] + "..."


def short(value) -> str:
    return repr(cut(value))


def check_arguments(spargs: dict) -> None:
    """Raise ValueError naming the first unknown or bad spider argument in `spargs` (the `-a NAME=VALUE`)."""
    for name, value in spargs.items():
        if name not in ARGUMENTS:
            close = difflib.get_close_matches(name, ARGUMENTS, n=1)
            hint = f"did you mean -a {close[0]}? " if close else ""
            raise ValueError(f"unknown spider argument -a {cut(name)}={cut(value)}: {hint}the douban "
                             f"spider takes {', '.join(ARGUMENTS)}")
        try:
            ARGUMENTS[name](value)
        except ValueError as exc:
            raise ValueError(f"bad spider argument -a {name}={cut(value)}: {exc}") from None


class DoubanSpider(SitemapSpider):
    name = "douban"
    # SitemapSpider machinery for the robots-friendly path: subject URLs go to parse_subject, the rest of a
    # sitemap (celebrities, reviews...) is ignored.
    sitemap_rules = [(SUBJECT_URL_RE, "parse_subject")]
    check_arguments = staticmethod(check_arguments)  # called by the project's `scrapy crawl` before starting

    def __init__(self, years: str = "2007-2019", ids: str | None = None, limit: str | None = None,
                 refresh: str | None = None, *args, **kwargs):
        check_arguments({k: v for k, v in kwargs.items() if k != "name"})  # unknown names: refused here too
        super().__init__(*args, **kwargs)
        self.years = parse_years(years)
        self.ids = parse_ids(ids) if ids else None
        self.limit = parse_limit(limit)
        self.refresh = parse_flag(refresh)
        self.requested = 0  # subject pages scheduled (for limit)
        self.skip: set[int] = set()  # stored films not to fetch again (fresh, or stored earlier in this crawl)
        self.seen: set[int] = set()  # subjects requested in this run (a film listed twice is fetched once)
        self.listed: set[int] = set()  # subjects the listing gave in this run (pagination stops on repeats)
        self.sitemaps: list[str] = []
        self.abandoned: set[str] = set()  # discovery paths given up (their queued requests are dropped)
        self.marker: Path | None = None

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

    def subject_request(self, douban_id: int) -> Request | None:
        stats = self.crawler.stats
        if douban_id in self.skip:
            stats.inc_value("douban/fresh_skipped")
            return None
        if douban_id in self.seen:
            stats.inc_value("douban/duplicate_skipped")
            return None
        if self.limit is not None and self.requested >= self.limit:
            stats.inc_value("douban/over_limit")
            return None
        self.seen.add(douban_id)
        self.requested += 1
        stats.inc_value("douban/subjects_requested")
        # dont_filter: de-duplication is DedupeMiddleware's (see there why not Scrapy's dupefilter).
        return Request(self.url(f"/subject/{douban_id}/"), callback=self.parse_subject,
                       errback=self.subject_failed, dont_filter=True,
                       meta={"dedupe_key": f"subject:{douban_id}"})

    def subject_requests(self, ids):
        """subject_request for each id, leaving out the ones it declines (fresh, seen, over the limit)."""
        for did in ids:
            req = self.subject_request(did)
            if req:
                yield req

    def listing_request(self, year: int, start: int) -> Request:
        query = urlencode({"sort": "U", "range": "0,10", "tags": "电影", "start": start,
                           "year_range": f"{year},{year}"})
        return Request(self.url(f"{self.listing_path}?{query}"), callback=self.parse_listing,
                       errback=self.discovery_failed, dont_filter=True,
                       meta={"year": year, "start": start, "discovery": "listing",
                             "dedupe_key": f"listing:{year}:{start}"})

    def sitemap_request(self, url: str) -> Request:
        url = self.url(url)
        return Request(url, callback=self._parse_sitemap, errback=self.discovery_failed, dont_filter=True,
                       meta={"discovery": "sitemap", "dedupe_key": f"sitemap:{url}"})

    # -- start ---------------------------------------------------------------------------------------
    async def start(self):
        stats = self.crawler.stats
        try:
            engine = store.connect(self.db_url)
        except KadnError as exc:
            raise CloseSpider(f"cannot open the movie store: {exc}") from None
        now = _utcnow()
        cutoff = now - timedelta(days=self.refresh_days)
        started = self._resume_marker(now)
        try:
            with engine.connect() as conn:
                fetched = dict(conn.execute(select(store.Movie.douban_id, store.Movie.last_fetched)).all())
        finally:
            engine.dispose()
        stale = {i for i, t in fetched.items() if t is None or t < cutoff}
        # A resumed crawl never fetches again what it already stored, whatever DOUBAN_REFRESH_DAYS says,
        # nor the TV subjects it found (kept in the JOBDIR's spider state after a graceful stop).
        done = {i for i, t in fetched.items() if started and t and t >= started}
        if started:
            done |= set(getattr(self, "state", {}).get("tv_ids", ()))

        if self.ids:
            self.skip = done
            stats.set_value("douban/discovery", "ids")
            log.info("discovery: none, fetching the %d subject(s) given with -a ids", len(self.ids))
            for req in self.subject_requests(self.ids):
                yield req
            return
        if self.refresh:
            self.skip = done
            stats.set_value("douban/discovery", "refresh")
            log.info("discovery: none, refreshing %d stored film(s) last fetched before %s",
                     len(stale - done), cutoff.isoformat(timespec="seconds"))
            for req in self.subject_requests(sorted(stale - done)):
                yield req
            return
        self.skip = (set(fetched) - stale if self.refresh_days > 0 else set()) | done
        if self.skip:
            log.info("%d stored film(s) are not fetched again (fetched within DOUBAN_REFRESH_DAYS=%g days, or "
                     "earlier in this resumed crawl)", len(self.skip), self.refresh_days)
        yield Request(self.url("/robots.txt"), callback=self.plan_discovery, errback=self.robots_failed,
                      dont_filter=True, meta={"handle_httpstatus_list": [404, 410], "dont_obey_robotstxt": True})

    def _resume_marker(self, now: datetime) -> datetime | None:
        """With a JOBDIR: the start time of the crawl this run resumes, or None (and mark a new crawl)."""
        jobdir = self.crawler.settings.get("JOBDIR")
        if not jobdir:
            return None
        self.marker = Path(jobdir) / "douban-crawl.json"
        if self.marker.exists():
            try:
                started = datetime.fromisoformat(json.loads(self.marker.read_text())["started"])
            except (ValueError, KeyError, OSError) as exc:
                log.warning("ignoring unreadable %s (%s): treating this as a new crawl", self.marker, exc)
            else:
                self.crawler.stats.set_value("douban/resumed_from", started.isoformat(timespec="seconds"))
                log.info("resuming the crawl begun %s UTC (JOBDIR %s): films it stored are not fetched again",
                         started.isoformat(timespec="seconds"), jobdir)
                return started
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(json.dumps({"started": now.isoformat()}))
        return None

    # -- discovery -----------------------------------------------------------------------------------
    def plan_discovery(self, response):
        return self._plan_discovery(response.text if response.status == 200 else "", response.url)

    def _plan_discovery(self, robots_txt: str, robots_url: str):
        """Choose the listing or the sitemaps from robots.txt, say which and why, or stop plainly."""
        robots = Protego.parse(robots_txt)
        listing_url = self.listing_request(self.years[0], 0).url
        listing_ok = not self.obey_robots or robots.can_fetch(listing_url, self.robots_agent)
        sitemaps = [self.url(u) for u in robots.sitemaps] or [self.url("/sitemap_index.xml")]
        sitemap_ok = not self.obey_robots or any(robots.can_fetch(u, self.robots_agent) for u in sitemaps)
        if self.obey_robots and not robots.can_fetch(self.url("/subject/1/"), self.robots_agent):
            log.error("discovery blocked: %s disallows the subject pages (/subject/...) for user agent %r; nothing "
                      "was crawled.", robots_url, self.robots_agent)
            self.crawler.stats.set_value("douban/discovery", "blocked")
            raise CloseSpider("discovery_blocked")
        crawl_delay = robots.crawl_delay(self.robots_agent) if self.obey_robots else None
        if crawl_delay:
            self._honour_crawl_delay(float(crawl_delay))
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
        self.sitemaps = sitemaps if sitemap_ok else []
        if chosen == "listing":
            for year in range(self.years[0], self.years[1] + 1):
                yield self.listing_request(year, 0)
        else:
            for url in sitemaps:
                yield self.sitemap_request(url)

    def _honour_crawl_delay(self, delay: float) -> None:
        """robots.txt's Crawl-delay as the floor of every download delay (Scrapy itself ignores it)."""
        downloader = self.crawler.engine.downloader
        raised = delay > getattr(downloader, "_delay", 0.0)
        if raised:
            downloader._delay = delay  # the delay new download slots start with
        for slot in getattr(downloader, "slots", {}).values():
            slot.delay = max(slot.delay, delay)
        for ext in getattr(self.crawler.extensions, "middlewares", ()):
            if hasattr(ext, "mindelay"):  # AutoThrottle never goes below its mindelay
                ext.mindelay = max(ext.mindelay, delay)
        self.crawler.stats.set_value("douban/crawl_delay", delay)
        log.info("robots.txt asks for Crawl-delay: %g s%s", delay,
                 "; honoured as the minimum delay between requests" if raised else " (already slower)")

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
        new = [did for did in ids if did not in self.listed]
        self.listed.update(new)
        if ids and not new:
            # An endpoint that ignores `start` (or year_range) repeats itself: paginating would never end.
            self.crawler.stats.inc_value("douban/listing_repeated")
            log.warning("listing %s brought no film not already listed in this run: year %d stops at offset %d",
                        response.url, year, start)
            return
        self.crawler.stats.inc_value("douban/discovered", len(ids))
        yield from self.subject_requests(ids)
        # Paginate until an empty page (the endpoint's page size is not a promise) or one with nothing new.
        if ids and (self.limit is None or self.requested < self.limit):
            yield self.listing_request(year, start + len(ids))

    def _parse_sitemap(self, response):
        """SitemapSpider's parsing (index, urlset, gzip), with every URL rebuilt on DOUBAN_BASE_URL and
        subjects going through subject_request (skip, limit, de-duplication)."""
        for req in super()._parse_sitemap(response):
            m = SUBJECT_URL_RE.search(req.url)
            if m and req.callback == self.parse_subject:
                self.crawler.stats.inc_value("douban/discovered")
                yield from self.subject_requests([int(m.group(1))])
            elif not m:
                yield self.sitemap_request(req.url)

    # -- subjects ------------------------------------------------------------------------------------
    def parse_subject(self, response):
        stats = self.crawler.stats
        result = parse_subject(response.text, response.url)
        if result.kind == "tv":
            stats.inc_value("douban/tv_skipped")
            state = getattr(self, "state", None)  # set with a JOBDIR: a resumed crawl skips these too
            if state is not None:
                state.setdefault("tv_ids", set()).add(result.douban_id)
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

    # Errbacks: a page given up here (a ban, a login wall, a failed download) is done with; on the Redis
    # frontier its lease goes now (after any follow-up is queued), or it would expire and the page be
    # fetched again for nothing.
    def subject_failed(self, failure):
        release_lease(self.crawler, failure.request)
        if failure.check(DuplicateRequest):
            return
        self.crawler.stats.inc_value("douban/fetch_failed")
        log.error("could not fetch %s: %s", failure.request.url, failure.getErrorMessage())

    def _follow_up(self, request, requests) -> None:
        """Schedule an errback's follow-up requests now, then let the failed page's lease go. (What an errback
        yields after a download failure skips the spider middlewares, so nothing would hold the lease until
        those requests reach the Redis frontier; a kill in between would lose them.)"""
        for req in requests:
            self.crawler.engine.crawl(req)
        release_lease(self.crawler, request)

    def discovery_failed(self, failure):
        self._follow_up(failure.request, self._after_discovery_failure(failure))

    def _after_discovery_failure(self, failure):
        request = failure.request
        if failure.check(DuplicateRequest) or request.meta.get("discovery") in self.abandoned:
            return
        stats = self.crawler.stats
        stats.inc_value("douban/discovery_failed")
        log.error("discovery request failed, its pages are not crawled: %s (%s)", request.url,
                  failure.getErrorMessage())
        if request.meta.get("discovery") != "listing" or stats.get_value("douban/discovered", 0):
            return
        # The listing failed before it gave a single film: blocked, not a passing fault.
        self.abandoned.add("listing")
        if self.discovery == "auto" and self.sitemaps:
            stats.set_value("douban/discovery", "sitemap")
            stats.set_value("douban/discovery_fallback", f"listing failed: {failure.getErrorMessage()}")
            log.warning("discovery: sitemap (the listing %s is blocked: %s); sitemaps: %s", self.listing_path,
                        failure.getErrorMessage(), ", ".join(self.sitemaps))
            for url in self.sitemaps:
                yield self.sitemap_request(url)
            return
        stats.set_value("douban/discovery", "blocked")
        log.error("discovery blocked: the listing %s failed before giving any film (%s); nothing was crawled. "
                  "Try -s DOUBAN_DISCOVERY=sitemap, or later (a ban lifts).", self.listing_path,
                  failure.getErrorMessage())
        close_spider(self.crawler, "discovery_blocked")

    def robots_failed(self, failure):
        self._follow_up(failure.request, self._after_robots_failure(failure))

    def _after_robots_failure(self, failure):
        if not self.obey_robots:
            # robots.txt only matters when obeyed: discover as if it were empty (default sitemap index).
            self.crawler.stats.set_value("douban/robots_failed", failure.getErrorMessage())
            log.warning("cannot read %s (%s): ROBOTSTXT_OBEY is off, so discovery goes on as if it were empty",
                        failure.request.url, failure.getErrorMessage())
            yield from self._plan_discovery("", failure.request.url)
            return
        log.error("cannot read %s (%s): discovery needs it when ROBOTSTXT_OBEY is on", failure.request.url,
                  failure.getErrorMessage())
        self.crawler.stats.set_value("douban/discovery", "blocked")
        close_spider(self.crawler, "discovery_blocked")

    def closed(self, reason):
        if reason == "finished" and self.marker is not None:
            self.marker.unlink(missing_ok=True)  # the next run with this JOBDIR is a new crawl
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
