"""`kadn snapshot`: the films of the store at DATABASE_URL (SQLite, PostgreSQL, any SQLAlchemy URL) as one
canonical JSON Lines file, the input of `kadn clean`.

The file holds what the films are and nothing of when they were fetched: records in the export's field order,
sorted by Douban id, one compact line each. Two stores holding the same films give the same bytes, so DVC
runs this stage every time (`always_changed`) and the stages after it only when the films changed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline import store
from pipeline.errors import KadnError
from pipeline.io import atomic_path
from pipeline.records import FIELDS

DEFAULT_OUT = "data/snapshot/films.jsonl"


def snapshot_lines(records: list[dict]) -> str:
    lines = []
    for rec in sorted(records, key=lambda r: r["douban_id"]):
        lines.append(json.dumps({f: rec[f] for f in FIELDS}, ensure_ascii=False, separators=(",", ":")))
    return "".join(line + "\n" for line in lines)


def write_snapshot(database_url: str | None, out: Path) -> int:
    engine = store.connect(database_url, create=False)
    try:
        records = store.load_records(engine)
        where = engine.url.render_as_string(hide_password=True)
    finally:
        engine.dispose()
    if not records:
        raise KadnError(f"database {where} holds no movies: nothing to snapshot")
    with atomic_path(out, ".jsonl") as tmp:
        tmp.write_text(snapshot_lines(records), encoding="utf-8")
    return len(records)


def read_snapshot(path: Path) -> list[dict]:
    """The records of a snapshot file; a line that is not a JSON record stops with its line number."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KadnError(f"{path}: missing; write it with `kadn snapshot` (dvc repro runs it)") from None
    except UnicodeDecodeError as exc:
        raise KadnError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KadnError(f"{path}: line {number}: not JSON ({exc.msg}): {line[:40]!r}") from None
        missing = [f for f in FIELDS if not isinstance(rec, dict) or f not in rec]
        if missing:
            raise KadnError(f"{path}: line {number}: record lacks the field {missing[0]!r}")
        records.append(rec)
    return records


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="write the stored films as a canonical snapshot (the input of clean)")
    p.add_argument("--database-url", help="SQLAlchemy URL of the store to read (default: $DATABASE_URL, "
                   f"else {store.DEFAULT_DATABASE_URL})")
    p.add_argument("--out", default=DEFAULT_OUT, help="the snapshot file (JSON Lines) to write")
    p.set_defaults(func=_main)


def _main(args) -> int:
    n = write_snapshot(args.database_url, Path(args.out))
    print(f"snapshot: {n} films -> {args.out}", file=sys.stderr)
    return 0
