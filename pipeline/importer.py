"""`kadn import FILE`: read an existing export and upsert it, all or nothing.

Three layouts are recognised from their header: this project's own export (JSONL or CSV), the CC0 Douban
dataset (`movie_id,title,rating,total_ratings,...`) and the moviedata-10m `movies.csv`
(`MOVIE_ID,NAME,...,DOUBAN_SCORE,...`). The whole file is read and checked before anything is written, and
written in one transaction, so a bad row leaves the database exactly as it was.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline.errors import KadnError, RecordError
from pipeline.merge import merge_record
from pipeline.records import FIELDS, LIST_FIELDS, normalise_record, parse_runtime, short, split_list

FORMATS = ("kadn", "cc0", "moviedata")


def _csv_header(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return csv.DictReader(handle).fieldnames or []


def _csv_rows(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            # DictReader counts physical lines, so a quoted newline keeps the number right.
            yield reader.line_num, row


def _big_int(digits: str) -> int | Decimal:
    # int() refuses more than 4300 digits with a ValueError that names no field; a Decimal reaches the
    # record check, which refuses it by field name.
    return int(digits) if len(digits) <= 4000 else Decimal(digits)


def loads(text: str) -> Any:
    """json.loads, with every way JSON text can fail as one JSONDecodeError-like ValueError message."""
    try:
        return json.loads(text, parse_int=_big_int)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} (line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    # newline="": JSONL lines end at "\n" only; a string may hold U+2028, U+2029 or U+0085 unescaped.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        text = handle.read()
    stripped = text.lstrip()
    if stripped.startswith("["):  # a JSON array of records
        try:
            items = loads(text)
        except ValueError as exc:
            raise KadnError(f"{path}: not valid JSON: {exc}") from None
        yield from enumerate(items, 1)
        return
    for lineno, line in enumerate(text.split("\n"), 1):
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
        f"{path}: unknown format: header {', '.join(h[:40] for h in header[:8])} matches none of this project's export "
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


def read_export(path: str | Path, fmt: str | None = None) -> tuple[str, list[dict]]:
    """Read and check a whole export; returns (format, canonical records). Raises KadnError on any bad row."""
    path = Path(path)
    if path.is_dir():
        raise KadnError(f"{path}: is a directory, not an export file")
    if not path.is_file():
        raise KadnError(f"{path}: no such file")
    try:
        with path.open("rb") as handle:
            head = handle.read(64).removeprefix(b"\xef\xbb\xbf")
    except OSError as exc:
        raise KadnError(f"{path}: cannot read: {exc.strerror}") from None

    is_json = path.suffix.lower() in (".jsonl", ".json", ".ndjson") or head.lstrip()[:1] in (b"{", b"[")
    try:
        if is_json:
            fmt = fmt or "kadn"
            if fmt != "kadn":
                raise KadnError(f"{path}: JSON input must be in this project's export format")
            rows, convert = _jsonl_rows(path), (lambda r: r)
        else:
            header, rows = _csv_header(path), _csv_rows(path)
            if not header:
                raise KadnError(f"{path}: empty file (no CSV header)")
            fmt = fmt or detect_format(path, header)
            convert = _from_kadn_csv if fmt == "kadn" else CONVERTERS[fmt]
        records, seen = [], {}
        for lineno, row in rows:
            if not isinstance(row, dict):
                raise KadnError(f"{path}:{lineno}: expected a JSON object per line")
            try:
                rec = normalise_record(convert(row))
            except RecordError as exc:
                column = SOURCE_COLUMNS.get(fmt, {}).get(exc.field)
                where = f" (column {column})" if column else ""
                raise KadnError(f"{path}:{lineno}: {exc.field!r}{where}: {exc.message}") from None
            if rec["douban_id"] in seen:  # a repeated id merges as it would over a stored film
                records[seen[rec["douban_id"]]] = merge_record(records[seen[rec["douban_id"]]], rec)
            else:
                seen[rec["douban_id"]] = len(records)
                records.append(rec)
    except UnicodeDecodeError as exc:
        raise KadnError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise KadnError(f"{path}: malformed CSV: {exc}") from None
    return fmt, records
