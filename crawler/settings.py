"""Scrapy settings for the `douban` crawler (filled in by the crawler module)."""

BOT_NAME = "douban-kadn"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"
ROBOTSTXT_OBEY = True
