"""`kadn clean`: the stored films (or a snapshot of them) through the cleaning rules into the cleaned table."""

from __future__ import annotations

from pathlib import Path

from pipeline.features.clean import run_clean
from pipeline.io import output_target
from pipeline.params import load


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="apply the date range and the paper's four cleaning rules")
    p.add_argument("--snapshot", help="read the films from this `kadn snapshot` file instead of the store "
                   "(the DVC stage does)")
    p.add_argument("--database-url", help="SQLAlchemy URL of the store read without --snapshot "
                   "(default: $DATABASE_URL, else the shipped SQLite file)")
    p.add_argument("--params", default="params.yaml", help="the parameters file (its clean section)")
    p.add_argument("--out", default="data/clean/movies.parquet", help="the cleaned table (parquet)")
    p.add_argument("--report", default="data/clean/report.json", help="what each rule removed (JSON)")
    p.set_defaults(func=_main)


def _main(args) -> int:
    for out in (args.out, args.report):  # a directory or a device is refused before anything is read
        output_target(out)
    report = run_clean(args.database_url, load(args.params).clean, Path(args.out), Path(args.report),
                       Path(args.snapshot) if args.snapshot else None)
    removed = ", ".join(f"{k} {v}" for k, v in report["removed"].items())
    history = f" (+ {report['history']} before the range, as training context)" if "history" in report else ""
    print(f"clean: {report['stored']} stored, removed {removed}; {report['kept']} kept{history} -> {args.out}")
    return 0
