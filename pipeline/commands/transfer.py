"""`kadn import` and `kadn export`: moving records between files and the store."""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import KadnError
from pipeline.exchange.export import WRITERS, export
from pipeline.exchange.importer import FORMATS, read_export
from pipeline.film import store
from pipeline.io import atomic_path, output_target
from pipeline.redact import mask_url


def register(sub, name: str) -> None:
    if name == "import":
        p = sub.add_parser("import", help="upsert an existing export (ours, the CC0 CSV, moviedata-10m)")
        p.add_argument("file", help="JSONL/JSON/CSV file")
        p.add_argument("--format", choices=FORMATS, help="skip detection from the header")
        p.add_argument("--ignore-unknown", action="store_true",
                       help="leave out columns (CSV) or keys (JSON) no layout knows, with a warning, instead of "
                       "refusing the file")
        p.add_argument("--database-url", help="SQLAlchemy URL (default: $DATABASE_URL or the snapshot)")
        p.set_defaults(func=run_import)
    else:
        p = sub.add_parser("export", help="print one record per stored movie")
        p.add_argument("--format", choices=sorted(WRITERS), default="jsonl", help="output format")
        p.add_argument("-o", "--output", help="write to this file (atomically) instead of stdout")
        p.add_argument("--database-url", help="SQLAlchemy URL (default: $DATABASE_URL or the snapshot)")
        p.set_defaults(func=run_export)


def run_import(args) -> int:
    # Fully checked before the store is touched.
    fmt, records = read_export(args.file, args.format, ignore_unknown=args.ignore_unknown)
    engine = store.connect(args.database_url)
    try:
        # One write transaction holding the lock throughout: a concurrent import waits for it, and the
        # counts before and after see no one else's films.
        with store.writing(engine) as conn:
            store.lock_movies(conn)
            before = store.count_movies(conn)
            store.upsert_records(engine, records, source=f"import:{fmt}", conn=conn)
            after = store.count_movies(conn)
    except SQLAlchemyError as exc:
        where = mask_url(engine.url)
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise KadnError(f"{args.file}: nothing imported, the database {where} refused the write: {reason}") from None
    print(f"imported {len(records)} records from {args.file} ({fmt} format): "
          f"{after - before} new, {len(records) - (after - before)} updated; {after} movies stored",
          file=sys.stderr)
    return 0


def run_export(args) -> int:
    if args.output and Path(args.output).is_dir():
        raise KadnError(f"{args.output}: is a directory; -o names the file to write")
    if args.output:
        output_target(args.output)  # a FIFO or a device is refused before the store is read
    engine = store.connect(args.database_url, create=False)
    records = store.load_records(engine)
    if args.output:
        with atomic_path(args.output) as tmp, tmp.open("w", encoding="utf-8", newline="") as out:
            n = export(records, args.format, out)
    else:
        n = export(records, args.format, sys.stdout)
    print(f"exported {n} movies", file=sys.stderr)
    return 0
