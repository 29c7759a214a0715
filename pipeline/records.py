"""The canonical movie record: the export's field names, shared by the spider, the importers and export.

A record is a plain dict. `normalise_record` checks and canonicalises one; every writer goes through it,
so the store never sees a half-formed movie. Unknown values are None (never 0 or "").
"""

from __future__ import annotations

import math
import re
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
)
LIST_FIELDS = frozenset(ROLES + ATTRIBUTES + ("director_ids", "writer_ids", "actor_ids", "release_dates"))
# Longest text the store keeps per kind of value (pipeline.store's column sizes come from here).
MAX_LEN = {"title": 512, "name": 256, "region": 128, "value": 128}
ID_FIELD = {"directors": "director_ids", "writers": "writer_ids", "actors": "actor_ids"}

_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_IMDB_RE = re.compile(r"^tt\d+$")


def parse_date(text: str | None, field: str = "release_date") -> str | None:
    """'2010-09-01', '2010-9-1', '2010-09' or '2010' -> canonical 'YYYY[-MM[-DD]]'; None for blank."""
    if text is None:
        return None
    text = str(text).strip()
    if not text:
        return None
    m = re.match(r"^(\d{4})(?:[-/.](\d{1,2})(?:[-/.](\d{1,2}))?)?$", text)
    if not m:
        raise RecordError(field, f"cannot parse {text!r} as a date (YYYY, YYYY-MM or YYYY-MM-DD)")
    year, month, day = m.group(1), m.group(2), m.group(3)
    if month is None:
        return year
    mo = int(month)
    if not 1 <= mo <= 12:
        raise RecordError(field, f"month out of range in {text!r}")
    if day is None:
        return f"{year}-{mo:02d}"
    d = int(day)
    if not 1 <= d <= 31:
        raise RecordError(field, f"day out of range in {text!r}")
    return f"{year}-{mo:02d}-{d:02d}"


def date_sort_key(date: str) -> tuple[int, int, int]:
    """Partial dates sort at the start of their period ('2011' before '2011-03-02')."""
    m = _DATE_RE.match(date or "")
    if not m:
        raise RecordError("release_date", f"{date!r} is not a canonical date (YYYY[-MM[-DD]])")
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)


def first_release(release_dates: list[dict]) -> str | None:
    """The film's release date: the earliest date that is not a re-release (重映)."""
    dates = [r["date"] for r in release_dates if not r.get("rerelease")]
    return min(dates, key=date_sort_key) if dates else None


def _int(value: Any, field: str, *, minimum: int = 0) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        raise RecordError(field, f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip().replace(",", "")
        if not text:
            return None
        try:
            as_float = float(text)
        except ValueError:
            raise RecordError(field, f"cannot parse {value!r} as a whole number") from None
        if not as_float.is_integer():
            raise RecordError(field, f"cannot parse {value!r} as a whole number")
        number = int(as_float)
    if number < minimum:
        raise RecordError(field, f"{number} is below {minimum}")
    return number


def _float(value: Any, field: str, lo: float, hi: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RecordError(field, f"cannot parse {value!r} as a number") from None
    if math.isnan(number):
        return None
    if not lo <= number <= hi:
        raise RecordError(field, f"{number} is outside {lo}..{hi}")
    return round(number, 1)


def _str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _checked(text: str | None, field: str, kind: str) -> str | None:
    if text is not None and len(text) > MAX_LEN[kind]:
        raise RecordError(field, f"longer than {MAX_LEN[kind]} characters: {text[:30]!r}...")
    return text


def _str_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise RecordError(field, f"expected a list, got {type(value).__name__}")
    out: list[str] = []
    for item in value:
        text = _checked(_str(item), field, "value")
        if text is not None and text not in out:
            out.append(text)
    return out


def normalise_record(raw: dict[str, Any]) -> dict[str, Any]:
    """Check one record and return it in canonical form (raises RecordError naming the field)."""
    rec: dict[str, Any] = {}
    douban_id = _int(raw.get("douban_id"), "douban_id", minimum=1)
    if douban_id is None:
        raise RecordError("douban_id", "missing")
    rec["douban_id"] = douban_id
    title = _checked(_str(raw.get("title")), "title", "title")
    if title is None:
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
        seen: set[tuple[str, str | None]] = set()
        for name, pid in zip(names, ids):
            name, pid = _checked(_str(name), role, "name"), _str(pid)
            if name is None:
                continue
            if pid is not None and not pid.isdigit():
                raise RecordError(ID_FIELD[role], f"person id {pid!r} is not numeric")
            if (name, pid) not in seen:  # the same credit listed twice keeps its first billing
                seen.add((name, pid))
                people.append((name, pid))
        rec[role] = [n for n, _ in people]
        rec[ID_FIELD[role]] = [p for _, p in people]

    for attr in ATTRIBUTES:
        rec[attr] = _str_list(raw.get(attr), attr)

    rec["runtime_min"] = _int(raw.get("runtime_min"), "runtime_min", minimum=1)
    releases = []
    for i, item in enumerate(raw.get("release_dates") or []):
        if not isinstance(item, dict):
            raise RecordError("release_dates", f"entry {i} is not an object")
        date = parse_date(item.get("date"), f"release_dates[{i}].date")
        if date is None:
            continue
        region = _checked(_str(item.get("region")), f"release_dates[{i}].region", "region")
        entry = {"date": date, "region": region, "rerelease": bool(item.get("rerelease"))}
        if entry not in releases:
            releases.append(entry)
    if not releases and raw.get("release_date"):
        # Exports without the full list still name the release date.
        releases.append({"date": parse_date(raw["release_date"]), "region": None, "rerelease": False})
    rec["release_dates"] = releases
    rec["release_date"] = first_release(releases)

    year = _int(raw.get("year"), "year", minimum=1)
    if year is None and rec["release_date"]:
        year = int(rec["release_date"][:4])
    if year is not None and not 1870 <= year <= 2100:
        raise RecordError("year", f"{year} is not a plausible film year")
    rec["year"] = year

    rec["rating"] = _float(raw.get("rating"), "rating", 0.0, 10.0)
    rec["votes"] = _int(raw.get("votes"), "votes")
    rec["review_count"] = _int(raw.get("review_count"), "review_count")
    rec["comment_count"] = _int(raw.get("comment_count"), "comment_count")
    imdb = _str(raw.get("imdb_id"))
    if imdb is not None and not _IMDB_RE.match(imdb):
        raise RecordError("imdb_id", f"{imdb!r} is not an IMDb id (tt followed by digits)")
    rec["imdb_id"] = imdb
    return {field: rec[field] for field in FIELDS}


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
        raise RecordError(field, f"cannot read a runtime in minutes from {text!r}")
    minutes = int(m.group(1))
    return minutes if minutes > 0 else None


def split_list(text: Any, seps: str = ",/|") -> list[str]:
    """'剧情, 喜剧' or '汉语普通话 / 英语' -> items, trimmed, blanks dropped."""
    if text is None:
        return []
    parts = re.split("[" + re.escape(seps) + "]", str(text))
    return [p.strip() for p in parts if p.strip()]
