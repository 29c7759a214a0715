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
- `LeaseReleaseMiddleware`: releases the lease once everything the page's callback produced is safe: every
  item stored and every follow-up request sitting in Redis. Scrapy hands callback output to up to
  CONCURRENT_ITEMS workers through an in-memory queue, so "the callback's output was read to the end" is
  not enough: a kill at that moment lost the requests still in the queue (a listing page was lost that way).

Items must be durable before the lease goes, so in this mode the item pipeline writes every item at once
(`DOUBAN_STORE_BATCH = 1`); PostgreSQL handles concurrent writers (pipeline.film.store's upserts are idempotent
and keep the newest fetch).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import defaultdict

from scrapy import Request, signals
from scrapy.exceptions import DontCloseSpider
from scrapy_redis.scheduler import Scheduler

from crawler.middlewares import DedupeMiddleware

log = logging.getLogger(__name__)
LEASE_TOKEN = "douban_lease"
PARENT_LEASE = "douban_parent_lease"  # on a follow-up request: the lease of the page that produced it
# Sent by the scheduler once a follow-up request is in Redis (or was found there already): token=parent lease.
child_queued = object()
# Sent by whatever is done with a leased page (the lease middlewares, the spider's errbacks): token=its lease.
# The LeasedScheduler releases it; without the Redis frontier nothing listens, and nothing happens.
lease_done = object()


def redis_url(settings) -> str | None:
    return settings.get("REDIS_URL") or os.environ.get("REDIS_URL") or None


def release_lease(crawler, request) -> None:
    """Release `request`'s lease, if the crawl runs on the Redis frontier (a no-op otherwise).

    For pages given up outside the downloader's exception path (errbacks of banned or login-walled
    pages): without this their lease would run out and the page be fetched again for nothing."""
    token = request.meta.get(LEASE_TOKEN)
    if token:
        crawler.signals.send_catch_log(lease_done, token=token)


def settle(crawler, request, follow_ups=()) -> None:
    """For an errback: schedule its follow-up requests now, then let the failed page's lease go. (What an
    errback yields after a download failure skips the spider middlewares, so nothing would hold the lease
    until those requests reach the Redis frontier; a kill in between would lose them.)"""
    for req in follow_ups:
        crawler.engine.crawl(req)
    release_lease(crawler, request)


class RedisFrontier:
    """Scrapy add-on: with REDIS_URL set, use the shared Redis frontier; otherwise do nothing."""

    def update_settings(self, settings) -> None:
        url = redis_url(settings)
        if not url:
            return
        # "project" priority: these must beat crawler/settings.py (an add-on's own priority is lower), while
        # an explicit `-s NAME=VALUE` on the command line still wins.
        settings.set("REDIS_URL", url, priority="project")
        settings.set("SCHEDULER", "crawler.distributed.LeasedScheduler", priority="project")
        settings.set("DUPEFILTER_CLASS", "scrapy_redis.dupefilter.RFPDupeFilter", priority="project")
        # All of a crawl's keys share one prefix (default: the spider's name), so separate crawls can
        # share a Redis server: DOUBAN_REDIS_PREFIX.
        prefix = settings.get("DOUBAN_REDIS_PREFIX") or "%(spider)s"
        settings.set("SCHEDULER_QUEUE_KEY", f"{prefix}:requests", priority="project")
        settings.set("SCHEDULER_DUPEFILTER_KEY", f"{prefix}:dupefilter", priority="project")
        # The lease scripts pop from a sorted set: scrapy-redis's priority queue.
        settings.set("SCHEDULER_QUEUE_CLASS", "scrapy_redis.queue.PriorityQueue", priority="project")
        # Keep the frontier when a worker stops: the others (or a restart) carry on from it.
        settings.set("SCHEDULER_PERSIST", True, priority="project")
        if settings.getint("DOUBAN_STORE_BATCH") != 1:
            log.warning("DOUBAN_STORE_BATCH is 1 on the Redis frontier: a lease ends only once its film is stored")
        settings.set("DOUBAN_STORE_BATCH", 1, priority="cmdline")
        # Outermost spider middleware: it sees the callback's output last, after everything was handled.
        settings.set_in_component_priority_dict("SPIDER_MIDDLEWARES", LeaseReleaseMiddleware, 10)
        # Below RetryMiddleware (550): its process_exception runs first, so only final failures reach ours.
        settings.set_in_component_priority_dict("DOWNLOADER_MIDDLEWARES", LeaseDownloadFailureMiddleware, 50)


# Pop the best request and lease it in one step: a worker killed between a pop and its lease would
# otherwise lose the request. KEYS: queue, lease data, lease meta, requeue marks.
# ARGV: token, lease seconds, worker. Times come from Redis's clock, so workers' clocks may disagree.
_POP_AND_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local r = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #r == 0 then return false end
redis.call('ZREM', KEYS[1], r[1])
local sha = redis.sha1hex(r[1])
local attempts = tonumber(redis.call('HGET', KEYS[4], sha) or '0')
redis.call('HDEL', KEYS[4], sha)
redis.call('HSET', KEYS[2], ARGV[1], r[1])
redis.call('HSET', KEYS[3], ARGV[1], cjson.encode({expires = now + tonumber(ARGV[2]),
    worker = ARGV[3], attempts = attempts, score = tonumber(r[2])}))
return {r[1], attempts}
"""

# Mark a page seen and queue it in one step: a worker killed between the two would leave a page that
# every later discovery skips as seen but nobody fetches. KEYS: seen set, queue. ARGV: dedupe key ('' for
# none: retries and pages without one), score, serialised request. Returns 1 if queued, 0 if already seen.
_SEE_AND_PUSH = """
if ARGV[1] ~= '' and redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

# Put an expired lease's request back, once, in one step (HDEL decides which worker does it).
# KEYS: queue, lease data, lease meta, requeue marks. ARGV: token, max attempts.
_REQUEUE_IF_EXPIRED = """
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if not raw then return false end
local m = cjson.decode(raw)
local t = redis.call('TIME')
if m.expires > tonumber(t[1]) + tonumber(t[2]) / 1e6 then return false end
local data = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if not data then return false end
if m.attempts + 1 > tonumber(ARGV[2]) then return {'abandoned', data, m.worker} end
redis.call('ZADD', KEYS[1], m.score, data)
redis.call('HSET', KEYS[4], redis.sha1hex(data), m.attempts + 1)
return {'requeued', data, m.worker}
"""


class LeasedScheduler(Scheduler):
    """scrapy-redis's scheduler (priority queue), with a lease on every request a worker holds."""

    @classmethod
    def from_crawler(cls, crawler):
        instance = super().from_crawler(crawler)
        instance.lease_s = crawler.settings.getfloat("DOUBAN_LEASE_SECONDS")
        instance.max_attempts = crawler.settings.getint("DOUBAN_LEASE_MAX_ATTEMPTS")
        instance._last_sweep = 0.0
        instance._pop = instance.server.register_script(_POP_AND_LEASE)
        instance._requeue = instance.server.register_script(_REQUEUE_IF_EXPIRED)
        instance._see_and_push = instance.server.register_script(_SEE_AND_PUSH)
        crawler.signals.connect(instance.release_token, signal=lease_done)
        crawler.signals.connect(instance._on_idle, signal=signals.spider_idle)
        return instance

    def open(self, spider):
        prefix = self.queue_key.removesuffix(":requests") % {"spider": spider.name}
        self.seen_key, self.lease_key = f"{prefix}:seen", f"{prefix}:leases"
        self.lease_data_key, self.marks_key = f"{prefix}:lease_data", f"{prefix}:requeued"
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        super().open(spider)
        spider.crawler.stats.set_value("douban/frontier", f"redis ({self.queue.key})")
        self.requeue_expired()

    def _keys(self) -> list[str]:
        return [self.queue.key, self.lease_data_key, self.lease_key, self.marks_key]

    def enqueue_request(self, request) -> bool:
        parent = request.meta.pop(PARENT_LEASE, None)  # not serialised: it means nothing to another worker
        queued = self._enqueue(request)
        if parent:
            # Only now, with the request in Redis, may the page that produced it let its lease go.
            self.spider.crawler.signals.send_catch_log(child_queued, token=parent)
        return queued

    def _enqueue(self, request) -> bool:
        if not request.dont_filter and self.df.request_seen(request):
            self.df.log(request, self.spider)
            return False
        # The spider marks its requests dont_filter and de-duplicates by meta["dedupe_key"] in one process
        # (crawler.middlewares.DedupeMiddleware); across workers that check must happen here, in Redis.
        key = request.meta.get("dedupe_key")
        first_attempt = not any(request.meta.get(k) for k in (*DedupeMiddleware.RETRY_KEYS, "douban_lease_attempts"))
        check = key if key is not None and first_attempt else ""
        data = self.queue._encode_request(request)
        if not self._see_and_push(keys=[self.seen_key, self.queue.key], args=[check, -request.priority, data]):
            self.stats.inc_value("douban/duplicate_skipped")
            return False
        self.stats.inc_value("scheduler/enqueued/redis")
        # A retry (ban, 5xx, parse) now sits in Redis: its original's lease has done its job.
        self.release(request)
        return True

    def next_request(self):
        token = uuid.uuid4().hex
        popped = self._pop(keys=self._keys(), args=[token, self.lease_s, self.worker])
        if not popped:
            self._sweep()
            return None
        raw, attempts = popped
        request = self.queue._decode_request(raw)
        self.release(request)  # a retry of a leased request supersedes that lease
        request.meta[LEASE_TOKEN] = token
        if int(attempts):
            request.meta["douban_lease_attempts"] = int(attempts)
            # A lease can also expire on a live but slow worker; that worker has seen this page's key, and
            # its in-process de-duplication must not drop the copy that now carries the page.
            request.meta.pop("dedupe_key", None)
        self.stats.inc_value("scheduler/dequeued/redis")
        return request

    def flush(self) -> None:
        """SCHEDULER_FLUSH_ON_START=1: a fresh crawl forgets the queue, the seen pages and the leases."""
        super().flush()
        self.server.delete(self.seen_key, self.lease_data_key, self.lease_key, self.marks_key)

    def close(self, reason):
        # The crawl is complete when nothing is queued or leased: forget the seen pages, so the next crawl
        # with this prefix starts afresh instead of skipping everything. Otherwise keep all to resume.
        if reason == "finished" and not self.has_pending_requests():
            self.server.delete(self.seen_key, self.marks_key)
            self.df.clear()
            log.info("frontier drained: cleared the seen pages of %s", self.seen_key.removesuffix(":seen"))
        super().close(reason)

    def release(self, request) -> None:
        self.release_token(request.meta.get(LEASE_TOKEN))

    def release_token(self, token: str | None) -> None:
        if token:
            self.server.hdel(self.lease_key, token)
            self.server.hdel(self.lease_data_key, token)

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
        requeued, stats = 0, self.spider.crawler.stats
        for token in self.server.hkeys(self.lease_key):
            result = self._requeue(keys=self._keys(), args=[token, self.max_attempts])
            if not result:
                continue  # still valid, released meanwhile, or another worker took it
            outcome, raw, worker = result
            url = self.queue._decode_request(raw).url
            if outcome == b"abandoned":
                stats.inc_value("douban/lease_abandoned")
                log.error("giving up %s: leased %d times and never finished", url, self.max_attempts + 1)
                continue
            requeued += 1
            stats.inc_value("douban/lease_requeued")
            log.warning("requeued %s: worker %s stopped before finishing it", url, worker.decode())
        return requeued

    def _on_idle(self, spider):
        if self.server.hlen(self.lease_key) or len(self):
            self.requeue_expired()
            raise DontCloseSpider


class LeaseReleaseMiddleware:
    """Releases a request's lease once its page is fully handled: the callback's output read to the end,
    every item it yielded through the item pipeline (stored) and every request it yielded queued in Redis,
    so a kill at any moment loses nothing."""

    def __init__(self, crawler):
        self.crawler = crawler
        self.pending: dict[str, int] = defaultdict(int)  # lease token -> outputs not yet stored or queued
        self.consumed: set[str] = set()  # tokens whose callback output has been read to the end
        self.unstored: set[str] = set()  # tokens with an item the store refused: keep their lease
        crawler.signals.connect(self._output_done, signal=signals.item_scraped)
        for signal in (signals.item_dropped, signals.item_error):
            crawler.signals.connect(self._item_lost, signal=signal)
        crawler.signals.connect(self._child_queued, signal=child_queued)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def _release(self, token: str | None) -> None:
        if token:
            self.crawler.signals.send_catch_log(lease_done, token=token)

    def _settle(self, token: str | None) -> None:
        if token in self.consumed and self.pending.get(token, 0) <= 0:
            self.consumed.discard(token)
            self.pending.pop(token, None)
            if token in self.unstored:
                # Not stored: the lease runs out and the page is fetched again, by this crawl or the next.
                self.unstored.discard(token)
            else:
                self._release(token)

    def _item_lost(self, item=None, response=None, **kwargs):
        token = response.request.meta.get(LEASE_TOKEN) if response is not None else None
        if token:
            self.unstored.add(token)
            self._output_done(item, response)

    def _output_done(self, item=None, response=None, **kwargs):
        self._done(response.request.meta.get(LEASE_TOKEN) if response is not None else None)

    def _child_queued(self, token=None, **kwargs):
        self._done(token)

    def _done(self, token: str | None) -> None:
        if token:
            self.pending[token] -= 1
            self._settle(token)

    async def process_spider_output(self, response, result):
        token = response.request.meta.get(LEASE_TOKEN)
        try:
            async for out in result:
                if token and out is not None:  # Scrapy drops a None; nothing would ever settle it
                    self.pending[token] += 1
                    if isinstance(out, Request):
                        out.meta[PARENT_LEASE] = token
                yield out
        except Exception:
            # The callback raised: what it yielded before still settles the lease.
            self._consumed(token)
            raise
        # Not on GeneratorExit or cancellation (a forced shutdown): the output was not all read, so the
        # lease stays and runs out.
        self._consumed(token)

    def _consumed(self, token: str | None) -> None:
        if token:
            self.consumed.add(token)
            self._settle(token)

    def process_spider_exception(self, response, exception):
        # A callback that raised before yielding anything never reaches process_spider_output. The page was
        # handled, unsuccessfully; retries come back as new requests with new leases.
        self._consumed(response.request.meta.get(LEASE_TOKEN))

class LeaseDownloadFailureMiddleware:
    """Releases the lease of a request whose download failed for good (after RetryMiddleware gave up)."""

    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_exception(self, request, exception, spider=None):
        # A request with an errback is the errback's to release, after it has queued any follow-up.
        if request.errback is None:
            release_lease(self.crawler, request)
        return None
