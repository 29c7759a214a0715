"""What each setting the crawl relies on may hold: one table, checked before a crawl starts.

A value of the right type can still stall a crawl (a negative pause, CONCURRENT_REQUESTS=-1) or make it
wait on a scheme it cannot fetch (DOUBAN_BASE_URL=ftp://...): `scrapy crawl` refuses those with one line
naming the setting and what it accepts (crawler.commands.crawl).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from pipeline.film.records import cut
from pipeline.redact import mask_url

DAY = 86_400.0


@dataclass(frozen=True)
class Rule:
    kind: str  # "int", "float", "codes" (HTTP statuses), "choice", "url", "path" or "regex"
    low: float | None = None  # numbers: the smallest value accepted
    high: float | None = None  # numbers: the largest value accepted
    above: bool = False  # numbers: `low` itself is refused (a timeout of 0 s never succeeds)
    choices: tuple[str, ...] = ()  # "choice": the values; "url": the schemes
    secretless: bool = False  # "url": refuse a user or password in it (it would show in every request's log line)

    def problem(self, value) -> str | None:
        """Why `value` (as Scrapy's settings hold it: a default or a `-s` string) is refused, or None."""
        return getattr(self, f"_{self.kind}")(value)

    def _number(self, value, cast) -> str | None:
        try:
            number = cast(value)
        except (TypeError, ValueError, OverflowError):
            return f"must be {'an integer' if cast is int else 'a number'}"
        low_ok = number > self.low if self.above else number >= self.low
        if not math.isfinite(number) or not low_ok or (self.high is not None and number > self.high):
            return f"must be {self.describe()}"
        return None

    def _int(self, value) -> str | None:
        return self._number(value, int)

    def _float(self, value) -> str | None:
        return self._number(value, float)

    def _codes(self, value) -> str | None:
        items = value.split(",") if isinstance(value, str) else value
        try:
            ok = all(100 <= int(code) <= 599 for code in items)
        except (TypeError, ValueError):
            ok = False
        return None if ok else "must be HTTP status codes (100 to 599) separated by commas"

    def _choice(self, value) -> str | None:
        return None if value in self.choices else f"must be one of {', '.join(self.choices)}"

    def _url(self, value) -> str | None:
        try:
            parts = urlsplit(str(value))
            ok = parts.scheme in self.choices and bool(parts.hostname or parts.scheme == "unix")
        except ValueError:
            ok = False
        if ok and self.secretless and (parts.username or parts.password):
            return "must not hold a user or password (Scrapy logs every request's URL)"
        return None if ok else f"must be an absolute {' or '.join(self.choices)} URL"

    def _path(self, value) -> str | None:
        return None if str(value).startswith("/") else "must be a path starting with /"

    def _regex(self, value) -> str | None:
        try:
            re.compile(str(value))
        except re.error as exc:
            return f"must be a regular expression ({exc})"
        return None

    def describe(self) -> str:
        low = f"more than {self.low:g}" if self.above else f"at least {self.low:g}"
        return low if self.high is None else f"{low} and at most {self.high:g}"


def count(low: int, high: int) -> Rule:
    return Rule("int", low, high)


def seconds(high: float, *, above: bool = False) -> Rule:
    return Rule("float", 0.0, high, above=above)


RULES: dict[str, Rule] = {
    # the crawler's own
    "DOUBAN_BASE_URL": Rule("url", choices=("http", "https"), secretless=True),
    "DOUBAN_DISCOVERY": Rule("choice", choices=("auto", "listing", "sitemap")),
    "DOUBAN_LISTING_PATH": Rule("path"),
    "DOUBAN_STORE_BATCH": count(1, 10_000),
    "DOUBAN_REFRESH_DAYS": Rule("float", 0.0, 100_000.0),
    "DOUBAN_PARSE_RETRIES": count(0, 100),
    "RETRY_BACKOFF_BASE": seconds(DAY),
    "RETRY_BACKOFF_MAX": seconds(DAY),
    "DOUBAN_BAN_CODES": Rule("codes"),
    "DOUBAN_BAN_LOCATION_RE": Rule("regex"),
    "DOUBAN_BAN_PAUSE_AFTER": count(1, 1_000_000),
    "DOUBAN_BAN_PAUSE": seconds(DAY),
    "DOUBAN_BAN_PAUSE_MAX": seconds(DAY),
    "DOUBAN_BAN_RETRIES": count(0, 1_000),
    "DOUBAN_BAN_MAX_CONSECUTIVE": count(1, 1_000_000),
    "DOUBAN_LEASE_SECONDS": seconds(7 * DAY, above=True),
    "DOUBAN_LEASE_MAX_ATTEMPTS": count(0, 1_000),
    "REDIS_URL": Rule("url", choices=("redis", "rediss", "unix")),
    # Scrapy's, as this crawl relies on them
    "AUTOTHROTTLE_START_DELAY": seconds(DAY),
    "AUTOTHROTTLE_MAX_DELAY": seconds(DAY),
    "AUTOTHROTTLE_TARGET_CONCURRENCY": Rule("float", 0.0, 1_000.0, above=True),
    "DOWNLOAD_DELAY": seconds(DAY),
    "DOWNLOAD_TIMEOUT": seconds(DAY, above=True),
    "CONCURRENT_REQUESTS": count(1, 10_000),
    "CONCURRENT_REQUESTS_PER_DOMAIN": count(1, 10_000),
    "CONCURRENT_ITEMS": count(1, 10_000),
    "RETRY_TIMES": count(0, 1_000),
    "RETRY_HTTP_CODES": Rule("codes"),
}


def check(settings, given: frozenset[str] = frozenset(), env: dict[str, str] | None = None) -> None:
    """Raise ValueError (one line) naming the first setting in RULES whose value is refused. `given`: the
    names set with `-s` (said so in the line); `env`: variables a setting falls back to (REDIS_URL)."""
    for name, rule in RULES.items():
        value = settings.get(name)
        if value is None and env:
            value = env.get(name) or None
        if value is None:  # unset and optional (REDIS_URL: no Redis frontier)
            continue
        why = rule.problem(value)
        if why:
            shown = mask_url(value) if rule.kind == "url" else value
            where = "-s " if name in given else ""
            raise ValueError(f"bad setting {where}{name}={cut(shown)}: {name} {why}")
