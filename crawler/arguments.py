"""The `douban` spider's arguments (`-a NAME=VALUE`): each parsed and checked before a crawl starts."""

from __future__ import annotations

import difflib
import re

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


def parse_flag(text: str | None) -> bool:
    t = "" if text is None else str(text).strip().lower()
    if t not in FLAGS:
        raise ValueError(f"refresh must be 1 or 0 (yes/no, true/false), got {short(text)}")
    return FLAGS[t]


FLAGS = {"": False, "0": False, "no": False, "false": False, "1": True, "yes": True, "true": True}
# The spider's arguments (`-a NAME=VALUE`), each with its parser; `scrapy crawl` checks them before starting.
ARGUMENTS = {"years": parse_years, "ids": lambda text: parse_ids(text) if text else None, "limit": parse_limit,
             "refresh": parse_flag}


# Arguments a scheduler adds to every spider it starts: scrapyd passes its job id as `_job`.
SCHEDULER_ARGUMENTS = frozenset({"_job"})


def cut(value, width: int = 40) -> str:
    """A value for an error line, cut to a short prefix (an argument may be megabytes long)."""
    text = str(value)
    return text if len(text) <= width else text[:width] + "..."


def short(value) -> str:
    return repr(cut(value))


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
