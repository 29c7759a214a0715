"""Scrapy settings for the `douban` crawler: politeness and resilience are settings, not code paths.

Every setting of the crawler's own (DOUBAN_*, RETRY_BACKOFF_*) has its one default here; the code reads
them without a fallback of its own.

Override any of them with `scrapy crawl douban -s NAME=VALUE`. The defaults are conservative because the
crawl targets a live site that bans eager clients; tests and benchmarks against the local mock switch
politeness off explicitly (see README, "Crawling").
"""

import os

BOT_NAME = "douban-kadn"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"
COMMANDS_MODULE = "crawler.commands"  # `scrapy crawl` exits 1 when discovery is blocked, banned, store fails

# -- where -------------------------------------------------------------------------------------------
# Every URL the spider requests is built from this base, so a mirror on 127.0.0.1 can stand in.
DOUBAN_BASE_URL = os.environ.get("DOUBAN_BASE_URL", "https://movie.douban.com")
# The store. Unset (None): pipeline.film.store.database_url() picks $DATABASE_URL, which selects it for every `kadn`
# command too, else its default SQLite snapshot. `-s DATABASE_URL=...` overrides both for one crawl.
DATABASE_URL = None
DOUBAN_STORE_BATCH = 50  # films per store transaction

# -- what --------------------------------------------------------------------------------------------
# auto: the JSON listing when robots.txt allows it, else the sitemaps; or force "listing" / "sitemap".
DOUBAN_DISCOVERY = "auto"
DOUBAN_LISTING_PATH = "/j/new_search_subjects"
# Films stored and fetched within this many days are not re-fetched by a discovery crawl; `-a refresh=1`
# re-fetches the stored films older than this (their score and counts change). 0: always re-fetch.
DOUBAN_REFRESH_DAYS = 30.0
DOUBAN_PARSE_RETRIES = 2  # re-fetches of a page that did not parse (a cut page is often transient)

# -- politeness --------------------------------------------------------------------------------------
ROBOTSTXT_OBEY = True
USER_AGENT = "douban-kadn/0.1 (+research crawler; one request every few seconds)"
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 5.0
AUTOTHROTTLE_MAX_DELAY = 60.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
DOWNLOAD_DELAY = 3.0  # AutoThrottle never goes below this
CONCURRENT_REQUESTS = 8
CONCURRENT_REQUESTS_PER_DOMAIN = 2
DOWNLOAD_TIMEOUT = 30
COOKIES_ENABLED = True  # Douban sets a bid cookie; $DOUBAN_COOKIE adds a logged-in session if given
TELNETCONSOLE_ENABLED = False
# A subject page yields one item, a listing page 20 requests. Scrapy starts CONCURRENT_ITEMS asyncio workers
# per callback output (default 100): measured, that alone halved crawl throughput.
CONCURRENT_ITEMS = 8
REMOTE_CONTROL_ENABLED = False  # Scrapy 2.19 opens a control port by default; a crawler needs none

# -- resilience --------------------------------------------------------------------------------------
RETRY_ENABLED = True
RETRY_TIMES = 5
RETRY_HTTP_CODES = [500, 502, 503, 504, 522, 524, 408]  # 403/418/429 are bans: BanMiddleware
RETRY_BACKOFF_BASE = 2.0  # seconds before the first retry, doubling per retry
RETRY_BACKOFF_MAX = 60.0
DOUBAN_BAN_CODES = [403, 418, 429]
# Redirect targets that mean "you are blocked" (the security check, the login page).
DOUBAN_BAN_LOCATION_RE = r"sec\.douban\.com|/sec/|accounts\.douban\.com|/accounts/|/passport|/login"
DOUBAN_BAN_PAUSE_AFTER = 2  # different pages refused in a row before the crawl pauses (one may be page-specific)
DOUBAN_BAN_PAUSE = 60.0  # first pause, doubling while bans continue
DOUBAN_BAN_PAUSE_MAX = 900.0
DOUBAN_BAN_RETRIES = 5  # per request
DOUBAN_BAN_MAX_CONSECUTIVE = 50  # bans in a row with no good answer: stop (resume later with JOBDIR)

DOWNLOADER_MIDDLEWARES = {
    "crawler.middlewares.DedupeMiddleware": 120,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "crawler.middlewares.BackoffRetryMiddleware": 550,
    "crawler.middlewares.CharsetMiddleware": 560,  # answers pass it after BanMiddleware, before the retries
    "crawler.middlewares.BanMiddleware": 650,
    "crawler.middlewares.CookieMiddleware": 950,
}
# With REDIS_URL set (setting or environment), N crawlers share one scrapy-redis frontier: crawler/distributed.py.
ADDONS = {"crawler.distributed.RedisFrontier": 0}
DOUBAN_LEASE_SECONDS = 600.0  # a popped page whose worker has not finished it by then goes back to the queue
DOUBAN_LEASE_MAX_ATTEMPTS = 3  # requeues before a page is given up (a poison page must not loop forever)
DOUBAN_REDIS_PREFIX = None  # the crawl's Redis keys start with this (default: the spider's name)
ITEM_PIPELINES = {"crawler.storing.StorePipeline": 300}
# The spider's output passes them from the highest number down: ParseRetry turns a page that did not parse into
# its re-fetch, ListingRepeats reads a listing page's films before SubjectGate drops the stored ones.
SPIDER_MIDDLEWARES = {
    "crawler.spidermiddlewares.SubjectGate": 800,
    "crawler.spidermiddlewares.ListingRepeats": 825,
    "crawler.spidermiddlewares.ParseRetry": 850,
}
EXTENSIONS = {"crawler.extensions.CrawlDelay": 500, "crawler.extensions.CrawlSummary": 500}

# Resumable crawls: `-s JOBDIR=crawls/douban-1` keeps the queue on disk; stop with one Ctrl-C or SIGTERM
# (or lose the process outright) and run the same command again to resume (crawler.spidermiddlewares).

LOG_LEVEL = "INFO"
FEED_EXPORT_ENCODING = "utf-8"
