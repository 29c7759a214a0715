"""Result tables as files: .jsonl (each row whole), .csv or .parquet (flat columns), chosen by the extension
and written atomically. `kadn forecast -o` and `kadn scorecard -o` write through here."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import KadnError
from pipeline.io import atomic_path

FORMATS = (".csv", ".jsonl", ".parquet")


def check_target(out: Path) -> None:
    """Refuse an output path before any work is done: an unknown extension, or a folder."""
    if out.suffix.lower() not in FORMATS:
        raise KadnError(f"{out}: unknown output format {out.suffix or '(none)'!r}; name a .csv, .jsonl or "
                        ".parquet file")
    if out.is_dir():
        raise KadnError(f"{out}: is a directory; name a file")


def write_table(rows: list[dict], out: Path, columns: list[str], flat: Callable[[dict], dict] = dict) -> None:
    """`rows` into `out`: JSONL keeps each row as it is; CSV and Parquet get `flat(row)` in `columns`."""
    check_target(out)
    suffix = out.suffix.lower()
    if suffix == ".jsonl":
        payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    elif suffix == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat(r) for r in rows)
        payload = buf.getvalue().encode("utf-8")
    else:
        import pandas as pd  # only the parquet output needs pandas' writer

        buf = io.BytesIO()
        pd.DataFrame([flat(r) for r in rows], columns=columns).to_parquet(buf, index=False)
        payload = buf.getvalue()
    try:
        with atomic_path(out, suffix) as tmp:
            tmp.write_bytes(payload)
    except OSError as exc:
        raise KadnError(f"{out}: cannot write: {exc.strerror}") from None
