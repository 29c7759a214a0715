"""The cleaning rules, one ordered registry: `kadn clean` applies RULES in this order, its report counts
each rule under its name in this order, `kadn metrics` lists them from here (`metrics_order`), and
`kadn forecast` asks few_raters which films have no usable score yet.

A rule is either a record predicate (`drops(record, cfg)`: True removes the record) or a whole-list step
(`step(records, ctx)` -> (kept, removed)) for a rule that looks at records together (rerelease) or rewrites
them (unreadable, out_of_range). `keys` names the params.yaml `clean` keys the rule reads.

unreadable: a stored date or runtime that cannot be read is dropped under its own reason, never guessed.
out_of_range: release date (else the year) outside [date_min, date_max]. With `history`, films released
  before date_min are kept instead, flagged `history` (training context only: never validated or tested),
  and go through the same rules.
1. rerelease: records of one film (same normalised title, a shared director) collapse to the one with the
   latest release; re-release dates (重映) never count as a film's release date (see records.first_release).
   With `rerelease_id_years`, an in-range film whose Douban subject id is older than the range allows is a
   re-release too (see `old_id_threshold`): its only known date is a re-release, e.g. 千与千寻 2019.
2. non_film: 歌舞 records whose title names a concert, gala, tour... (keyword list in params).
3. missing_labels: a record missing any required group.
4. few_raters: no score shown (rating null or 0) or fewer than `min_votes` raters when the count is known.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from pipeline.errors import RecordError
from pipeline.film import store
from pipeline.film.records import date_sort_key, first_release, parse_date, parse_runtime
from pipeline.params import CleanConfig


class Context:
    """What the rules of one run share: the parameters, the range as date sort keys, the readable records
    (set by unreadable, before any rule removes one) and figures for the report (`info`)."""

    def __init__(self, cfg: CleanConfig):
        self.cfg = cfg
        self.lo = date_sort_key(parse_date(cfg.date_min))
        self.hi = date_sort_key(parse_date(cfg.date_max))
        self.readable: list[dict] = []
        self.info: dict = {}


@dataclass(frozen=True)
class Rule:
    name: str
    keys: tuple[str, ...]  # the params.yaml `clean` keys it reads
    summary: str
    drops: Callable[[dict, CleanConfig], bool] | None = None  # a record predicate: True removes the record
    step: Callable[[list[dict], Context], tuple[list[dict], list[dict]]] | None = None  # whole list
    # A guard against unreadable input rather than a cleaning rule: metrics.json lists it after the rules.
    guard: bool = False

    def __post_init__(self):
        if (self.drops is None) == (self.step is None):
            raise TypeError(f"rule {self.name}: give exactly one of drops (a record predicate) or step")

    def apply(self, records: list[dict], ctx: Context) -> tuple[list[dict], list[dict]]:
        """(kept, removed), each in the order given."""
        if self.step is not None:
            return self.step(records, ctx)
        drops, cfg = self.drops, ctx.cfg
        return split(records, lambda rec: drops(rec, cfg))


def split(records: list[dict], drop: Callable[[dict], bool]) -> tuple[list[dict], list[dict]]:
    kept, removed = [], []
    for rec in records:
        (removed if drop(rec) else kept).append(rec)
    return kept, removed


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


def _unreadable(records: list[dict], ctx: Context) -> tuple[list[dict], list[dict]]:
    kept, removed = [], []
    for rec in records:
        try:
            kept.append(_canonical(rec))
        except RecordError:
            removed.append(rec)
    ctx.readable = kept
    return kept, removed


def _out_of_range(records: list[dict], ctx: Context) -> tuple[list[dict], list[dict]]:
    for rec in records:
        rec["history"] = ctx.cfg.history and _before_range(rec, ctx.lo)
    return split(records, lambda r: not (r["history"] or _in_range(r, ctx.lo, ctx.hi)))


def _rerelease(records: list[dict], ctx: Context) -> tuple[list[dict], list[dict]]:
    years = ctx.cfg.rerelease_id_years
    # The id threshold is read from every readable record, before the range removed any.
    old_id = None if years is None else old_id_threshold(ctx.readable, ctx.lo[0], years)
    kept, removed = collapse_rereleases(records)
    if old_id is not None:
        removed += [r for r in kept if not r["history"] and r["douban_id"] < old_id]
        kept = [r for r in kept if r["history"] or r["douban_id"] >= old_id]
    if years is not None:
        ctx.info["rerelease_id_threshold"] = old_id
    return kept, removed


def _non_film(rec: dict, cfg: CleanConfig) -> bool:
    title = rec["title"].casefold()
    return cfg.non_film.genre in rec["genres"] and any(k.casefold() in title for k in cfg.non_film.keywords)


def _missing_labels(rec: dict, cfg: CleanConfig) -> bool:
    return any(not rec[group] for group in cfg.required)


def no_usable_score(rec: dict, cfg: CleanConfig) -> bool:
    # 0 is "no score" everywhere (the importers read it so; a store another tool wrote may still hold one).
    return not rec["rating"] or (rec["votes"] is not None and rec["votes"] < cfg.min_votes)


RULES: list[Rule] = [
    Rule("unreadable", (), "a stored date or runtime that cannot be read", step=_unreadable, guard=True),
    Rule("out_of_range", ("date_min", "date_max", "history"),
         "release date (else the year) outside [date_min, date_max]; with history, earlier films kept as "
         "training context", step=_out_of_range),
    Rule("rerelease", ("date_min", "rerelease_id_years"),
         "records of one film collapse to the latest release; with rerelease_id_years, in-range films with "
         "too old a subject id", step=_rerelease),
    Rule("non_film", ("non_film",), "a record of the non_film genre whose title holds one of its keywords",
         drops=_non_film),
    Rule("missing_labels", ("required",), "a record missing any required group", drops=_missing_labels),
    Rule("few_raters", ("min_votes",), "no score shown, or fewer than min_votes raters when the count is known",
         drops=no_usable_score),
]


def rule(name: str) -> Rule:
    """The rule of that name in RULES (KeyError if there is none)."""
    for r in RULES:
        if r.name == name:
            return r
    raise KeyError(f"no cleaning rule named {name!r}; the rules are {', '.join(r.name for r in RULES)}")


def metrics_order() -> list[str]:
    """The rule names as metrics.json lists them: the cleaning rules in the order they apply, then the guards
    (unreadable input), which metrics.json has always listed last."""
    return [r.name for r in RULES if not r.guard] + [r.name for r in RULES if r.guard]
