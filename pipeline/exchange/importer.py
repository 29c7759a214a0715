"""`kadn import FILE`: read an existing export and upsert it, all or nothing.

Three layouts are recognised from their header: this project's own export (JSONL or CSV), the CC0 Douban
dataset (`movie_id,title,rating,total_ratings,...`) and the moviedata-10m `movies.csv`
(`MOVIE_ID,NAME,...,DOUBAN_SCORE,...`). The whole file is read and checked before anything is written, and
written in one transaction, so a bad row leaves the database exactly as it was. A column or key the layout
does not know is refused (or, with `ignore_unknown`, left out with a warning), and CSV is read strictly: a
ragged row or a quote that never closes stops the import instead of shifting or swallowing values.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import KadnError, RecordError
from pipeline.film.merge import merge_record
from pipeline.film.records import (
    FIELDS,
    LIST_FIELDS,
    cut,
    normalise_record,
    parse_runtime,
    short,
    split_list,
    unknown_name_message,
)
from pipeline.io import jsonl_lines, loads, read_text

FORMATS = ("kadn", "cc0", "moviedata")


def warn(message: str) -> None:
    """One line on stderr, beside the command's own summary line."""
    print(f"warning: {message}", file=sys.stderr)


def _csv_header(text: str) -> list[str]:
    return next(csv.reader(io.StringIO(text, newline=""), strict=True), [])


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    """(line, row) per record. strict: a quote must end its cell, so a stray one cannot quietly swallow the
    rows after it; a row of more or fewer cells than the header is refused, never padded or cut."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    last = 0
    try:
        header = [h.strip() for h in next(reader, [])]
        last = reader.line_num
        for cells in reader:
            if cells and len(cells) != len(header):
                raise KadnError(f"{path}:{reader.line_num}: {len(cells)} cells for the header's {len(header)} "
                                "columns (a missing or extra separator, or a quote that does not close?)")
            if cells:  # not a blank line
                # The line the record ends on: a quoted newline keeps the numbers of later rows right.
                yield reader.line_num, dict(zip(header, cells))
            last = reader.line_num
    except csv.Error as exc:
        hint = " (a quote opened on this line never closes)" if "end of data" in str(exc) else ""
        raise KadnError(f"{path}:{last + 1}: malformed CSV: {exc}{hint}") from None


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    stripped = text.lstrip()
    if stripped.startswith("["):  # a JSON array of records
        try:
            items = loads(text)
        except ValueError as exc:
            raise KadnError(f"{path}: not valid JSON: {exc}") from None
        yield from enumerate(items, 1)
        return
    for lineno, line in jsonl_lines(text):
        if not line.strip():
            continue
        try:
            yield lineno, loads(line)
        except ValueError as exc:
            raise KadnError(f"{path}:{lineno}: not valid JSON: {exc}") from None


def _from_kadn_csv(row: dict) -> dict:
    rec: dict[str, Any] = {}
    for key, value in row.items():
        if key not in FIELDS:
            continue
        if value is None or value == "":
            rec[key] = None
        elif key in LIST_FIELDS:
            try:
                rec[key] = loads(value)
            except ValueError as exc:
                raise RecordError(key, f"not a JSON list ({exc}): {short(value)}") from None
        else:
            rec[key] = value
    return rec


def _from_cc0(row: dict) -> dict:
    return {
        "douban_id": row.get("movie_id"),
        "title": row.get("title"),
        "rating": row.get("rating"),
        "votes": row.get("total_ratings"),
        "directors": split_list(row.get("directors")),
        "writers": split_list(row.get("screenwriters")),
        "actors": split_list(row.get("actors")),
        "genres": split_list(row.get("genres")),
        "countries": split_list(row.get("countries")),
        "languages": split_list(row.get("languages")),
        "runtime_min": parse_runtime(row.get("runtime")),
        "release_date": row.get("release_date"),  # normalise_record makes it the one release date
    }


def _people_ids(names: list[str], pairs: str | None, field: str) -> list[str | None]:
    """moviedata-10m's 'NAME:ID|NAME:ID' -> ids aligned with `names` (None where absent)."""
    by_name: dict[str, str] = {}
    for pair in (pairs or "").split("|"):
        name, sep, pid = pair.rpartition(":")
        if not sep:
            continue
        pid = pid.strip()
        if pid and not pid.isdigit():
            raise RecordError(field, f"person id {short(pid)} in {short(pair)} is not numeric")
        by_name.setdefault(name.strip(), pid or None)
    return [by_name.get(n) for n in names]


def _from_moviedata(row: dict) -> dict:
    score, votes = row.get("DOUBAN_SCORE"), row.get("DOUBAN_VOTES")
    # The dump writes 0 for "no score shown"; a real 0.0 does not occur on Douban (scores start at 1.0).
    if score is not None and score.strip() in ("0", "0.0"):
        score = None
    directors, actors = split_list(row.get("DIRECTORS"), "/"), split_list(row.get("ACTORS"), "/")
    mins = row.get("MINS")
    return {
        "douban_id": row.get("MOVIE_ID"),
        "title": row.get("NAME"),
        "year": None if (row.get("YEAR") or "").strip() in ("", "0") else row["YEAR"],
        "rating": score,
        "votes": votes if (votes or "").strip() not in ("", "0") or score is not None else None,
        "directors": directors,
        "director_ids": _people_ids(directors, row.get("DIRECTOR_IDS"), "DIRECTOR_IDS"),
        "actors": actors,
        "actor_ids": _people_ids(actors, row.get("ACTOR_IDS"), "ACTOR_IDS"),
        "genres": split_list(row.get("GENRES"), "/"),
        "countries": split_list(row.get("REGIONS"), "/"),
        "languages": split_list(row.get("LANGUAGES"), "/"),
        "runtime_min": None if (mins or "").strip() in ("", "0") else mins,
        "release_date": row.get("RELEASE_DATE"),
        "imdb_id": row.get("IMDB_ID"),
    }


def detect_format(path: Path, header: list[str]) -> str:
    cols = {h.strip() for h in header}
    if "douban_id" in cols:
        return "kadn"
    if {"movie_id", "title", "total_ratings"} <= cols:
        return "cc0"
    if {"MOVIE_ID", "NAME", "DOUBAN_SCORE"} <= cols:
        return "moviedata"
    raise KadnError(
        f"{path}: unknown format: header {', '.join(cut(h) for h in header[:8])} matches none of this project's export "
        "(douban_id,...), the CC0 dataset (movie_id,title,rating,total_ratings,...) or moviedata-10m "
        "(MOVIE_ID,NAME,...,DOUBAN_SCORE,...)"
    )


CONVERTERS: dict[str, Callable[[dict], dict]] = {"cc0": _from_cc0, "moviedata": _from_moviedata}
# Canonical field -> the column a user sees in that format's file, for error messages.
SOURCE_COLUMNS = {
    "cc0": {"douban_id": "movie_id", "votes": "total_ratings", "writers": "screenwriters", "runtime_min": "runtime"},
    "moviedata": {"douban_id": "MOVIE_ID", "title": "NAME", "rating": "DOUBAN_SCORE", "votes": "DOUBAN_VOTES",
                  "runtime_min": "MINS", "release_date": "RELEASE_DATE", "year": "YEAR", "imdb_id": "IMDB_ID",
                  "countries": "REGIONS"},
}
# Every column a layout may hold: the ones read, and the ones it documents that this project leaves out
# (the CC0 summary, link, poster and tags; moviedata's alias, cover, site, slug, storyline and tags). Any
# other name is a typo or another layout, refused unless --ignore-unknown.
KNOWN_COLUMNS = {
    "kadn": frozenset(FIELDS),
    "cc0": frozenset({"movie_id", "title", "rating", "total_ratings", "directors", "actors", "screenwriters",
                      "release_date", "genres", "countries", "languages", "runtime",
                      "summary", "link", "poster", "tags"}),
    "moviedata": frozenset({"MOVIE_ID", "NAME", "ACTORS", "DIRECTORS", "DOUBAN_SCORE", "DOUBAN_VOTES", "GENRES",
                            "IMDB_ID", "LANGUAGES", "MINS", "REGIONS", "RELEASE_DATE", "YEAR", "ACTOR_IDS",
                            "DIRECTOR_IDS", "ALIAS", "COVER", "OFFICIAL_SITE", "SLUG", "STORYLINE", "TAGS"}),
}
IGNORE_HINT = "; pass --ignore-unknown to leave such names out"


def _check_header(path: Path, header: list[str], fmt: str, ignore_unknown: bool) -> None:
    names = [h.strip() for h in header]
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated is not None:
        raise KadnError(f"{path}: column {short(repeated)} appears twice in the header")
    unknown = [n for n in names if n not in KNOWN_COLUMNS[fmt]]
    if unknown and not ignore_unknown:
        raise KadnError(f"{path}: {unknown_name_message(unknown[0], KNOWN_COLUMNS[fmt], 'column')} "
                        f"in the {fmt} layout{IGNORE_HINT}")
    if unknown:
        warn(f"{path}: ignored {len(unknown)} unknown column(s): {', '.join(map(short, unknown))}")


class _UnknownKeys:
    """JSON records' keys outside the export's fields: refused at the first, or (ignoring) counted."""

    def __init__(self, path: Path, ignore: bool):
        self.path, self.ignore, self.names, self.records = path, ignore, set(), 0

    def check(self, lineno: int, row: dict) -> None:
        unknown = [k for k in row if k not in KNOWN_COLUMNS["kadn"]]
        if unknown and not self.ignore:
            raise KadnError(f"{self.path}:{lineno}: {unknown_name_message(unknown[0], FIELDS, 'key')}{IGNORE_HINT}")
        if unknown:
            self.names.update(unknown)
            self.records += 1

    def report(self) -> None:
        if self.records:
            shown = ", ".join(short(n) for n in sorted(self.names)[:10])
            warn(f"{self.path}: ignored unknown key(s) {shown} in {self.records} record(s)")


# A CSV without any id column, but with titles, is read as this project's layout when ids are optional.
ID_COLUMNS = frozenset({"douban_id", "movie_id", "MOVIE_ID"})


def read_rows(path: str | Path, fmt: str | None = None, ignore_unknown: bool = False, ids_optional: bool = False
              ) -> tuple[str, Iterator[tuple[int, Any]], Callable[[dict], dict]]:
    """(layout, (line, raw row) per record, the row's conversion to the export's field names): the one reader
    of import files, checked as `kadn import` checks them (unknown columns or keys refused unless
    `ignore_unknown`; strict CSV). With `ids_optional`, a CSV of titles without an id column reads as ours."""
    path = Path(path)
    text = read_text(path)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson") or text.lstrip()[:1] in ("{", "["):
        if (fmt or "kadn") != "kadn":
            raise KadnError(f"{path}: JSON input must be in this project's export format")
        return "kadn", _checked_json(path, _jsonl_rows(path, text), ignore_unknown), lambda r: r
    header = _csv_header_checked(path, text)
    cols = {h.strip() for h in header}
    if fmt is None and ids_optional and "title" in cols and not cols & ID_COLUMNS:
        fmt = "kadn"
    fmt = fmt or detect_format(path, header)
    _check_header(path, header, fmt, ignore_unknown)
    return fmt, _csv_rows(path, text), (_from_kadn_csv if fmt == "kadn" else CONVERTERS[fmt])


def _checked_json(path: Path, rows: Iterator[tuple[int, Any]], ignore_unknown: bool) -> Iterator[tuple[int, Any]]:
    keys = _UnknownKeys(path, ignore_unknown)
    for lineno, row in rows:
        if isinstance(row, dict):
            keys.check(lineno, row)
        yield lineno, row
    keys.report()


def record_error(path: Path, fmt: str, lineno: int, exc: RecordError) -> KadnError:
    """A bad field of one row as the line `kadn import` prints: file, line, field and the layout's column."""
    column = SOURCE_COLUMNS.get(fmt, {}).get(exc.field)
    where = f" (column {column})" if column else ""
    return KadnError(f"{path}:{lineno}: {exc.field!r}{where}: {exc.message}")


def read_export(path: str | Path, fmt: str | None = None, ignore_unknown: bool = False) -> tuple[str, list[dict]]:
    """Read and check a whole export; returns (format, canonical records). Raises KadnError on any bad row,
    on a column (CSV) or key (JSON) no layout knows unless `ignore_unknown`."""
    path = Path(path)
    fmt, rows, convert = read_rows(path, fmt, ignore_unknown)
    records, seen = [], {}
    for lineno, row in rows:
        if not isinstance(row, dict):
            raise KadnError(f"{path}:{lineno}: expected a JSON object per line")
        try:
            rec = normalise_record(convert(row))
        except RecordError as exc:
            raise record_error(path, fmt, lineno, exc) from None
        if rec["douban_id"] in seen:  # a repeated id merges as it would over a stored film
            records[seen[rec["douban_id"]]] = merge_record(records[seen[rec["douban_id"]]], rec)
        else:
            seen[rec["douban_id"]] = len(records)
            records.append(rec)
    return fmt, records


def _csv_header_checked(path: Path, text: str) -> list[str]:
    try:
        header = _csv_header(text)
    except csv.Error as exc:
        raise KadnError(f"{path}:1: malformed CSV header: {exc}") from None
    if not any(h.strip() for h in header):
        raise KadnError(f"{path}: no CSV header on the first line")
    return header
