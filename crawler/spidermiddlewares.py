"""Spider middlewares: which subject pages a crawl requests (decided from the store and the crawl so far),
and what becomes of a page that did not parse."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

from scrapy import Request, signals
from scrapy.exceptions import CloseSpider
from sqlalchemy import select

from crawler.discovery import mark_undiscovered
from crawler.parsing import PageUnparsed
from pipeline.errors import KadnError
from pipeline.film import store

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class SubjectGate:
    """Passes a subject request (one with `meta["douban_id"]`) only when its film is not stored fresh (within
    DOUBAN_REFRESH_DAYS, for discovery), not stored or found to be TV earlier in a resumed crawl, not requested
    already in this run, and within the spider's `limit`; past the limit, discovery requests stop too.

    The store is read once, as the crawl starts. With a JOBDIR, a marker file there holds the start time of
    the crawl, so a resumed crawl knows which films it stored itself; it goes when the crawl finishes.
    Subject pages fetched again after a parse failure (`parse_retries`) pass.
    """

    def __init__(self, crawler):
        s = crawler.settings
        self.crawler, self.stats = crawler, crawler.stats
        self.refresh_days = s.getfloat("DOUBAN_REFRESH_DAYS")
        self.url = store.database_url(s.get("DATABASE_URL"))
        self.marker = Path(s.get("JOBDIR")) / "douban-crawl.json" if s.get("JOBDIR") else None
        self.skip: set[int] = set()
        self.seen: set[int] = set()
        # Stored films due for a refresh, oldest ids first: what `-a refresh=1` fetches (the spider reads it).
        self.stale: list[int] = []
        self.requested = 0
        crawler.signals.connect(self.closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    async def process_start(self, start):
        self.load(self.crawler.spider)
        async for out in start:
            if self.admit(out):
                yield out

    async def process_spider_output(self, response, result):
        async for out in result:
            if self.admit(out):
                yield out

    def load(self, spider) -> None:
        now = utcnow()
        started = self._resume_marker(now)
        try:
            engine = store.connect(self.url)
        except KadnError as exc:
            raise CloseSpider(f"cannot open the movie store: {exc}") from None
        try:
            with engine.connect() as conn:
                fetched = dict(conn.execute(select(store.Movie.douban_id, store.Movie.last_fetched)).all())
        finally:
            engine.dispose()
        cutoff = now - timedelta(days=self.refresh_days)
        stale = {i for i, t in fetched.items() if t is None or t < cutoff}
        # A resumed crawl never fetches again what it already stored, whatever DOUBAN_REFRESH_DAYS says,
        # nor the TV subjects it found (kept in the JOBDIR's spider state after a graceful stop).
        done = {i for i, t in fetched.items() if started and t and t >= started}
        if started:
            done |= set(getattr(spider, "state", {}).get("tv_ids", ()))
        self.stale = sorted(stale - done)
        if spider.ids or spider.refresh or getattr(spider, "coming", False):  # coming: wish counts move daily
            self.skip = done
            return
        self.skip = (set(fetched) - stale if self.refresh_days > 0 else set()) | done
        if self.skip:
            log.info("%d stored film(s) are not fetched again (fetched within DOUBAN_REFRESH_DAYS=%g days, or "
                     "earlier in this resumed crawl)", len(self.skip), self.refresh_days)

    def admit(self, out) -> bool:
        if not isinstance(out, Request):
            return True
        limit = self.crawler.spider.limit
        full = limit is not None and self.requested >= limit
        did = out.meta.get("douban_id")
        if did is None or out.meta.get("parse_retries"):
            return did is not None or not (full and out.meta.get("discovery"))
        why = ("fresh_skipped" if did in self.skip else "duplicate_skipped" if did in self.seen
               else "over_limit" if full else None)
        if why:
            self.stats.inc_value(f"douban/{why}")
            return False
        self.seen.add(did)
        self.requested += 1
        self.stats.inc_value("douban/subjects_requested")
        return True

    def _resume_marker(self, now: datetime) -> datetime | None:
        """With a JOBDIR: the start time of the crawl this run resumes, or None (and mark a new crawl)."""
        if self.marker is None:
            return None
        if self.marker.exists():
            try:
                started = datetime.fromisoformat(json.loads(self.marker.read_text())["started"])
            except (ValueError, KeyError, TypeError, OSError) as exc:
                log.warning("ignoring unreadable %s (%s): treating this as a new crawl", self.marker, exc)
            else:
                self.stats.set_value("douban/resumed_from", started.isoformat(timespec="seconds"))
                log.info("resuming the crawl begun %s UTC (JOBDIR %s): films it stored are not fetched again",
                         started.isoformat(timespec="seconds"), self.marker.parent)
                return started
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(json.dumps({"started": now.isoformat()}))
        return None

    def closed(self, spider, reason):
        if reason == "finished" and self.marker is not None:
            self.marker.unlink(missing_ok=True)  # the next run with this JOBDIR is a new crawl


class ParseRetry:
    """A subject page that did not parse (the callback raised PageUnparsed) is fetched again up to
    DOUBAN_PARSE_RETRIES times (a cut page is often transient), then given up with an error naming it; nothing
    is stored for it either way. A listing page that did not parse (BackoffRetryMiddleware lets none through)
stops its year there, and the crawl exits 1."""

    def __init__(self, crawler):
        self.stats, self.retries = crawler.stats, crawler.settings.getint("DOUBAN_PARSE_RETRIES")

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_spider_exception(self, response, exception):
        if not isinstance(exception, PageUnparsed):
            return None
        if response.meta.get("discovery") == "listing":
            self.stats.inc_value("douban/listing_unreadable")
            log.error("listing %s is not the JSON expected (%s): year %s stops at offset %s", response.url,
                      exception, response.meta.get("year"), response.meta.get("start"))
            mark_undiscovered(self.stats, f"year {response.meta.get('year')}")
            return []
        tries = response.meta.get("parse_retries", 0)
        if tries < self.retries:
            self.stats.inc_value("douban/parse_retried")
            log.warning("page did not parse, fetching again: %s (%s)", response.url, exception)
            return [response.request.replace(meta=dict(response.meta, parse_retries=tries + 1))]
        self.stats.inc_value("douban/parse_failed")
        log.error("page did not parse, nothing stored for it: %s (%s)", response.url, exception)
        return []


class ListingRepeats:
    """A listing page that brings no film the listing had not already given in this run stops its year there:
    an endpoint that ignores `start` (or `year_range`) repeats itself, and paginating it would never end."""

    def __init__(self, crawler):
        self.stats = crawler.stats
        self.listed: set[int] = set()

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    async def process_spider_output(self, response, result):
        if response.meta.get("discovery") != "listing":
            async for out in result:
                yield out
            return
        outs = [out async for out in result]  # one page: a few dozen requests
        ids = {out.meta["douban_id"] for out in outs if isinstance(out, Request) and "douban_id" in out.meta}
        if ids and ids <= self.listed:
            self.stats.inc_value("douban/listing_repeated")
            log.warning("listing %s brought no film not already listed in this run: year %s stops at offset %s",
                        response.url, response.meta.get("year"), response.meta.get("start"))
            outs = [out for out in outs if not (isinstance(out, Request) and out.meta.get("discovery"))]
        self.listed |= ids
        for out in outs:
            yield out
