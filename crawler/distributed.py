"""Crawling from several machines: one scrapy-redis frontier, with leases so a killed worker loses nothing.

Switched on by `REDIS_URL` (a setting or the environment variable); without it the single-machine crawl is
unchanged and Redis is never imported. The add-on `RedisFrontier` then swaps in:

- scrapy-redis's shared request queue and duplicate filter, so N `scrapy crawl douban` processes on N
  machines share one frontier and never fetch a page twice;
- `LeasedScheduler`: scrapy-redis pops a request off Redis and forgets it, so a worker killed mid-crawl
  would lose every request it held. Here a popped request stays in a Redis hash of leases until its page
  is fully handled (its items stored, its follow-up requests queued). A lease whose worker died expires
  and any live worker puts the request back, once (HDEL decides who). A request requeued
  `DOUBAN_LEASE_MAX_ATTEMPTS` times is given up and counted, so a poison page cannot loop forever.
- `LeaseReleaseMiddleware`: releases the lease once the callback's output has been consumed.

Items must be durable before the lease goes, so in this mode the item pipeline writes every item at once
(`DOUBAN_STORE_BATCH = 1`); PostgreSQL handles concurrent writers (pipeline.store's upserts are idempotent
and keep the newest fetch).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid

from scrapy import signals
from scrapy.exceptions import DontCloseSpider
from scrapy_redis.scheduler import Scheduler

log = logging.getLogger(__name__)
LEASE_TOKEN = "douban_lease"


def redis_url(settings) -> str | None:
    return settings.get("REDIS_URL") or os.environ.get("REDIS_URL") or None


class RedisFrontier:
    """Scrapy add-on: with REDIS_URL set, use the shared Redis frontier; otherwise do nothing."""

    def update_settings(self, settings) -> None:
        url = redis_url(settings)
        if not url:
            return
        settings.set("REDIS_URL", url, priority="addon")
        settings.set("SCHEDULER", "crawler.distributed.LeasedScheduler", priority="addon")
        settings.set("DUPEFILTER_CLASS", "scrapy_redis.dupefilter.RFPDupeFilter", priority="addon")
        # Keep the frontier when a worker stops: the others (or a restart) carry on from it.
        settings.set("SCHEDULER_PERSIST", True, priority="addon")
        settings.set("DOUBAN_STORE_BATCH", 1, priority="addon")
        middlewares = settings.getdict("SPIDER_MIDDLEWARES")
        middlewares["crawler.distributed.LeaseReleaseMiddleware"] = 10  # outermost: sees the output last
        settings.set("SPIDER_MIDDLEWARES", middlewares, priority="addon")
        downloader = settings.getdict("DOWNLOADER_MIDDLEWARES")
        # Below RetryMiddleware (550): its process_exception runs first, so we only see final failures.
        downloader["crawler.distributed.LeaseDownloadFailureMiddleware"] = 50
        settings.set("DOWNLOADER_MIDDLEWARES", downloader, priority="addon")


class LeasedScheduler(Scheduler):
    """scrapy-redis's scheduler, with a lease on every request a worker holds."""

    @classmethod
    def from_crawler(cls, crawler):
        instance = super().from_crawler(crawler)
        instance.lease_s = crawler.settings.getfloat("DOUBAN_LEASE_SECONDS", 600.0)
        instance.max_attempts = crawler.settings.getint("DOUBAN_LEASE_MAX_ATTEMPTS", 3)
        instance._last_sweep = 0.0
        crawler.douban_scheduler = instance  # how the release middlewares find it
        crawler.signals.connect(instance._on_idle, signal=signals.spider_idle)
        return instance

    def open(self, spider):
        super().open(spider)
        self.lease_key = f"{spider.name}:leases"
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        spider.crawler.stats.set_value("douban/frontier", f"redis ({self.queue.key})")
        self.requeue_expired()

    def next_request(self):
        request = super().next_request()
        if request is None:
            self._sweep()
            return None
        old = request.meta.get(LEASE_TOKEN)
        if old:  # a retry of a leased request supersedes that lease
            self.server.hdel(self.lease_key, old)
        token = uuid.uuid4().hex
        request.meta[LEASE_TOKEN] = token
        attempts = request.meta.get("douban_lease_attempts", 0)
        entry = {"worker": self.worker, "expires": time.time() + self.lease_s, "attempts": attempts,
                 "request": self.queue._encode_request(request).hex()}
        self.server.hset(self.lease_key, token, json.dumps(entry))
        return request

    def release(self, request) -> None:
        token = request.meta.get(LEASE_TOKEN)
        if token:
            self.server.hdel(self.lease_key, token)

    def has_pending_requests(self) -> bool:
        # Another worker's leased page may still yield requests: stay open while leases are out.
        return len(self) > 0 or self.server.hlen(self.lease_key) > 0

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep >= 1.0:
            self._last_sweep = now
            self.requeue_expired()

    def requeue_expired(self) -> int:
        """Put back the requests of leases that expired (their worker died); returns how many."""
        now, requeued = time.time(), 0
        stats = self.spider.crawler.stats
        for token, raw in self.server.hgetall(self.lease_key).items():
            entry = json.loads(raw)
            if entry["expires"] > now:
                continue
            if not self.server.hdel(self.lease_key, token):
                continue  # another worker took it first
            request = self.queue._decode_request(bytes.fromhex(entry["request"]))
            attempts = entry["attempts"] + 1
            if attempts > self.max_attempts:
                stats.inc_value("douban/lease_abandoned")
                log.error("giving up %s: leased %d times and never finished", request.url, attempts)
                continue
            request.meta["douban_lease_attempts"] = attempts
            request.meta.pop(LEASE_TOKEN, None)
            request.dont_filter = True  # its fingerprint is already in the shared duplicate filter
            self.queue.push(request)
            requeued += 1
            stats.inc_value("douban/lease_requeued")
            log.warning("requeued %s: its worker %s stopped before finishing it", request.url, entry["worker"])
        return requeued

    def _on_idle(self, spider):
        if self.server.hlen(self.lease_key) or len(self):
            self.requeue_expired()
            raise DontCloseSpider


class LeaseReleaseMiddleware:
    """Releases a request's lease once its callback's output has been fully consumed."""

    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def _release(self, response) -> None:
        scheduler = getattr(self.crawler, "douban_scheduler", None)
        if scheduler is not None:
            scheduler.release(response.request)

    def process_spider_output(self, response, result, spider):
        yield from result
        self._release(response)

    async def process_spider_output_async(self, response, result, spider):
        async for item in result:
            yield item
        self._release(response)

    def process_spider_exception(self, response, exception, spider):
        self._release(response)  # the page was handled, unsuccessfully; retries come as new requests
        return None


class LeaseDownloadFailureMiddleware:
    """Releases the lease of a request whose download failed for good (after RetryMiddleware gave up)."""

    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_exception(self, request, exception, spider):
        scheduler = getattr(self.crawler, "douban_scheduler", None)
        if scheduler is not None:
            scheduler.release(request)
        return None
