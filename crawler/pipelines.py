"""Persistence: films go to the shared store through pipeline.store, in small batches.

Batches keep SQLite transactions short (a killed crawl loses at most one batch, which a resumed crawl
re-fetches); the last partial batch is flushed when the spider closes.
"""

from __future__ import annotations

import logging

from scrapy.exceptions import DropItem
from sqlalchemy.exc import SQLAlchemyError

from crawler.middlewares import close_spider
from pipeline import store
from pipeline.errors import KadnError

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
        return cls(url, crawler.settings.getint("DOUBAN_STORE_BATCH"), crawler)

    def open_spider(self, spider=None):
        try:
            self.engine = store.connect(self.url)
        except KadnError as exc:
            # A wrong DATABASE_URL must stop the crawl before it fetches anything; say so in one line first,
            # since Scrapy buries the exception in tracebacks.
            log.error("cannot open the movie store (DATABASE_URL): %s", exc)
            raise RuntimeError(f"cannot open the movie store: {exc}") from None
        where = self.engine.url.render_as_string(hide_password=True)
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
                      exc.__class__.__name__ + ": " + str(exc).splitlines()[0])
            if not self.failed:
                self.failed = True
                close_spider(self.crawler, "store_failed")
            return False
        self.stats.inc_value("douban/stored", written)
        return True

    def close_spider(self, spider=None):
        try:
            self._flush()
        finally:
            if self.engine is not None:
                self.engine.dispose()
