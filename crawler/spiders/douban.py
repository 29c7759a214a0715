"""`scrapy crawl douban`: discover Douban films year by year, fetch their subject pages, store them.

Arguments (crawler.arguments): `-a years=2007-2019` (default; a single year or A-B), `-a ids=ID,ID` (just
these subjects, no discovery), `-a limit=N` (at most N subject pages), `-a refresh=1` (re-fetch stored films
older than DOUBAN_REFRESH_DAYS, no discovery), `-a coming=1` (the films on the coming-soon lists: /coming and
the /cinema/later/CITY/ pages of `-a cities=beijing,...`). Discovery (crawler.discovery) takes the JSON listing or the
sitemaps, as robots.txt and DOUBAN_DISCOVERY allow. This class only builds requests and reads answers:
parsing is crawler.parsing's, which pages to request crawler.spidermiddlewares', bans, retries and
de-duplication crawler.middlewares', Crawl-delay and the summary crawler.extensions', storage the pipeline's.
A page an errback gives up (banned, login-walled, failed) is done with: on the Redis frontier its lease goes
once any follow-up is queued (crawler.distributed.settle).
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode, urlsplit

from protego import Protego
from scrapy import Request
from scrapy.spiders import SitemapSpider

from crawler.arguments import check_arguments, parse_cities, parse_flag, parse_ids, parse_limit, parse_years
from crawler.discovery import (
    DiscoveryBlocked,
    coming_lists,
    listing_fallback,
    mark_undiscovered,
    plan_discovery,
    read_settings,
)
from crawler.distributed import release_lease, settle
from crawler.extensions import robots_agent
from crawler.items import MovieItem
from crawler.middlewares import DuplicateRequest, close_spider
from crawler.parsing import SUBJECT_URL_RE, PageUnparsed, coming_ids, listing_page, parse_subject
from crawler.spidermiddlewares import SubjectGate, utcnow

log = logging.getLogger(__name__)


class DoubanSpider(SitemapSpider):
    name = "douban"
    sitemap_rules = [(SUBJECT_URL_RE, "parse_subject")]  # the rest of a sitemap (celebrities...) is ignored
    check_arguments = staticmethod(check_arguments)  # called by the project's `scrapy crawl` before starting

    def __init__(self, years: str | None = None, ids: str | None = None, limit: str | None = None,
                 refresh: str | None = None, coming: str | None = None, cities: str | None = None, *args, **kwargs):
        given = dict(years=years, ids=ids, limit=limit, refresh=refresh, coming=coming, cities=cities)
        # Unknown names and clashing ones (coming with years): refused here too.
        check_arguments({k: v for k, v in {**kwargs, **given}.items() if k != "name" and v is not None})
        super().__init__(*args, **kwargs)
        self.years, self.limit, self.refresh = parse_years(years or "2007-2019"), parse_limit(limit), parse_flag(refresh)
        self.ids = parse_ids(ids) if ids else None
        self.coming, self.cities = parse_flag(coming, "coming"), parse_cities(cities)
        self.coming_found: set[int] = set()  # subjects the coming-soon lists gave (one may be on several)
        self.coming_requested = self.coming_failed = 0  # coming-soon lists requested, and given up
        self.abandoned: set[str] = set()  # discovery paths given up (DedupeMiddleware drops their requests)
        self.chosen, self.sitemaps, self.discovered = None, [], 0

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.base, spider.mode, spider.listing_path = read_settings(crawler.settings)
        spider.obey = crawler.settings.getbool("ROBOTSTXT_OBEY")
        return spider

    def url(self, path: str) -> str:
        """Any path, or an absolute URL from the site's own links, rebuilt on DOUBAN_BASE_URL."""
        parts = urlsplit(path)
        return self.base + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def request(self, url: str, callback, errback, **meta) -> Request:  # deduplicated by DedupeMiddleware
        return Request(self.url(url), callback=callback, errback=errback, dont_filter=True, meta=meta)

    def subjects(self, ids):
        for did in ids:  # crawler.spidermiddlewares.SubjectGate drops stored, repeated and over-limit ones
            yield self.request(f"/subject/{did}/", self.parse_subject, self.subject_failed, douban_id=did,
                               dedupe_key=f"subject:{did}")

    def listing(self, year: int, start: int) -> Request:
        query = urlencode({"sort": "U", "range": "0,10", "tags": "电影", "start": start, "year_range": f"{year},{year}"})
        return self.request(f"{self.listing_path}?{query}", self.parse_listing, self.discovery_failed, year=year,
                            start=start, discovery="listing", dedupe_key=f"listing:{year}:{start}")

    def sitemap(self, url: str) -> Request:
        return self.request(url, self._parse_sitemap, self.discovery_failed, discovery="sitemap",
                            dedupe_key=f"sitemap:{self.url(url)}")

    def coming_paths(self) -> list[str]:
        return ["/coming", *(f"/cinema/later/{city}/" for city in self.cities)]

    def coming_list(self, path: str) -> Request:
        return self.request(path, self.parse_coming, self.discovery_failed, discovery="coming",
                            dedupe_key=f"coming:{path}")

    async def start(self):
        # robots.txt first, whatever the mode: Scrapy's robots middleware lets some requests through while its
        # own fetch of robots.txt is in flight, so every plan checks it before any page is requested.
        yield Request(self.url("/robots.txt"), callback=self.plan_entry, errback=self.robots_failed, dont_filter=True,
                      meta={"handle_httpstatus_list": [404, 410], "dont_obey_robotstxt": True})

    def plan_entry(self, response, robots_txt: str | None = None):
        """The plan of this crawl's mode: given subjects (ids, refresh), the coming-soon lists, or discovery."""
        if self.ids or self.refresh:
            return self.plan_subjects(response, robots_txt)
        return (self.plan_coming if self.coming else self.plan)(response, robots_txt)

    def plan_subjects(self, response, robots_txt: str | None = None):
        text = robots_txt if robots_txt is not None else response.text if response.status == 200 else ""
        agent = robots_agent(self.settings)
        if self.obey and not Protego.parse(text).can_fetch(self.url("/subject/1/"), agent):
            self.blocked(f"discovery blocked: {response.url} disallows the subject pages (/subject/...) for user "
                         f"agent {agent!r}; nothing was crawled.")
            return
        ids = self.ids or self.due_for_refresh()
        if ids is None:
            return
        self.crawler.stats.set_value("douban/discovery", "ids" if self.ids else "refresh")
        log.info("discovery: none, %d subject(s) %s", len(ids), "given" if self.ids else "due for a refresh")
        yield from self.subjects(ids)

    def due_for_refresh(self) -> list[int] | None:
        """The stored films due for a refresh, as SubjectGate read them from the store when the crawl started;
        None (the crawl stopped, exit 1) when SPIDER_MIDDLEWARES disables the gate: nothing else knows them."""
        gate = self.crawler.get_spider_middleware(SubjectGate)
        if gate is None:
            self.blocked("-a refresh=1 needs the spider middleware crawler.spidermiddlewares.SubjectGate, which "
                         "SPIDER_MIDDLEWARES disables: it reads the films due for a refresh; nothing was crawled")
            return None
        return gate.stale

    def plan_coming(self, response, robots_txt: str | None = None):
        """The coming-soon lists robots.txt allows, checked before any is requested (as plan does for the
        listing: a request Scrapy's robots middleware should refuse is not always refused)."""
        text = robots_txt if robots_txt is not None else response.text if response.status == 200 else ""
        try:
            paths = coming_lists(text, response.url, paths=self.coming_paths(), obey=self.obey,
                                 agent=robots_agent(self.settings), subject_url=self.url("/subject/1/"), url=self.url)
        except DiscoveryBlocked as exc:
            self.blocked(str(exc))
            return
        self.chosen, self.coming_requested = "coming", len(paths)
        self.crawler.stats.set_value("douban/discovery", "coming")
        log.info("discovery: the coming-soon lists %s", ", ".join(paths))
        yield from (self.coming_list(path) for path in paths)

    def plan(self, response, robots_txt: str | None = None):
        text = robots_txt if robots_txt is not None else response.text if response.status == 200 else ""
        try:
            plan = plan_discovery(text, response.url, mode=self.mode, obey=self.obey, listing_path=self.listing_path,
                                  agent=robots_agent(self.settings), listing_url=self.listing(self.years[0], 0).url,
                                  subject_url=self.url("/subject/1/"), url=self.url)
        except DiscoveryBlocked as exc:
            self.blocked(str(exc))
            return
        self.chosen, self.sitemaps = plan.chosen, plan.sitemaps
        self.crawler.stats.set_value("douban/discovery", plan.chosen)
        log.info("discovery: %s (%s); years %d-%d", plan.chosen, plan.why, *self.years)
        if plan.chosen == "listing":
            yield from (self.listing(year, 0) for year in range(self.years[0], self.years[1] + 1))
        else:
            yield from (self.sitemap(u) for u in plan.sitemaps)

    def blocked(self, message: str) -> list:
        log.error(message)
        self.crawler.stats.set_value("douban/discovery", "blocked")
        close_spider(self.crawler, "discovery_blocked")
        return []

    def parse_listing(self, response):
        # An answer that is not the listing's JSON never gets here: BackoffRetryMiddleware retries it as a
        # failed download (discovery_failed once retries are spent).
        page = listing_page(response.text)
        self.crawler.stats.inc_value("douban/listing_pages")  # a page repeating earlier ones: ListingRepeats
        for why in page.bad:  # one unreadable entry costs its film, not the page
            self.crawler.stats.inc_value("douban/listing_bad_entries")
            log.warning("listing %s: skipped an entry without a subject id (%s)", response.url, why)
        self.found(len(page.ids))
        yield from self.subjects(page.ids)
        if page.size:  # until an empty page: the endpoint's page size is not a promise
            yield self.listing(response.meta["year"], response.meta["start"] + page.size)

    def parse_coming(self, response):
        ids = coming_ids(response.text)  # no list on the page: PageUnparsed, which ParseRetry reports
        new = [did for did in ids if did not in self.coming_found]
        self.coming_found.update(new)
        self.crawler.stats.inc_value("douban/coming_found", len(new))
        self.found(len(new))
        yield from self.subjects(new)

    def found(self, n: int) -> None:
        self.discovered += n
        self.crawler.stats.inc_value("douban/discovered", n)

    def _parse_sitemap(self, response):
        """SitemapSpider's parsing (index, urlset, gzip), subject URLs going through self.subjects."""
        for req in super()._parse_sitemap(response):
            m = SUBJECT_URL_RE.search(req.url)
            if m and req.callback == self.parse_subject:
                self.found(1)
                yield from self.subjects([int(m.group(1))])
            elif not m:
                yield self.sitemap(req.url)

    def parse_subject(self, response):
        stats, result = self.crawler.stats, parse_subject(response.text, response.url)
        if result.kind == "tv":
            stats.inc_value("douban/tv_skipped")
            if hasattr(self, "state"):  # set with a JOBDIR: a resumed crawl skips these too
                self.state.setdefault("tv_ids", set()).add(result.douban_id)
        elif result.kind == "failed":
            raise PageUnparsed(result.reason)  # crawler.spidermiddlewares.ParseRetry fetches it again or gives up
        elif self.chosen == "sitemap" and not self.years[0] <= (result.record["year"] or 0) <= self.years[1]:
            stats.inc_value("douban/out_of_years")  # the sitemaps list every year
        else:
            stats.inc_value("douban/json_ld_fallback", bool(result.notes))
            yield MovieItem(record=result.record, fetched_at=utcnow())

    def subject_failed(self, failure):
        release_lease(self.crawler, failure.request)
        if not failure.check(DuplicateRequest):
            self.crawler.stats.inc_value("douban/fetch_failed")
            log.error("could not fetch %s: %s", failure.request.url, failure.getErrorMessage())

    def discovery_failed(self, failure):
        request, why, follow_ups = failure.request, failure.getErrorMessage(), []
        if not failure.check(DuplicateRequest) and request.meta["discovery"] not in self.abandoned:
            self.crawler.stats.inc_value("douban/discovery_failed")
            log.error("discovery request failed, its pages are not crawled: %s (%s)", request.url, why)
            if request.meta["discovery"] == "listing":
                follow_ups = self.listing_failed(request, why)
            elif request.meta["discovery"] == "coming":
                self.coming_failed += 1
                if self.coming_failed == self.coming_requested:  # every list failed: nothing to crawl
                    self.blocked(f"discovery blocked: none of the coming-soon lists could be read (the last: {why}); "
                                 "nothing was crawled")
            else:
                mark_undiscovered(self.crawler.stats, f"sitemap {request.url}")
        settle(self.crawler, request, follow_ups)

    def listing_failed(self, request, why: str) -> list[Request]:
        """A listing page given up: the sitemaps instead (they list every year) when the crawl may read them;
        else the crawl stops if the listing never gave a film, or goes on without that year's rest."""
        if (self.mode == "auto" and self.sitemaps) or not self.discovered:
            return self.abandon_listing(why)
        mark_undiscovered(self.crawler.stats, f"year {request.meta.get('year')}")
        return []

    def abandon_listing(self, why: str) -> list[Request]:
        self.abandoned.add("listing")
        try:
            sitemaps = listing_fallback(self.mode, self.sitemaps, self.listing_path, why)
        except DiscoveryBlocked as exc:
            return self.blocked(str(exc))
        self.chosen = "sitemap"
        self.crawler.stats.set_value("douban/discovery", "sitemap")
        self.crawler.stats.set_value("douban/discovery_fallback", f"listing failed: {why}")
        return [self.sitemap(u) for u in sitemaps]

    def robots_failed(self, failure):
        request, why, follow_ups = failure.request, failure.getErrorMessage(), []
        if self.obey:
            self.blocked(f"cannot read {request.url} ({why}): discovery needs it when ROBOTSTXT_OBEY is on")
        else:  # robots.txt only matters when obeyed: discover as if it were empty (default sitemap index)
            self.crawler.stats.set_value("douban/robots_failed", why)
            log.warning("cannot read %s (%s): ROBOTSTXT_OBEY is off, so discovery goes on as if it were empty",
                        request.url, why)
            follow_ups = self.plan_entry(request, robots_txt="")
        settle(self.crawler, request, follow_ups)
