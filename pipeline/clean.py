"""`kadn clean`: the 2007-2019 range and the paper's four cleaning rules (§2.1), in order.

0. unreadable: a stored date or runtime that cannot be read is dropped under its own reason, never guessed.
   out_of_range: release date (else the year) outside [date_min, date_max]. With `history`, films released
   before date_min are kept instead, flagged `history` (training context only: never validated or tested),
   and go through the same rules.
1. rerelease: records of one film (same normalised title, a shared director) collapse to the one with the
   latest release; re-release dates (重映) never count as a film's release date (see records.first_release).
   With `rerelease_id_years`, an in-range film whose Douban subject id is older than the range allows is a
   re-release too (see `old_id_threshold`): its only known date is a re-release, e.g. 千与千寻 2019.
2. non_film: 歌舞 records whose title names a concert, gala, tour... (keyword list in params).
3. missing_labels: a record missing any required group.
4. few_raters: no score shown (rating null) or fewer than `min_votes` raters when the count is known.

Writes the cleaned table (parquet) and a report of what each rule removed, both atomically.
"""

from __future__ import annotations

import logging
import unicodedata
from collections import defaultdict
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import store
from pipeline.errors import KadnError, RecordError
from pipeline.io import atomic_path, output_target, write_json
from pipeline.params import CleanConfig, load
from pipeline.records import date_sort_key, first_release, gc_paused, parse_date, parse_runtime
from pipeline.redact import mask_url
from pipeline.snapshot import read_snapshot

log = logging.getLogger(__name__)
RULES = ("unreadable", "out_of_range", "rerelease", "non_film", "missing_labels", "few_raters")
# The columns of the cleaned table; list columns hold names (and person ids, None where unknown).
COLUMNS = ("douban_id", "title", "year", "release_date", "runtime_min", "rating", "votes", "review_count",
           "comment_count", "directors", "director_ids", "writers", "writer_ids", "actors", "actor_ids",
           "genres", "countries", "languages", "history")


def normalise_title(title: str) -> str:
    """Width, case, spacing and punctuation folded, so '小森林 夏秋篇' and '小森林：夏秋篇' meet."""
    text = unicodedata.normalize("NFKC", title).casefold()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN")


def _release_key(rec: dict) -> tuple:
    return date_sort_key(rec["release_date"]) if rec["release_date"] else (0, 0, 0)


def _in_range(rec: dict, lo: tuple, hi: tuple) -> bool:
    if rec["release_date"]:
        key = date_sort_key(rec["release_date"])
        # A partial date ('2019' or '2019-12') is in range when its period overlaps the range.
        depth = 1 if key[1] == 0 else 2 if key[2] == 0 else 3
        return lo[:depth] <= key[:depth] <= hi[:depth]
    if rec["year"] is not None:
        return lo[0] <= rec["year"] <= hi[0]
    return True  # no date at all: rule 3 (missing release date) decides


def _before_range(rec: dict, lo: tuple) -> bool:
    """Released before the range: the whole period of its date (else its year) ends before `lo`."""
    if rec["release_date"]:
        key = date_sort_key(rec["release_date"])
        depth = 1 if key[1] == 0 else 2 if key[2] == 0 else 3
        return key[:depth] < lo[:depth]
    return rec["year"] is not None and rec["year"] < lo[0]


def release_year(rec: dict) -> int | None:
    return date_sort_key(rec["release_date"])[0] if rec["release_date"] else rec["year"]


MIN_REFERENCE = 5  # films first released in the reference year needed for their median id to mean anything
MAX_SHARE = 0.05  # re-releases by id are rare: a threshold flagging more in-range films means ids do not follow time


def old_id_threshold(records: list[dict], first_year: int, years: int) -> int | None:
    """The Douban id below which an in-range film's subject is too old for a first release in the range.

    Douban subject ids grow with time, and a film gets its subject at the earliest a year or so before its
    release. The median id of the films first released `years` years before the range is an id that
    existed that long before the range opened; a film under it that claims a first release inside the range
    carries a re-release date. None (the rule does not fire) with fewer than MIN_REFERENCE films that year,
    or when the threshold would flag more than MAX_SHARE of the range's films: ids that do not follow
    release years (another source's numbering) say nothing about re-releases.
    """
    ids = sorted(r["douban_id"] for r in records if release_year(r) == first_year - years)
    if len(ids) < MIN_REFERENCE:
        return None
    threshold = ids[(len(ids) - 1) // 2]
    in_range = [r["douban_id"] for r in records if (release_year(r) or 0) >= first_year]
    if sum(i < threshold for i in in_range) > MAX_SHARE * len(in_range):
        return None
    return threshold


def _canonical(rec: dict) -> dict:
    """The record with its dates in canonical form (a store written by another tool may hold '2012/5/1');
    raises RecordError when a date or the runtime cannot be read."""
    dates = [{**d, "date": parse_date(d["date"], "release_dates")} for d in rec["release_dates"]]
    # As minutes: a runtime stored as text ('117分钟') would otherwise reach the table's integer column.
    runtime = parse_runtime(rec["runtime_min"])
    return {**rec, "release_dates": dates, "release_date": first_release(dates), "runtime_min": runtime}


def _find(parent: dict[int, int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def collapse_rereleases(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Group records of one film (same normalised title, a shared director); keep the latest release."""
    by_title: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        by_title[normalise_title(rec["title"])].append(i)
    keep = set(range(len(records)))
    for members in by_title.values():
        if len(members) < 2:
            continue
        # Union-find over "shares a director" within one title; records without directors stand alone.
        parent = {i: i for i in members}
        find = partial(_find, parent)
        first_with: dict[str, int] = {}
        for i in members:
            for name, pid in zip(records[i]["directors"], records[i]["director_ids"]):
                key = store.person_key(name, pid)
                for k in {key, f"name:{name}"}:  # an id on one record and a bare name on the other still meet
                    if k in first_with:
                        parent[find(i)] = find(first_with[k])
                    else:
                        first_with[k] = i
        groups: dict[int, list[int]] = defaultdict(list)
        for i in members:
            groups[find(i)].append(i)
        for group in groups.values():
            if len(group) > 1:
                winner = max(group, key=lambda i: (_release_key(records[i]), records[i]["douban_id"]))
                keep -= set(group) - {winner}
    kept = [r for i, r in enumerate(records) if i in keep]
    dropped = [r for i, r in enumerate(records) if i not in keep]
    return kept, dropped


def apply_rules(records: list[dict], cfg: CleanConfig, info: dict | None = None
                ) -> tuple[list[dict], dict[str, list[dict]]]:
    """Apply the range and the four rules in order; returns (kept, removed records per rule). `info`, if
    given, gets the id threshold of re-releases by id (`rerelease_id_threshold`, None if it cannot be set)."""
    lo = date_sort_key(parse_date(cfg.date_min))
    hi = date_sort_key(parse_date(cfg.date_max))
    removed: dict[str, list[dict]] = {rule: [] for rule in RULES}
    old_id = None

    def split(rule: str, current: list[dict], drop) -> list[dict]:
        kept = []
        for rec in current:
            (removed[rule] if drop(rec) else kept).append(rec)
        return kept

    current = []
    for rec in records:
        try:
            current.append(_canonical(rec))
        except RecordError:
            removed["unreadable"].append(rec)
    if cfg.rerelease_id_years is not None:
        old_id = old_id_threshold(current, lo[0], cfg.rerelease_id_years)
    for rec in current:
        rec["history"] = cfg.history and _before_range(rec, lo)
    current = split("out_of_range", current, lambda r: not (r["history"] or _in_range(r, lo, hi)))
    current, removed["rerelease"] = collapse_rereleases(current)
    if old_id is not None:
        old = [r for r in current if not r["history"] and r["douban_id"] < old_id]
        removed["rerelease"] += old
        current = [r for r in current if r["history"] or r["douban_id"] >= old_id]

    genre = cfg.non_film.genre
    keywords = [k.casefold() for k in cfg.non_film.keywords]
    current = split("non_film", current, lambda r: genre in r["genres"]
                    and any(k in r["title"].casefold() for k in keywords))

    required = cfg.required
    current = split("missing_labels", current, lambda r: any(not r[g] for g in required))

    min_votes = cfg.min_votes
    current = split("few_raters", current,
                    lambda r: r["rating"] is None or (r["votes"] is not None and r["votes"] < min_votes))
    if info is not None and cfg.rerelease_id_years is not None:
        info["rerelease_id_threshold"] = old_id
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
