"""`kadn clean`: the 2007-2019 range and the paper's four cleaning rules (§2.1), applied in the order of
`pipeline.features.rules.RULES` (the rules and what each does are there).

Writes the cleaned table (parquet) and a report of what each rule removed, both atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import KadnError
from pipeline.exchange.snapshot import read_snapshot
from pipeline.features import rules
from pipeline.film import store
from pipeline.film.records import ATTRIBUTES, ID_FIELD, ROLES, gc_paused
from pipeline.io import atomic_path, write_json
from pipeline.params import CleanConfig
from pipeline.redact import mask_url

log = logging.getLogger(__name__)
# The columns of the cleaned table: the scalars, then every people field of the record (names, then person
# ids, None where unknown) and list attribute, so a field added to the record reaches the encoder unlisted.
COLUMNS = ("douban_id", "title", "year", "release_date", "runtime_min", "rating", "votes", "review_count",
           "comment_count", *(c for role in ROLES for c in (role, ID_FIELD[role])), *ATTRIBUTES, "history")


def apply_rules(records: list[dict], cfg: CleanConfig, info: dict | None = None
                ) -> tuple[list[dict], dict[str, list[dict]]]:
    """Apply the rules of `pipeline.features.rules.RULES` in order; returns (kept, removed records per rule, in that
    order). `info`, if given, gets what the rules report beside their counts (the id threshold of
    re-releases by id, `rerelease_id_threshold`, None if it cannot be set)."""
    ctx = rules.Context(cfg)
    removed: dict[str, list[dict]] = {}
    current = records
    for rule in rules.RULES:
        current, removed[rule.name] = rule.apply(current, ctx)
    if info is not None:
        info.update(ctx.info)
    return current, removed


def to_frame(records: list[dict]) -> pd.DataFrame:
    # `history` is set by apply_rules; a record that never went through it is a film of the range.
    frame = pd.DataFrame({c: [r.get(c, False) for r in records] if c == "history" else [r[c] for r in records]
                          for c in COLUMNS}, columns=list(COLUMNS))
    for col in ("year", "runtime_min", "votes", "review_count", "comment_count"):
        frame[col] = frame[col].astype("Int64")
    frame["rating"] = frame["rating"].astype("float64")
    frame["douban_id"] = frame["douban_id"].astype("int64")
    frame["history"] = frame["history"].astype(bool)
    return frame.sort_values("douban_id", kind="stable").reset_index(drop=True)


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """`frame.to_parquet(path, index=False)`, byte for byte, with the list columns converted on one thread:
    the conversion holds the GIL, so pandas' default of a thread per core only adds contention."""
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False, nthreads=1), path, compression="snappy")


@gc_paused()
def run_clean(database_url: str | None, cfg: CleanConfig, out_table: Path, out_report: Path,
              snapshot: Path | None = None) -> dict:
    """Clean the films of `snapshot` (a `kadn snapshot` file, what the DVC stage reads), else of the store."""
    if snapshot is not None:
        # Checked: a hand-edited value of the wrong kind would otherwise stop the table's writer.
        records, where = read_snapshot(snapshot, checked=True), f"snapshot {snapshot}"
    else:
        engine = store.connect(database_url, create=False)
        records = store.load_records(engine)
        where = f"database {mask_url(engine.url)}"
    if not records:
        raise KadnError(f"{where} holds no movies: nothing to clean")
    info: dict = {}
    kept, removed = apply_rules(records, cfg, info)
    history = sum(r["history"] for r in kept)
    report = {
        "stored": len(records),
        "removed": {rule: len(recs) for rule, recs in removed.items()},
        "kept": len(kept) - history,
        # A few titles per rule, so a reader can check the rules did what they say.
        "examples": {rule: [f"{r['douban_id']} {r['title']}" for r in recs[:5]] for rule, recs in removed.items()},
    }
    if cfg.history:
        report["history"] = history  # kept as training context, beside the `kept` films of the range
    report.update(info)
    if len(kept) == history:
        detail = ", ".join(f"{rule} removed {n}" for rule, n in report["removed"].items() if n)
        raise KadnError(f"every one of the {len(records)} stored movies was removed ({detail}); check params.yaml clean")
    with atomic_path(out_table, ".parquet") as tmp:
        write_table(to_frame(kept), tmp)
    write_json(out_report, report)
    return report
