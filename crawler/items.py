"""The crawl's one item: a canonical movie record (pipeline.film.records) and when it was fetched."""

from __future__ import annotations

import scrapy


class MovieItem(scrapy.Item):
    record = scrapy.Field()  # a dict that went through normalise_record
    fetched_at = scrapy.Field()  # naive UTC datetime of the download
