"""Leases on the Redis frontier, step by step: when a page's lease may go, and how a follow-up request
reaches Redis. The kill test (tests/test_distributed.py) shows the whole; these pin down the order that
makes it hold, which a kill only catches by chance.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import redis
from scrapy import Request, Spider, signals
from scrapy.http import TextResponse
from scrapy.signalmanager import SignalManager
from scrapy.utils.test import get_crawler

from crawler import settings as crawler_settings
from crawler.distributed import (
    LEASE_TOKEN,
    PARENT_LEASE,
    LeasedScheduler,
    LeaseReleaseMiddleware,
    child_queued,
    lease_done,
    release_lease,
    settle,
)
from crawler.items import MovieItem
from tests.services import redis_url


def project_settings() -> dict:
    return {k: getattr(crawler_settings, k) for k in dir(crawler_settings) if k.startswith(("DOUBAN_", "RETRY_"))}


class Released(list):
    """A stand-in scheduler that records which lease tokens were released."""

    def release_token(self, token):
        self.append(token)


def middleware():
    """The middleware on a crawler whose stand-in scheduler listens for `lease_done`, as LeasedScheduler does."""
    crawler, released = SimpleNamespace(signals=SignalManager()), Released()
    crawler.signals.connect(released.release_token, signal=lease_done)
    return LeaseReleaseMiddleware(crawler), crawler, released


def page(token: str = "T") -> TextResponse:
    request = Request("http://127.0.0.1/j/listing?start=0", meta={LEASE_TOKEN: token})
    return TextResponse(request.url, body=b"{}", request=request)


async def _aiter(values, fail: bool = False):
    for v in values:
        yield v
    if fail:
        raise ValueError("callback failed half-way")


def drain(mw, response, outputs, fail: bool = False) -> list:
    async def run():
        got = []
        try:
            async for out in mw.process_spider_output(response, _aiter(outputs, fail)):
                got.append(out)
        except ValueError:
            pass
        return got

    return asyncio.run(run())


def children(n: int) -> list[Request]:
    return [Request(f"http://127.0.0.1/subject/{i}/") for i in range(n)]


def test_lease_waits_until_every_follow_up_request_is_queued():
    # Scrapy reads a callback's output into an in-memory queue ahead of the workers that schedule it: the
    # output being read to the end does not mean its requests are in Redis.
    mw, crawler, released = middleware()
    response = page()
    out = drain(mw, response, children(3))
    assert [r.meta[PARENT_LEASE] for r in out] == ["T"] * 3
    assert released == []
    for request in out[:2]:
        crawler.signals.send_catch_log(child_queued, token=request.meta[PARENT_LEASE])
    assert released == []
    crawler.signals.send_catch_log(child_queued, token="T")
    assert released == ["T"]


def test_lease_waits_for_items_and_requests_alike():
    mw, crawler, released = middleware()
    response = page()
    item = MovieItem(record={"douban_id": 1}, fetched_at=None)
    drain(mw, response, [*children(1), item])
    crawler.signals.send_catch_log(child_queued, token="T")
    assert released == []  # the film is not stored yet
    crawler.signals.send_catch_log(signals.item_scraped, item=item, response=response)
    assert released == ["T"]


def test_refused_item_keeps_the_lease():
    mw, crawler, released = middleware()
    response = page()
    item = MovieItem(record={"douban_id": 1}, fetched_at=None)
    drain(mw, response, [item])
    crawler.signals.send_catch_log(signals.item_dropped, item=item, response=response, exception=Exception())
    assert released == []  # it expires and the page is fetched again


def test_callback_failing_half_way_still_waits_for_what_it_yielded():
    mw, crawler, released = middleware()
    response = page()
    out = drain(mw, response, children(2), fail=True)
    assert len(out) == 2 and released == []
    mw.process_spider_exception(response, ValueError("callback failed half-way"))
    assert released == []
    for _ in out:
        crawler.signals.send_catch_log(child_queued, token="T")
    assert released[-1] == "T"


def test_page_without_output_releases_at_once():
    mw, crawler, released = middleware()
    drain(mw, page(), [])
    assert released == ["T"]


def test_none_outputs_are_not_waited_for():
    mw, crawler, released = middleware()
    drain(mw, page(), [None, *children(1)])
    crawler.signals.send_catch_log(child_queued, token="T")
    assert released == ["T"]


def test_output_abandoned_half_read_keeps_the_lease():
    # A forced shutdown closes the callback's output before it was all read: the rest was never queued.
    mw, crawler, released = middleware()

    async def run():
        gen = mw.process_spider_output(page(), _aiter(children(3)))
        await gen.__anext__()
        await gen.aclose()

    asyncio.run(run())
    assert released == []


def test_errback_follow_ups_are_queued_before_the_lease_goes():
    # What an errback yields skips the spider middlewares, so it is queued first, then the lease released.
    events = []

    def on_done(token):
        events.append(("released", token))

    crawler = SimpleNamespace(engine=SimpleNamespace(crawl=lambda r: events.append(("queued", r.url))),
                              signals=SignalManager())
    crawler.signals.connect(on_done, signal=lease_done)
    failed = Request("http://127.0.0.1/j/listing?start=0", meta={LEASE_TOKEN: "T"})
    settle(crawler, failed, iter(children(2)))
    assert events == [("queued", "http://127.0.0.1/subject/0/"), ("queued", "http://127.0.0.1/subject/1/"),
                      ("released", "T")]


def test_leases_reach_the_scheduler_by_signal_not_by_a_crawler_attribute():
    crawler = SimpleNamespace(signals=SignalManager())
    leased = Request("http://127.0.0.1/subject/1/", meta={LEASE_TOKEN: "T"})
    release_lease(crawler, leased)  # no Redis frontier: nothing listens, and that is no error
    stuck, released = Released(), Released()
    crawler.douban_scheduler = stuck  # the old route: a scheduler stuck onto the crawler is never looked for
    crawler.signals.connect(released.release_token, signal=lease_done)
    release_lease(crawler, leased)
    release_lease(crawler, Request("http://127.0.0.1/subject/2/"))  # a page without a lease: nothing to release
    assert released == ["T"] and stuck == []


@pytest.fixture
def scheduler():
    url, prefix = redis_url()
    crawler = get_crawler(Spider, {
        **project_settings(),  # the lease settings' defaults live there only
        "REDIS_URL": url, "SCHEDULER_QUEUE_KEY": f"{prefix}:requests", "SCHEDULER_DUPEFILTER_KEY": f"{prefix}:df",
        "SCHEDULER_QUEUE_CLASS": "scrapy_redis.queue.PriorityQueue",
        "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter"})
    spider = Spider.from_crawler(crawler, name="leases")
    crawler.spider = spider
    sched = LeasedScheduler.from_crawler(crawler)
    sched.open(spider)
    yield sched, crawler
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def test_scheduler_releases_a_lease_when_told_by_signal(scheduler):
    sched, crawler = scheduler
    assert sched.enqueue_request(Request("http://127.0.0.1/subject/3/", dont_filter=True))
    popped = sched.next_request()
    assert sched.server.hlen(sched.lease_key) == 1
    release_lease(crawler, popped)
    assert sched.server.hlen(sched.lease_key) == 0 and sched.server.hlen(sched.lease_data_key) == 0


def test_parent_is_told_only_once_the_child_is_in_redis(scheduler):
    sched, crawler = scheduler
    seen = []

    def on_child(token=None, **kwargs):
        seen.append((token, sched.server.zcard(sched.queue.key)))

    crawler.signals.connect(on_child, signal=child_queued)
    first = Request("http://127.0.0.1/subject/1/", dont_filter=True, meta={"dedupe_key": "subject:1", PARENT_LEASE: "T"})
    assert sched.enqueue_request(first)
    assert seen == [("T", 1)]
    # The same page from another listing (or another worker): not queued twice, and its parent may still go,
    # since the page is already in Redis.
    again = Request("http://127.0.0.1/subject/1/", dont_filter=True, meta={"dedupe_key": "subject:1", PARENT_LEASE: "U"})
    assert not sched.enqueue_request(again)
    assert seen[-1] == ("U", 1)
    popped = sched.next_request()
    assert popped.url == first.url and PARENT_LEASE not in popped.meta  # another worker's lease means nothing here


def test_seen_and_queued_together(scheduler):
    sched, _ = scheduler
    request = Request("http://127.0.0.1/subject/2/", dont_filter=True, meta={"dedupe_key": "subject:2"})
    assert sched.enqueue_request(request)
    assert sched.server.sismember(sched.seen_key, "subject:2") and sched.server.zcard(sched.queue.key) == 1
    # A retry carries its page's key but is queued regardless: the first attempt already marked it seen.
    retry = request.replace(meta={**request.meta, "retry_times": 1})
    assert sched.enqueue_request(retry) and sched.server.zcard(sched.queue.key) == 2
