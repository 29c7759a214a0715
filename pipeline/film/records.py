"""The canonical movie record: the export's field names, shared by the spider, the importers and export.

A record is a plain dict. `normalise_record` checks and canonicalises one; every writer goes through it,
so the store never sees a half-formed movie. Unknown values are None (never 0 or "").
"""

from __future__ import annotations

import calendar
import difflib
import functools
import gc
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import Any

from pipeline.errors import RecordError

ROLES = ("directors", "writers", "actors")
ATTRIBUTES = ("genres", "countries", "languages")
# Export order; `release_date` is derived from `release_dates` (earliest date that is not a re-release).
FIELDS = (
    "douban_id",
    "title",
    "year",
    "directors",
    "director_ids",
    "writers",
    "writer_ids",
    "actors",
    "actor_ids",
    "genres",
    "countries",
    "languages",
    "runtime_min",
    "release_date",
    "release_dates",
    "rating",
    "votes",
    "review_count",
    "comment_count",
    "imdb_id",
    "wish_count",
    "watched_count",
)
# The subject page's 想看 / 看过 counts: popularity before and after release. Newer than the other fields, so a
# snapshot line carries them only when known (a store without them snapshots as before).
INTEREST_FIELDS = ("wish_count", "watched_count")
ID_FIELD = {role: role[:-1] + "_ids" for role in ROLES}  # each role's person ids: directors -> director_ids
LIST_FIELDS = frozenset(ROLES + ATTRIBUTES + tuple(ID_FIELD.values()) + ("release_dates",))
# Longest text the store keeps per kind of value (pipeline.film.store's column sizes come from here).
MAX_LEN = {"title": 512, "name": 256, "region": 128, "value": 128}

_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_IMDB_RE = re.compile(r"^tt\d+$")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Largest whole number each column holds: douban_id is a 64-bit key, the counts 32-bit columns (PostgreSQL).
MAX_INT = {"douban_id": 2**63 - 1}
MAX_COUNT = 2**31 - 1


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of small objects are built: records hold no
    cycles, and the collector's passes over everything built so far cost as much again as building it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def cut(value: Any, limit: int = 40) -> str:
    """A value as text for an error line, cut to a short prefix marked "..." (a value may hold megabytes)."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def short(value: Any, limit: int = 40) -> str:
    """A value quoted for an error message, cut to a short prefix (a field may hold megabytes)."""
    if isinstance(value, str):
        return repr(value[:limit]) + ("..." if len(value) > limit else "")
    return cut(repr(value), limit)


def _text(value: Any, field: str) -> str | None:
    """A text value as str; a number is read as its digits, anything else (an object, a list, a bool) refused."""
    if isinstance(value, str):
        if "\x00" in value:  # PostgreSQL cannot store it; refused everywhere so every store takes the same
            raise RecordError(field, f"contains a NUL character: {short(value)}")
        if _SURROGATE.search(value):  # a JSON "\ud800" escape: no UTF-8 file or database can hold it
            raise RecordError(field, f"contains a lone surrogate (not Unicode text): {short(value)}")
        return value
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(field, f"expected text, got {type(value).__name__} {short(value)}")
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def parse_date(text: str | None, field: str = "release_date") -> str | None:
    """'2010-09-01', '2010-9-1', '2010-09' or '2010' -> canonical 'YYYY[-MM[-DD]]'; None for blank."""
    if isinstance(text, str):
        return _parse_date_text(text, field)
    return _parse_date_text.__wrapped__(text, field)


@functools.lru_cache(maxsize=1 << 16)  # as date_sort_key: many films, few distinct dates
def _parse_date_text(text: str | None, field: str) -> str | None:
    text = _text(text, field)
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    m = re.match(r"^(\d{4})(?:[-/.](\d{1,2})(?:[-/.](\d{1,2}))?)?$", text)
    if not m:
        raise RecordError(field, f"cannot parse {short(text)} as a date (YYYY, YYYY-MM or YYYY-MM-DD)")
    year, month, day = m.group(1), m.group(2), m.group(3)
    if month is None:
        return year
    mo = int(month)
    if not 1 <= mo <= 12:
        raise RecordError(field, f"month out of range in {short(text)}")
    if day is None:
        return f"{year}-{mo:02d}"
    d = int(day)
    if not 1 <= d <= calendar.monthrange(int(year), mo)[1]:
        raise RecordError(field, f"no such day in {short(text)}")
    return f"{year}-{mo:02d}-{d:02d}"


def date_sort_key(date: str) -> tuple[int, int, int]:
    """Partial dates sort at the start of their period ('2011' before '2011-03-02')."""
    if isinstance(date, str):
        return _date_sort_key(date)
    return _date_sort_key.__wrapped__(date)


@functools.lru_cache(maxsize=1 << 16)  # a catalogue's dates are few (days of a few decades), its films many
def _date_sort_key(date: str) -> tuple[int, int, int]:
    m = _DATE_RE.match(date or "")
    if not m:
        raise RecordError("release_date", f"{short(date)} is not a canonical date (YYYY[-MM[-DD]])")
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)


def first_release(release_dates: list[dict]) -> str | None:
    """The film's release date: the earliest date that is not a re-release (重映)."""
    dates = [r["date"] for r in release_dates if not r.get("rerelease")]
    return min(dates, key=date_sort_key) if dates else None


def _int(value: Any, field: str, *, minimum: int = 0) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise RecordError(field, f"expected a whole number, got {short(value)}")
    maximum = MAX_INT.get(field, MAX_COUNT)
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip().replace(",", "")
        if not text:
            return None
        # Decimal, not float: a float would silently round a 17-digit id to a neighbouring one.
        try:
            exact = Decimal(text)
        except InvalidOperation:
            raise RecordError(field, f"cannot parse {short(value)} as a whole number") from None
        if not exact.is_finite() or exact != exact.to_integral_value():
            raise RecordError(field, f"cannot parse {short(value)} as a whole number")
        if not minimum <= exact <= maximum:
            raise RecordError(field, f"{short(text)} is outside {minimum}..{maximum}")
        number = int(exact)
    if not minimum <= number <= maximum:
        # str() of a Python int is refused beyond 4300 digits; the value is cut anyway.
        shown = short(str(number)) if number.bit_length() < 4000 else f"a {number.bit_length()}-bit number"
        raise RecordError(field, f"{shown} is outside {minimum}..{maximum}")
    return number


def _float(value: Any, field: str, lo: float, hi: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise RecordError(field, f"expected a number, got {short(value)}")
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise RecordError(field, f"cannot parse {short(value)} as a number") from None
    if math.isnan(number):
        return None
    if not lo <= number <= hi:
        raise RecordError(field, f"{number} is outside {lo}..{hi}")
    return round(number, 1)


def _str(value: Any, field: str) -> str | None:
    text = _text(value, field)
    if text is None:
        return None
    return text.strip() or None


def _checked(text: str | None, field: str, kind: str) -> str | None:
    if text is not None and len(text) > MAX_LEN[kind]:
        raise RecordError(field, f"longer than {MAX_LEN[kind]} characters: {short(text, 30)}")
    return text


def _str_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise RecordError(field, f"expected a list, got {type(value).__name__}")
    out: list[str] = []
    for item in value:
        text = _checked(_str(item, field), field, "value")
        if text is not None and text not in out:
            out.append(text)
    return out


def one_credit_each(people: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """(name, person id) credits with each person once, at their first billing: one per id (the store keeps one
    name per id, so a second spelling would come back as a duplicate credit), else one per name."""
    seen: set[tuple[str, str]] = set()
    out = []
    for name, pid in people:
        key = ("id", pid) if pid is not None else ("name", name)
        if key not in seen:
            seen.add(key)
            out.append((name, pid))
    return out


def normalise_record(raw: dict[str, Any], *, identified: bool = True) -> dict[str, Any]:
    """Check one record and return it in canonical form (raises RecordError naming the field).

    The one check of a film's values: imports, `kadn predict` and `kadn forecast FILE` all read records
    through it, so they accept the same ranges. `identified=False` (films scored, not stored) lets the
    Douban id and the title be unknown."""
    rec: dict[str, Any] = {}
    douban_id = _int(raw.get("douban_id"), "douban_id", minimum=1)
    if douban_id is None and identified:
        raise RecordError("douban_id", "missing")
    rec["douban_id"] = douban_id
    title = _checked(_str(raw.get("title"), "title"), "title", "title")
    if title is None and identified:
        raise RecordError("title", "missing")
    rec["title"] = title

    for role in ROLES:
        names = raw.get(role) or []
        ids = raw.get(ID_FIELD[role])
        if not isinstance(names, (list, tuple)):
            raise RecordError(role, f"expected a list, got {type(names).__name__}")
        if ids is None:
            ids = [None] * len(names)
        if not isinstance(ids, (list, tuple)) or len(ids) != len(names):
            raise RecordError(ID_FIELD[role], f"must be a list as long as {role}")
        people: list[tuple[str, str | None]] = []
        for name, pid in zip(names, ids):
            name, pid = _checked(_str(name, role), role, "name"), _str(pid, ID_FIELD[role])
            if name is None:
                continue
            if pid is not None and not (pid.isascii() and pid.isdigit() and len(pid) <= 20):
                raise RecordError(ID_FIELD[role], f"person id {short(pid)} is not a number")
            people.append((name, pid))
        people = one_credit_each(people)
        rec[role] = [n for n, _ in people]
        rec[ID_FIELD[role]] = [p for _, p in people]

    for attr in ATTRIBUTES:
        rec[attr] = _str_list(raw.get(attr), attr)

    rec["runtime_min"] = _int(raw.get("runtime_min"), "runtime_min", minimum=1)
    releases = []
    if not isinstance(raw.get("release_dates") or [], (list, tuple)):
        raise RecordError("release_dates", f"expected a list, got {type(raw['release_dates']).__name__}")
    for i, item in enumerate(raw.get("release_dates") or []):
        if not isinstance(item, dict):
            raise RecordError("release_dates", f"entry {i} is not an object")
        date = parse_date(item.get("date"), f"release_dates[{i}].date")
        if date is None:
            continue
        region = _checked(_str(item.get("region"), f"release_dates[{i}].region"), f"release_dates[{i}].region",
                          "region")
        rerelease = item.get("rerelease")
        if rerelease is not None and not isinstance(rerelease, bool):
            raise RecordError(f"release_dates[{i}].rerelease", f"expected true or false, got {short(rerelease)}")
        entry = {"date": date, "region": region, "rerelease": bool(rerelease)}
        if entry not in releases:
            releases.append(entry)
    # Checked even beside a list of dates: a bad value is refused, never silently dropped.
    single = parse_date(raw.get("release_date"))
    if not releases and single:
        # Exports without the full list still name the release date.
        releases.append({"date": single, "region": None, "rerelease": False})
    rec["release_dates"] = releases
    rec["release_date"] = first_release(releases)

    year = _int(raw.get("year"), "year", minimum=1)
    if year is None and rec["release_date"]:
        year = int(rec["release_date"][:4])
    if year is not None and not 1870 <= year <= 2100:
        raise RecordError("year", f"{year} is not a plausible film year")
    rec["year"] = year

    # 0 means "no score shown" in every layout (Douban's scores start at 1.0): unknown, so it never
    # replaces a stored score.
    rec["rating"] = _float(raw.get("rating"), "rating", 0.0, 10.0) or None
    rec["votes"] = _int(raw.get("votes"), "votes")
    rec["review_count"] = _int(raw.get("review_count"), "review_count")
    rec["comment_count"] = _int(raw.get("comment_count"), "comment_count")
    imdb = _str(raw.get("imdb_id"), "imdb_id")
    if imdb is not None and not (_IMDB_RE.match(imdb) and len(imdb) <= 16):
        raise RecordError("imdb_id", f"{short(imdb)} is not an IMDb id (tt followed by digits)")
    rec["imdb_id"] = imdb
    for key in INTEREST_FIELDS:
        rec[key] = _int(raw.get(key), key)
    return {field: rec[field] for field in FIELDS}


def unknown_name_message(name: str, known: tuple[str, ...] | frozenset[str], what: str) -> str:
    """"unknown column 'ratng' (did you mean 'rating'?)": the closest known name, matched ignoring case."""
    folded = {k.casefold(): k for k in known}
    close = difflib.get_close_matches(name.strip().casefold(), list(folded), n=1)
    hint = f" (did you mean {folded[close[0]]!r}?)" if close else ""
    return f"unknown {what} {short(name)}{hint}"


def check_stored(rec: dict[str, Any]) -> None:
    """A record read back from a snapshot: its identity and numbers are of the stored types and ranges
    (dates and runtimes are left to the clean stage, which counts unreadable ones)."""
    if type(rec.get("douban_id")) is not int or _int(rec["douban_id"], "douban_id", minimum=1) is None:
        raise RecordError("douban_id", f"expected a Douban id, got {short(rec.get('douban_id'))}")
    if not isinstance(rec.get("title"), str):
        raise RecordError("title", f"expected text, got {short(rec.get('title'))}")
    _text(rec["title"], "title")
    if rec.get("rating") is not None and not isinstance(rec["rating"], (int, float)):
        raise RecordError("rating", f"expected a number, got {short(rec['rating'])}")
    _float(rec.get("rating"), "rating", 0.0, 10.0)
    for field in ("year", "votes", "review_count", "comment_count"):
        if rec.get(field) is not None and type(rec[field]) is not int:
            raise RecordError(field, f"expected a whole number, got {short(rec[field])}")
        _int(rec.get(field), field)
    for field in LIST_FIELDS - {"release_dates"}:
        value = rec.get(field)
        if not isinstance(value, list) or not all(v is None or isinstance(v, str) for v in value):
            raise RecordError(field, f"expected a list of text, got {short(value)}")
    if not isinstance(rec.get("release_dates"), list) or not all(
            isinstance(d, dict) and "date" in d for d in rec["release_dates"]):
        raise RecordError("release_dates", f"expected a list of dated entries, got {short(rec.get('release_dates'))}")


_RUNTIME_RE = re.compile(r"(\d+)\s*(?:分钟|分|min|mins|minutes)?", re.IGNORECASE)


def parse_runtime(text: Any, field: str = "runtime_min") -> int | None:
    """'148', '148分钟', '95 分钟', '约60min', '117分钟(中国大陆)' -> minutes; None for blank."""
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        return text if text > 0 else None
    text = str(text).strip()
    if not text:
        return None
    m = _RUNTIME_RE.search(text)
    if not m:
        raise RecordError(field, f"cannot read a runtime in minutes from {short(text)}")
    digits = m.group(1)
    # int() refuses over 4,300 digits with an error naming no field; no runtime has more than a few.
    if len(digits) > 6:
        raise RecordError(field, f"runtime {short(text)} is too large to be minutes")
    minutes = int(digits)
    return minutes if minutes > 0 else None


def split_list(text: Any, seps: str = ",/|") -> list[str]:
    """'剧情, 喜剧' or '汉语普通话 / 英语' -> items, trimmed, blanks dropped."""
    if text is None:
        return []
    parts = re.split("[" + re.escape(seps) + "]", str(text))
    return [p.strip() for p in parts if p.strip()]
