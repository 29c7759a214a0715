"""Scrapy spiders (SPIDER_MODULES): `douban`."""
