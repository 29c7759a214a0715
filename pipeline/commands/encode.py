"""`kadn encode`: the cleaned table into feature groups, vocabularies and splits."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import KadnError
from pipeline.features.encode import run_encode
from pipeline.io import input_file
from pipeline.params import load


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="build feature groups, vocabularies and splits from the cleaned table")
    p.add_argument("--params", default="params.yaml", help="the parameters file (its encode section)")
    p.add_argument("--table", default="data/clean/movies.parquet", help="the cleaned table to encode")
    p.add_argument("--out", default="data/encoded", help="folder for the encoded arrays and vocabularies")
    p.set_defaults(func=_main)


def _main(args) -> int:
    cfg = load(args.params).encode
    table = Path(args.table)
    input_file(table, missing="missing; run `kadn clean` first")
    try:
        pq.read_metadata(table)
    except (pa.ArrowException, OSError) as exc:  # pyarrow's "magic bytes not found" names no file
        raise KadnError(f"{table}: not a Parquet table ({str(exc).splitlines()[0][:120]})") from None
    meta = run_encode(table, cfg, Path(args.out))
    groups = ", ".join(f"{g} {v['tokens']}" for g, v in meta["groups"].items())
    history = f" (+ {meta['history']} before the range, training only)" if "history" in meta else ""
    print(f"encode: {meta['films']} films{history}, split {meta['split']}; tokens {groups} -> {args.out}")
    return 0
