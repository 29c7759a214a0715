"""`kadn snapshot`: the stored films as a canonical JSON Lines file, the input of the clean stage."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.exchange.snapshot import DEFAULT_OUT, write_snapshot
from pipeline.film import store
from pipeline.io import output_target


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="write the stored films as a canonical snapshot (the input of clean)")
    p.add_argument("--database-url", help="SQLAlchemy URL of the store to read (default: $DATABASE_URL, "
                   f"else {store.DEFAULT_DATABASE_URL})")
    p.add_argument("--out", default=DEFAULT_OUT, help="the snapshot file (JSON Lines) to write")
    p.set_defaults(func=_main)


def _main(args) -> int:
    output_target(args.out)  # refused before the store is read
    n = write_snapshot(args.database_url, Path(args.out))
    print(f"snapshot: {n} films -> {args.out}", file=sys.stderr)
    return 0
