"""Persistence: films go to the shared store through pipeline.film.store, in small batches.

Batches keep SQLite transactions short (a killed crawl loses at most one batch, which a resumed crawl
re-fetches); the last partial batch is flushed when the spider closes.
"""

from __future__ import annotations

import logging

from scrapy import signals
from scrapy.exceptions import CloseSpider, DropItem
from sqlalchemy.exc import SQLAlchemyError

from crawler.middlewares import close_spider
from pipeline.errors import KadnError
from pipeline.film import store
from pipeline.redact import mask_text, mask_url

log = logging.getLogger(__name__)


class StorePipeline:
    def __init__(self, url: str, batch: int, crawler):
        self.url = url
        self.batch_size = max(1, batch)
        self.crawler = crawler
        self.stats = crawler.stats
        self.failed = False
        self.buffer: list[dict] = []
        self.engine = None

    @classmethod
    def from_crawler(cls, crawler):
        url = store.database_url(crawler.settings.get("DATABASE_URL"))
        pipeline = cls(url, crawler.settings.getint("DOUBAN_STORE_BATCH"), crawler)
        crawler.signals.connect(pipeline.idle, signal=signals.spider_idle)
        # Connected after CoreStats' handler, so this one has the last word on the finish reason.
        crawler.signals.connect(pipeline.closed, signal=signals.spider_closed)
        return pipeline

    def open_spider(self, spider=None):
        try:
            self.engine = store.connect(self.url)
        except KadnError as exc:
            # A wrong DATABASE_URL must stop the crawl before it fetches anything; say so in one line first,
            # since Scrapy buries the exception in tracebacks.
            log.error("cannot open the movie store (DATABASE_URL): %s", exc)
            raise RuntimeError(f"cannot open the movie store: {exc}") from None
        where = mask_url(self.engine.url)
        self.stats.set_value("douban/database", where)
        log.info("storing films in %s", where)

    def process_item(self, item, spider=None):
        self.buffer.append(item)
        if len(self.buffer) >= self.batch_size and not self._flush():
            # Say so to Scrapy: on the Redis frontier a dropped item keeps its page's lease (refetched later).
            raise DropItem(f"not stored: {item['record']['douban_id']}")
        return item

    def _flush(self) -> bool:
        """Write the buffered films in one transaction; False if the store refused them."""
        if not self.buffer:
            return True
        items, self.buffer = self.buffer, []
        # One fetch time per batch: the newest in it, so a refresh's newer fetch wins in the store.
        fetched_at = max(i["fetched_at"] for i in items)
        try:
            written = store.upsert_records(self.engine, [i["record"] for i in items], source="douban-crawl",
                                           fetched_at=fetched_at)
        except (SQLAlchemyError, KadnError) as exc:
            # Nothing of the batch was written (one transaction). Stop rather than fetch pages we cannot keep;
            # films not stored are fetched again by the next run (a resumed crawl skips only stored ones).
            ids = [i["record"]["douban_id"] for i in items]
            self.stats.inc_value("douban/store_failed", len(ids))
            log.error("could not store %d films (ids %s%s): %s; stopping the crawl, run it again once the "
                      "database is writable", len(ids), ", ".join(map(str, ids[:5])), "..." if len(ids) > 5 else "",
                      exc.__class__.__name__ + ": " + mask_text(str(exc).splitlines()[0]))
            if not self.failed:
                self.failed = True
                close_spider(self.crawler, "store_failed")
            return False
        self.stats.inc_value("douban/stored", written)
        return True

    def idle(self, spider=None):
        """Flush the last batch while the crawl can still say it failed: once the engine closes the spider
        with reason `finished`, a failed flush could no longer change it."""
        if not self._flush():
            raise CloseSpider("store_failed")

    def close_spider(self, spider=None):
        try:
            self._flush()  # a stopped crawl's last batch (a finished one was flushed when it went idle)
        finally:
            if self.engine is not None:
                self.engine.dispose()

    def closed(self, spider=None, reason=None):
        if self.failed:  # whatever stopped the crawl, films it fetched were not stored
            self.stats.set_value("finish_reason", "store_failed")
