"""`kadn snapshot`: the films of the store at DATABASE_URL (SQLite, PostgreSQL, any SQLAlchemy URL) as one
canonical JSON Lines file, the input of `kadn clean`.

The file holds what the films are and nothing of when they were fetched: records in the export's field order,
sorted by Douban id, one compact line each. Two stores holding the same films give the same bytes, so DVC
runs this stage every time (`always_changed`) and the stages after it only when the films changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from pipeline.errors import KadnError, RecordError
from pipeline.film import store
from pipeline.film.records import FIELDS, INTEREST_FIELDS, check_stored, cut, gc_paused, short
from pipeline.io import atomic_path, jsonl_lines, read_text
from pipeline.redact import mask_url

DEFAULT_OUT = "data/snapshot/films.jsonl"
_FIELD_SET = frozenset(FIELDS) - frozenset(INTEREST_FIELDS)  # what every line carries


def _plain_float(value) -> bool:
    # Where orjson writes a float as json does: both print the shortest repr, but outside this range json
    # says 1e-05 and 1e+16, orjson 1e-5 and 1e16 (and it writes NaN as null).
    return value == 0 or 1e-4 <= abs(value) < 1e16


def snapshot_line(rec: dict) -> bytes:
    """One record as its snapshot line, without the newline: compact, keys in FIELDS order, UTF-8 text as is.
    The interest counts appear only when known, so films without them give the lines they gave before."""
    fields = {f: rec[f] for f in FIELDS if f not in INTEREST_FIELDS or rec.get(f) is not None}
    if any(type(v) is float and not _plain_float(v) for v in fields.values()):
        return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
    # orjson writes the same bytes as json.dumps(ensure_ascii=False, separators=(",", ":")), several times faster.
    return orjson.dumps(fields)


def snapshot_lines(records: list[dict]) -> bytes:
    return b"".join(snapshot_line(rec) + b"\n" for rec in sorted(records, key=lambda r: r["douban_id"]))


def write_snapshot(database_url: str | None, out: Path) -> int:
    engine = store.connect(database_url, create=False)
    try:
        records = store.load_records(engine)
        where = mask_url(engine.url)
    finally:
        engine.dispose()
    if not records:
        raise KadnError(f"database {where} holds no movies: nothing to snapshot")
    with gc_paused(), atomic_path(out, ".jsonl") as tmp:
        tmp.write_bytes(snapshot_lines(records))
    return len(records)


def _parse(line: str):
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        # json reads a few things orjson refuses (NaN, integers beyond 64 bits) and words its errors as
        # this stage always has: it has the last say.
        return json.loads(line)


def read_snapshot(path: Path, checked: bool = False) -> list[dict]:
    """The records of a snapshot file; a line that is not a JSON record (with `checked`, a record whose
    identity or numbers are not of the stored kinds) stops with its line number."""
    text = read_text(path, missing="missing; write it with `kadn snapshot` (dvc repro runs it)")
    records = []
    with gc_paused():
        for number, line in jsonl_lines(text):
            try:
                rec = _parse(line)
            except (json.JSONDecodeError, ValueError, RecursionError) as exc:
                reason = getattr(exc, "msg", None) or ("nested too deeply" if isinstance(exc, RecursionError)
                                                       else cut(str(exc), 60))
                raise KadnError(f"{path}: line {number}: not JSON ({reason}): {short(line)}") from None
            if not (isinstance(rec, dict) and rec.keys() >= _FIELD_SET):
                missing = next(f for f in FIELDS if f in _FIELD_SET and (not isinstance(rec, dict) or f not in rec))
                raise KadnError(f"{path}: line {number}: record lacks the field {missing!r}")
            try:
                if checked:
                    check_stored(rec)
            except RecordError as exc:
                raise KadnError(f"{path}: line {number}: {exc}") from None
            for f in INTEREST_FIELDS:
                rec.setdefault(f, None)
            records.append(rec)
    return records
