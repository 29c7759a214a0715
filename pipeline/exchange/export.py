"""`kadn export`: one record per stored movie, in the canonical field order (pipeline.film.records.FIELDS)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from typing import IO

from pipeline.film.records import FIELDS

# Line breaks to Unicode but not to JSON: escaped, so a reader that splits lines on them still reads
# one record per line (inside JSON they can only occur in strings, where the escape means the same).
_UNICODE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"})


def write_jsonl(records: Iterable[dict], out: IO[str]) -> int:
    n = 0
    for rec in records:
        out.write(json.dumps(rec, ensure_ascii=False).translate(_UNICODE_BREAKS) + "\n")
        n += 1
    return n


def write_csv(records: Iterable[dict], out: IO[str]) -> int:
    """Lists and release dates go into cells as JSON, so names holding ',' or '/' survive a round trip."""
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    # The csv module quotes a cell holding "\n" but not one holding a lone "\r" (it only looks for the
    # characters of lineterminator), and every reader ends the line there: quote such a row in full.
    quoting = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writeheader()
    n = 0
    for rec in records:
        row = {k: (json.dumps(v, ensure_ascii=False) if isinstance(v, list) else ("" if v is None else v))
               for k, v in rec.items()}
        (quoting if any("\r" in v for v in row.values() if isinstance(v, str)) else writer).writerow(row)
        n += 1
    return n


WRITERS = {"jsonl": write_jsonl, "csv": write_csv}


def export(records: Iterable[dict], fmt: str = "jsonl", out: IO[str] | None = None) -> int:
    return WRITERS[fmt](records, out or sys.stdout)
