"""How a newer record of a film combines with what is already known about it.

One rule for every writer: the crawl's store, `kadn import`, and a film listed twice in one file.
Sources differ in what they know (a crawl has person ids and every release date; the CC0 CSV has names
and one date), so a thinner record must never erase what a richer one found:

- a scalar the incoming record leaves unknown (None) keeps the stored value; a known one replaces it;
- a person the incoming record names without an id keeps the id stored for that name in that role;
- a list of people, genres, countries or languages replaces the stored one only when it carries at least
  what the stored one knew (every stored person or value is in it); otherwise the stored list stays;
- release dates are merged by (date, region): the incoming entries come first, stored entries it lacks
  follow, and an entry without a region whose date is already known with a region adds nothing.

Whatever the source, a value never replaces a stored one that reads better: when the incoming text of a
field (a person list with its ids, the release dates) holds more U+FFFD replacement characters, what a
page read in the wrong encoding leaves, than the stored one, the stored field stays.

A newer crawl of a film's page supersedes an older crawl's: its non-empty lists replace the stored ones
(the page is the authority on a changed cast), while unknown scalars and empty lists still keep theirs.
"""

from __future__ import annotations

from typing import Any

from pipeline.film.records import ATTRIBUTES, FIELDS, ID_FIELD, ROLES, first_release, one_credit_each

SCALARS = ("title", "year", "runtime_min", "rating", "votes", "review_count", "comment_count", "imdb_id",
           "wish_count", "watched_count")
# Fields that change together: a person list and its ids, the release dates and the first of them.
GROUPS = ([(role, ID_FIELD[role]) for role in ROLES] + [("release_dates", "release_date")]
          + [(f,) for f in (*SCALARS, *ATTRIBUTES)])


def garbled(value) -> int:
    """How many U+FFFD replacement characters a value (text, or lists and dicts of it) holds."""
    if isinstance(value, str):
        return value.count("\ufffd")
    if isinstance(value, list | tuple):
        return sum(garbled(v) for v in value)
    if isinstance(value, dict):
        return sum(garbled(v) for v in value.values())
    return 0


def _people(rec: dict, role: str) -> list[tuple[str, str | None]]:
    return list(zip(rec[role], rec[ID_FIELD[role]]))


def merge_people(stored: list[tuple[str, str | None]], incoming: list[tuple[str, str | None]],
                 supersedes: bool = False) -> list[tuple[str, str | None]]:
    ids_by_name: dict[str, set[str]] = {}
    for name, pid in stored:
        if pid is not None:
            ids_by_name.setdefault(name, set()).add(pid)
    filled: list[tuple[str, str | None]] = []
    for name, pid in incoming:
        known = ids_by_name.get(name, set())
        if pid is None and len(known) == 1:  # two namesakes with ids: which one is meant is unknown
            pid = next(iter(known))
        filled.append((name, pid))
    # An id filled in from the stored list may be one the incoming list already names under another spelling.
    filled = one_credit_each(filled)
    if supersedes and filled:
        return filled
    ids = {pid for _, pid in filled if pid is not None}
    names = {name for name, _ in filled}
    covers = all((pid in ids) if pid is not None else (name in names) for name, pid in stored)
    return filled if covers else list(stored)


def merge_values(stored: list[str], incoming: list[str], supersedes: bool = False) -> list[str]:
    return list(incoming) if set(stored) <= set(incoming) or (supersedes and incoming) else list(stored)


def merge_release_dates(stored: list[dict], incoming: list[dict], supersedes: bool = False) -> list[dict]:
    if supersedes and incoming:
        return [dict(e) for e in incoming]
    merged: dict[tuple[str, str | None], dict] = {}
    for entry in list(incoming) + list(stored):
        merged.setdefault((entry["date"], entry["region"]), entry)  # the incoming entry's flag wins
    with_region = {date for date, region in merged if region is not None}
    return [dict(e) for (date, region), e in merged.items() if region is not None or date not in with_region]


def merge_record(stored: dict[str, Any] | None, incoming: dict[str, Any], *, supersedes: bool = False
                 ) -> dict[str, Any]:
    """The canonical record that results from storing `incoming` over `stored` (both canonical).

    `supersedes`: `incoming` is a newer fetch of the page `stored` was crawled from.
    """
    if stored is None:
        return incoming
    rec: dict[str, Any] = {"douban_id": incoming["douban_id"]}
    for key in SCALARS:
        rec[key] = incoming[key] if incoming[key] is not None else stored[key]
    for role in ROLES:
        people = merge_people(_people(stored, role), _people(incoming, role), supersedes)
        rec[role] = [name for name, _ in people]
        rec[ID_FIELD[role]] = [pid for _, pid in people]
    for attr in ATTRIBUTES:
        rec[attr] = merge_values(stored[attr], incoming[attr], supersedes)
    rec["release_dates"] = merge_release_dates(stored["release_dates"], incoming["release_dates"], supersedes)
    rec["release_date"] = first_release(rec["release_dates"])
    for group in GROUPS:
        if garbled([rec[f] for f in group]) > garbled([stored[f] for f in group]):
            rec.update({f: stored[f] for f in group})
    return {field: rec[field] for field in FIELDS}
