"""The `douban` spider's arguments (`-a NAME=VALUE`): each parsed and checked before a crawl starts."""

from __future__ import annotations

import difflib
import re

from pipeline.film.records import cut, short

YEAR_ARG_RE = re.compile(r"^\s*(\d{4})\s*(?:-\s*(\d{4})\s*)?$")


def parse_years(text: str) -> tuple[int, int]:
    m = YEAR_ARG_RE.match(str(text))
    if not m:
        raise ValueError(f"years must look like 2007-2019 or 2012, got {short(text)}")
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if lo > hi:
        raise ValueError(f"years {short(text)}: the first year is after the last")
    return lo, hi


def parse_ids(text: str) -> list[int]:
    ids = [t.strip() for t in re.split(r"[,\s]+", str(text)) if t.strip()]
    if not ids or not all(t.isdigit() for t in ids):
        raise ValueError(f"ids must be Douban subject ids separated by commas, got {short(text)}")
    return list(dict.fromkeys(int(t) for t in ids))


def parse_limit(text: str | None) -> int | None:
    if text is None or str(text).strip() == "":
        return None
    t = str(text).strip()
    if not t.isdigit() or int(t) < 1:
        raise ValueError(f"limit must be a positive number of subject pages, got {short(text)}")
    return int(t)


def parse_flag(text: str | None, name: str = "refresh") -> bool:
    t = "" if text is None else str(text).strip().lower()
    if t not in FLAGS:
        raise ValueError(f"{name} must be 1 or 0 (yes/no, true/false), got {short(text)}")
    return FLAGS[t]


CITY_RE = re.compile(r"^[a-z]+$")
DEFAULT_CITIES = ("beijing",)


def parse_cities(text: str | None) -> list[str]:
    """Cities whose coming-soon page (/cinema/later/CITY/) a `coming` crawl reads: Douban's pinyin slugs."""
    if text is None:
        return list(DEFAULT_CITIES)
    cities = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if not cities or not all(CITY_RE.match(c) for c in cities):
        raise ValueError(f"cities must be Douban city names in pinyin separated by commas (beijing,shanghai), "
                         f"got {short(text)}")
    return list(dict.fromkeys(cities))


FLAGS = {"": False, "0": False, "no": False, "false": False, "1": True, "yes": True, "true": True}
# The spider's arguments (`-a NAME=VALUE`), each with its parser; `scrapy crawl` checks them before starting.
ARGUMENTS = {"years": parse_years, "ids": lambda text: parse_ids(text) if text else None, "limit": parse_limit,
             "refresh": parse_flag, "coming": lambda text: parse_flag(text, "coming"), "cities": parse_cities}
# A `coming` crawl discovers its films from the coming-soon lists alone: these choose films another way.
NOT_WITH_COMING = ("years", "ids", "refresh")


# Arguments a scheduler adds to every spider it starts: scrapyd passes its job id as `_job`.
SCHEDULER_ARGUMENTS = frozenset({"_job"})


def check_arguments(spargs: dict) -> None:
    """Raise ValueError naming the first unknown or bad spider argument in `spargs` (the `-a NAME=VALUE`)."""
    for name, value in spargs.items():
        if name in SCHEDULER_ARGUMENTS:
            continue
        if name not in ARGUMENTS:
            close = difflib.get_close_matches(name, ARGUMENTS, n=1)
            hint = f"did you mean -a {close[0]}? " if close else ""
            raise ValueError(f"unknown spider argument -a {cut(name)}={cut(value)}: {hint}the douban "
                             f"spider takes {', '.join(ARGUMENTS)}")
        try:
            ARGUMENTS[name](value)
        except ValueError as exc:
            raise ValueError(f"bad spider argument -a {name}={cut(value)}: {exc}") from None
    check_coming(spargs)


def _asks(spargs: dict, name: str) -> bool:
    """Whether `-a NAME=...` asks for something (`-a refresh=0` or an empty `-a ids=` does not)."""
    value = spargs.get(name)
    if value is None:
        return False
    return parse_flag(value, name) if name in ("refresh", "coming") else bool(str(value).strip())


def check_coming(spargs: dict) -> None:
    """`coming` goes with `limit` and `cities` only; `cities` means nothing without it."""
    coming = _asks(spargs, "coming")
    clash = [name for name in NOT_WITH_COMING if _asks(spargs, name)] if coming else []
    if clash:
        raise ValueError(f"-a coming=1 cannot be combined with -a {clash[0]}: a coming crawl takes its films from "
                         "the coming-soon lists (add -a limit=N or -a cities=... only)")
    if "cities" in spargs and not coming:
        raise ValueError("-a cities=... chooses the coming-soon pages of a coming crawl: add -a coming=1")
