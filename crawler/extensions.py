"""Extensions: robots.txt's Crawl-delay, and the crawl's closing summary."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from protego import Protego
from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.extensions.throttle import AutoThrottle

log = logging.getLogger(__name__)


def robots_agent(settings) -> str:
    """The user agent robots.txt rules are read for."""
    return settings.get("ROBOTSTXT_USER_AGENT") or settings.get("USER_AGENT") or "*"


class CrawlDelay:
    """robots.txt's Crawl-delay as the floor of every download delay on its host (Scrapy itself ignores it),
    when ROBOTSTXT_OBEY is on. Raises the delay of the host's download slot, of any slot made for the host
    later (through DOWNLOAD_SLOTS' per-slot settings, which the downloader keeps), and AutoThrottle's floor."""

    def __init__(self, crawler):
        if not crawler.settings.getbool("ROBOTSTXT_OBEY"):
            raise NotConfigured
        self.crawler = crawler
        self.agent = robots_agent(crawler.settings)
        crawler.signals.connect(self.response_received, signal=signals.response_received)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def response_received(self, response, request, spider=None):
        if urlsplit(request.url).path != "/robots.txt" or response.status != 200:
            return
        delay = Protego.parse(response.text).crawl_delay(self.agent)
        if delay:
            self.honour(float(delay), urlsplit(request.url).hostname or "")

    def honour(self, delay: float, host: str) -> None:
        downloader = self.crawler.engine.downloader
        slot = downloader.slots.get(host)
        current = slot.delay if slot else self.crawler.settings.getfloat("DOWNLOAD_DELAY")
        per_slot = downloader.per_slot_settings.setdefault(host, {})
        per_slot["delay"] = max(per_slot.get("delay", 0.0), delay)
        if slot:
            slot.delay = max(slot.delay, delay)
        throttle = self.crawler.get_extension(AutoThrottle)  # None when AUTOTHROTTLE_ENABLED is off
        if throttle is not None:  # it never goes below its mindelay
            throttle.mindelay = max(throttle.mindelay, delay)
        self.crawler.stats.set_value("douban/crawl_delay", delay)
        log.info("robots.txt asks for Crawl-delay: %g s%s", delay,
                 "; honoured as the minimum delay between requests" if delay > current else " (already slower)")


class CrawlSummary:
    """One line when the crawl closes: what it found, fetched, stored and skipped, from the crawl's stats."""

    def __init__(self, crawler):
        self.stats = crawler.stats
        crawler.signals.connect(self.closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def closed(self, spider, reason):
        get = self.stats.get_value
        # The store's last write runs as the crawl closes: a failure there is the crawl's outcome, whatever
        # Scrapy's reason for stopping was.
        reason = "store_failed" if get("douban/store_failed", 0) else reason
        line = (f"douban crawl {reason}: discovery={get('douban/discovery', 'none')}, "
                f"discovered {get('douban/discovered', 0)}, requested {get('douban/subjects_requested', 0)} "
                f"subject pages, stored {get('douban/stored', 0)} films, skipped {get('douban/tv_skipped', 0)} "
                f"TV subjects and {get('douban/fresh_skipped', 0)} recently fetched films, "
                f"{get('douban/out_of_years', 0)} outside the years, {get('douban/parse_failed', 0)} pages "
                f"failed to parse, {get('douban/fetch_failed', 0)} failed to download, "
                f"{get('douban/banned', 0)} ban answers")
        nothing = get("douban/stored", 0) == 0 and reason == "finished"
        (log.warning if nothing else log.info)(line)
        if nothing and get("douban/discovery") not in ("ids", "refresh"):
            log.warning("no films were stored: check the discovery line above and the stats "
                        "(douban/discovery_failed, robotstxt/forbidden, douban/banned)")
