"""The Scrapy project: the `douban` spider, its middlewares and extensions, page parsing, the mock Douban site."""
