"""The feature groups, in one ordered list (`SPECS`): each group's name, the cleaned table's column(s) it reads,
its kind, its `encode.max_len` key, how many of its first ids CatBoost's categorical table takes, and the word
explanations name one of its values with. Everything that lists groups reads `SPECS` when it runs (through
`names`, `spec`, `list_columns`), never a copy of its own:

- `pipeline.params`: the keys of `encode.max_len`;
- `pipeline.features.encode`: the tokeniser of each kind, the index arrays, vocabularies and meta.json;
- `models.training.data`: the nets' index tensors, people dropout, the multi-hot matrix, CatBoost's table;
- `models.training.conformal`: the known-people share intervals are calibrated on;
- `models.serving`: a saved model's checks and scoring, `kadn forecast --swap`, the explanations.

So a group added here alone is encoded, fed to every model, checked in a saved model and explained (model
folders and encoded arrays made before it are refused, naming it). The order is the models' input order.

Kinds (one tokeniser each, in `pipeline.features.encode`; a film's tokens, in billing order):
- `people`: columns (names, person ids); the first `max_len` people, keyed `id:PID`, else `name:NAME`;
- `list`: one column of text values; the first `max_len` values as they are;
- `scalar`: one token per film, `token(encode params, *the film's values of columns)`, `UNKNOWN` when unknown.

Imports nothing of the project but its errors, and neither pandas nor pyarrow: `pipeline.params` builds its
`encode.max_len` section from this list before any data code loads (as it reads its model names from
`pipeline.registry`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from pipeline.errors import KadnError

Kind = Literal["people", "list", "scalar"]
KINDS: tuple[str, ...] = get_args(Kind)
UNKNOWN = "unknown"  # a scalar group's token when the film's value is not known
# Keys a feature dict holds beside the groups (models.training.data.DENSE): no group may take them.
RESERVED = ("dense",)


@dataclass(frozen=True)
class GroupSpec:
    """One feature group. `columns`: the cleaned table's (a record's) fields it reads; `max_len`: its key in
    params.yaml `encode.max_len` (people and lists; a scalar group has one token); `slots`: how many of a film's
    first ids are CatBoost's categorical columns; `word`: one value in explanations ("actor", "release year");
    `token`: a scalar group's (params, *values) -> token."""

    name: str
    kind: Kind
    columns: tuple[str, ...]
    max_len: str | None
    slots: int
    word: str
    token: Callable[..., str] | None = None

    def __post_init__(self):
        width = {"people": 2, "list": 1}.get(self.kind)
        problems = [
            (self.kind not in KINDS, f"kind {self.kind!r} is not one of {', '.join(KINDS)}"),
            (self.name in RESERVED, f"{self.name!r} is reserved"),
            (width is not None and len(self.columns) != width,
             f"a {self.kind} group reads {width} column(s), not {len(self.columns)}"),
            (self.kind == "scalar" and not (self.columns and callable(self.token)),
             "a scalar group needs its columns and a token function"),
            ((self.max_len is None) != (self.kind == "scalar"),
             "people and lists need an encode.max_len key, a scalar group none"),
            (self.slots < 1, "slots must be at least 1 (CatBoost reads every group)"),
        ]
        problem = next((text for failed, text in problems if failed), None)
        if problem:
            raise ValueError(f"feature group {self.name!r}: {problem}")


def runtime_token(params: dict, minutes) -> str:
    """The runtime's bucket [lo, hi) between consecutive `runtime_edges`."""
    if not _known(minutes):
        return UNKNOWN
    edges = params["runtime_edges"]
    for lo, hi in zip(edges, edges[1:]):
        if lo <= minutes < hi:
            return f"{lo}-{hi}"
    return f">={edges[-1]}" if minutes >= edges[-1] else f"<{edges[0]}"


def year_token(params: dict, date, year) -> str:
    """The release date's year, else the film's year."""
    text = _text(date)
    return text[:4] if text else (str(int(year)) if _known(year) else UNKNOWN)


def month_token(params: dict, date) -> str:
    text = _text(date)
    return text[5:7] if len(text) >= 7 else UNKNOWN


def _known(value) -> bool:
    """A number, not NaN: a table's missing values (None, NaN, pandas' NA) are unknown."""
    return isinstance(value, numbers.Real) and not math.isnan(value)


def _text(value) -> str:
    """A value as text, "" when missing: None in a record, NaN in a pandas text column, pandas' NA."""
    if value is None:
        return ""
    try:
        if value != value:  # NaN
            return ""
    except TypeError:  # pandas' NA has no truth value
        return ""
    return str(value)


SPECS: tuple[GroupSpec, ...] = (
    GroupSpec("directors", "people", ("directors", "director_ids"), "directors", slots=2, word="director"),
    GroupSpec("writers", "people", ("writers", "writer_ids"), "writers", slots=2, word="writer"),
    GroupSpec("actors", "people", ("actors", "actor_ids"), "actors", slots=5, word="actor"),
    GroupSpec("genres", "list", ("genres",), "genres", slots=3, word="genre"),
    GroupSpec("countries", "list", ("countries",), "countries", slots=2, word="country"),
    GroupSpec("languages", "list", ("languages",), "languages", slots=1, word="language"),
    GroupSpec("runtime", "scalar", ("runtime_min",), None, slots=1, word="runtime", token=runtime_token),
    GroupSpec("year", "scalar", ("release_date", "year"), None, slots=1, word="release year", token=year_token),
    GroupSpec("month", "scalar", ("release_date",), None, slots=1, word="release month", token=month_token),
)


def names(*kinds: str) -> tuple[str, ...]:
    """Every group's name in order, or those of the given kinds."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"no kind of feature group {', '.join(unknown)}; kinds: {', '.join(KINDS)}")
    return tuple(s.name for s in SPECS if not kinds or s.kind in kinds)


def spec(name: str) -> GroupSpec:
    for s in SPECS:
        if s.name == name:
            return s
    raise KeyError(f"no feature group {name!r}; groups: {', '.join(names())}")


def list_columns() -> tuple[str, ...]:
    """The list columns the groups read (people's names and ids, the lists' values), in group order."""
    return tuple(c for s in SPECS if s.kind != "scalar" for c in s.columns)


def max_len_keys() -> tuple[str, ...]:
    return tuple(s.max_len for s in SPECS if s.max_len is not None)


def require(present: Iterable[str], where: str, fix: str) -> None:
    """A KadnError naming the groups `present` lacks: data made before a group was added is refused, not read
    without it."""
    have = set(present)
    missing = [g for g in names() if g not in have]
    if missing:
        raise KadnError(f"{where}: no feature group {', '.join(missing)}; {fix}")


def check(specs: Iterable[GroupSpec]) -> None:
    """Names and max_len keys are each given once (a group's arrays and vocabulary are keyed by its name)."""
    specs = list(specs)
    for what, values in (("name", [s.name for s in specs]), ("max_len key", [s.max_len for s in specs if s.max_len])):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ValueError(f"feature group {what} given twice: {', '.join(twice)}")


check(SPECS)
