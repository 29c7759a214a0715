"""`scrapy crawl`, exiting 1 when the crawl stopped for a reason a script must notice, a part of discovery
was given up, or its store cannot be opened or refused films; and 2 on bad or unknown `-a` arguments, a
setting that is not of its default's type or outside its range (crawler.setting_rules), or an unknown
spider (one line naming it, no traceback, nor Scrapy's usage block or start-up log above it).

Scrapy exits 0 whatever the finish reason; a cron job refreshing the store should learn that discovery was
blocked, the site banned the crawler, or the database refused writes. A graceful stop (`shutdown`) stays 0:
it is the resumable way to pause a JOBDIR crawl.
"""

from __future__ import annotations

import os
import sys

from scrapy.commands.crawl import Command as ScrapyCrawl
from scrapy.exceptions import UsageError
from scrapy.settings import Settings
from scrapy.utils.misc import load_object

from crawler import setting_rules
from pipeline.errors import KadnError
from pipeline.film import store
from pipeline.film.records import cut, short
from pipeline.redact import mask_text

FAILED = frozenset({"discovery_blocked", "banned", "store_failed"})


class Command(ScrapyCrawl):
    def _create_crawler(self, spidercls):
        self._crawler = super()._create_crawler(spidercls)
        return self._crawler

    def process_options(self, args, opts):
        # Checked here, before Scrapy starts its crawler process (which logs), and printed here rather than
        # raised: Scrapy prints a UsageError's message under the usage block. A refusal is one line, exit 2.
        try:
            super().process_options(args, opts)  # a -s or -a without "=" is refused there
            check_settings(opts.set)
            setting_rules.check(self.settings, frozenset(p.partition("=")[0] for p in opts.set or ()), os.environ)
            if len(args) == 1:
                self._check_arguments(args[0], opts.spargs)
        except (UsageError, ValueError) as exc:  # ValueError: setting_rules' refusal
            print(f"scrapy crawl: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    def run(self, args, opts):
        problem = store_problem(self.settings)
        if problem:
            # Before the crawl starts: Scrapy would report a pipeline that cannot open with two tracebacks.
            print(f"scrapy crawl: error: cannot open the movie store (DATABASE_URL): {problem}", file=sys.stderr)
            self.exitcode = 1
            return
        super().run(args, opts)
        if self.crawler_process.bootstrap_failed:
            return  # the spider never started (Scrapy has said why and set exit code 1): no stats to read
        crawler = getattr(self, "_crawler", None)
        try:
            stats = crawler.stats.get_stats() if crawler is not None else {}
        except RuntimeError:  # Crawler.stats is not set yet: the crawl did not start
            stats = {}
        if stats.get("finish_reason") in FAILED or stats.get("douban/store_failed"):
            self.exitcode = 1
        missed = stats.get("douban/undiscovered")
        if missed and stats.get("finish_reason") not in FAILED:
            print(f"scrapy crawl: error: discovery incomplete, films of {', '.join(map(cut, missed[:5]))}"
                  f"{' ...' if len(missed) > 5 else ''} may be missing: run the crawl again", file=sys.stderr)
            self.exitcode = 1

    def _check_arguments(self, spname: str, spargs: dict) -> None:
        """Bad `-a NAME=VALUE` arguments: a usage error naming the argument (exit 2), not a traceback."""
        # The crawler process (and its spider loader) does not exist yet: the loader it would make.
        loader = load_object(self.settings["SPIDER_LOADER_CLASS"]).from_settings(self.settings.frozencopy())
        try:
            spidercls = loader.load(spname)
        except KeyError:
            raise UsageError(f"no spider named {short(spname)}; this project has: {', '.join(loader.list())}",
                             print_help=False) from None
        check = getattr(spidercls, "check_arguments", None)
        if check is None:
            return
        try:
            check(spargs)
        except ValueError as exc:
            raise UsageError(str(exc), print_help=False) from None


BOOLS = {"True", "true", "False", "false"}  # what Settings.getbool accepts, besides integers
FLOATS = {"DOWNLOAD_TIMEOUT", "DNS_TIMEOUT"}  # integer defaults, but Scrapy reads them with getfloat


def check_settings(pairs: list[str]) -> None:
    """`-s NAME=VALUE` whose default is a number or a flag must parse as one: say which setting, not a
    traceback from deep inside the crawler once it reads it."""
    defaults = Settings()
    defaults.setmodule("crawler.settings", priority="project")
    for pair in pairs or ():
        name, _, value = pair.partition("=")
        default = defaults.get(name)
        if isinstance(default, bool):
            ok, kind = value in BOOLS or value.strip().lstrip("-").isdigit(), "true/false (or 1/0)"
        elif isinstance(default, int | float):
            whole = isinstance(default, int) and name not in FLOATS
            kind = "an integer" if whole else "a number"
            try:
                (int if whole else float)(value)
                ok = True
            except ValueError:
                ok = False
        else:
            continue
        if not ok:
            raise UsageError(f"bad setting -s {name}={cut(value)}: {name} must be {kind} (default {default!r})",
                             print_help=False)


def store_problem(settings) -> str | None:
    """Why the crawl's store cannot be opened (one line), or None when it opens."""
    try:
        engine = store.connect(store.database_url(settings.get("DATABASE_URL")))
    except (KadnError, OSError) as exc:  # OSError: a SQLite path running through a regular file
        return mask_text(str(exc).splitlines()[0])
    engine.dispose()
    return None
