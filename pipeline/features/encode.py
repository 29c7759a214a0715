"""`kadn encode`: the cleaned table -> feature groups as padded index arrays, vocabularies and splits.

Feature groups (paper §1.1, one list: `pipeline.groups.SPECS`): directors, writers, actors (first K billed),
genres, countries, languages, runtime bucket, release year, release month. Each kind of group has one
tokeniser (`TOKENISERS`), run over whole columns; a film scored by `kadn forecast` is a one-row table through
the same code (`record_tokens`). People are keyed by Douban person id when known, else by name. Index 0 pads
a group's row; index 1 is the group's out-of-vocabulary id.

Release dates are kept as YYYYMMDD integers (track records need the order of releases).

The stored vocabulary keeps every token seen; `min_count` is applied per training set by `restrict`, so a
cross-validation fold never learns which people occur only in its held-out part. Training reads the
arrays with numpy alone (`load_encoded`), no pandas.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import groups
from pipeline.errors import KadnError, RecordError
from pipeline.film.records import parse_date
from pipeline.film.store import person_key
from pipeline.io import atomic_path, write_json
from pipeline.params import EncodeConfig, Split

PAD, OOV = 0, 1
SPLITS = {"train": 0, "val": 1, "test": 2}
HISTORY = 3  # the split code of a film released before the range (clean.history): a training row only
POPULARITY = ("votes", "review_count", "comment_count")


def _as_list(value) -> list:
    """Parquet hands list cells back as numpy arrays; JSON as lists; missing as None."""
    return [] if value is None else list(value)


def history_mask(frame: pd.DataFrame) -> np.ndarray:
    """Films kept by clean.history from before the range (False for a table cleaned without the column)."""
    if "history" not in frame:
        return np.zeros(len(frame), bool)
    return frame["history"].fillna(False).to_numpy(bool)


def make_split(frame: pd.DataFrame, split: Split) -> np.ndarray:
    """0/1/2 for train/val/test: seeded random (the paper's), or by release date (latest films tested).
    Films from before the range are HISTORY, outside the split: the in-range films split exactly as they
    would without them."""
    history = history_mask(frame)
    in_range = np.flatnonzero(~history)
    n = len(in_range)
    n_test, n_val = round(n * split.test), round(n * split.val)
    if split.method == "random":
        order = np.random.default_rng(split.seed).permutation(n)
    else:
        dates = frame["release_date"].astype(str).to_numpy()[in_range]
        order = np.argsort(dates, kind="stable")[::-1]
    labels = np.full(len(frame), HISTORY, dtype=np.int8)
    labels[in_range] = SPLITS["train"]
    labels[in_range[order[:n_test]]] = SPLITS["test"]
    labels[in_range[order[n_test : n_test + n_val]]] = SPLITS["val"]
    return labels


def _column(frame: pd.DataFrame, name: str) -> list:
    return [_as_list(v) for v in frame[name]] if name in frame else [[] for _ in range(len(frame))]


def _per_value(values: list, fn) -> list:
    """fn of each value, computed once per distinct value (a catalogue has few runtimes and dates)."""
    cache: dict = {}
    return [cache[v] if v in cache else cache.setdefault(v, fn(v)) for v in values]


def _list_array(source: pd.DataFrame | pa.Table, name: str) -> pa.ListArray | None:
    """A list column as one Arrow list of strings; None when absent or not a list of text."""
    if isinstance(source, pa.Table):
        if name not in source.column_names:
            return None
        column = source.column(name).combine_chunks()
    else:
        if name not in source:
            return None
        try:
            column = pa.array(source[name], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
    if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
        return None
    value_type = column.type.value_type
    if pa.types.is_null(value_type):  # every cell empty or all values unknown (no person ids at all)
        column = column.cast(pa.list_(pa.string()))
    elif not pa.types.is_string(value_type) and not pa.types.is_large_string(value_type):
        return None
    return column


def _truncated(column: pa.ListArray, limit: int) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(the first `limit` values of each row, flat; those rows' lengths; the rows' full lengths)."""
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy().astype(np.int64)
    values = pc.list_flatten(column)  # null rows hold no values, so lengths and values agree
    position = np.arange(len(values)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return values.filter(pa.array(position < limit)), np.minimum(lengths, limit), lengths


def _flattened(lists: list[list[str]]) -> tuple[list[str], np.ndarray]:
    """Per-film token lists as (all tokens in film order, each film's count), the row-by-row way."""
    return list(chain.from_iterable(lists)), np.fromiter(map(len, lists), np.int64, len(lists))


Flat = tuple[list[str] | pa.Array, np.ndarray]  # (all tokens in film order, each film's count)


@dataclass
class _Source:
    """The films' columns: scalar ones from `frame`, list ones from `table` when given (as read from parquet),
    else from `frame`."""

    frame: pd.DataFrame
    table: pa.Table | None = None

    def arrow(self, name: str) -> pa.ListArray | None:
        return _list_array(self.table if self.table is not None else self.frame, name)

    def cells(self, name: str) -> list[list]:
        """A list column row by row (the reference for what Arrow cannot take)."""
        if self.table is not None and name in self.table.column_names:
            return _column(self.table.select([name]).to_pandas(), name)
        return _column(self.frame, name)

    def values(self, name: str) -> list:
        return self.frame[name].tolist() if name in self.frame else [None] * len(self.frame)


def _limit(spec: groups.GroupSpec, params: dict) -> int:
    try:
        return params["max_len"][spec.max_len]
    except KeyError:
        raise KadnError(f"encode params: max_len has no key {spec.max_len!r} for feature group {spec.name}; "
                        "add it to params.yaml encode.max_len") from None


def _people_tokens(spec: groups.GroupSpec, source: _Source, params: dict) -> Flat:
    """Each film's first max_len people, keyed by person id when known, else by name."""
    limit = _limit(spec, params)
    names_column, ids_column = spec.columns
    names, ids = source.arrow(names_column), source.arrow(ids_column)
    fast = names is not None and ids is not None and names.null_count == 0 and pc.list_flatten(names).null_count == 0
    if fast:
        flat_names, lengths, full = _truncated(names, limit)
        flat_ids, _, id_full = _truncated(ids, limit)
        fast = np.array_equal(full, id_full)
    if fast:
        known = pc.fill_null(pc.greater(pc.utf8_length(flat_ids), 0), False)
        keys = pc.if_else(known, pc.binary_join_element_wise("id:", flat_ids, ""),
                          pc.binary_join_element_wise("name:", flat_names, ""))
        return keys, lengths
    # Names missing, ids not as long as names...: row by row, whose result is the reference.
    return _flattened([[person_key(n, p) for n, p in zip(ns, ps or [None] * len(ns))][:limit]
                       for ns, ps in zip(source.cells(names_column), source.cells(ids_column))])


def _list_tokens(spec: groups.GroupSpec, source: _Source, params: dict) -> Flat:
    """Each film's first max_len values as they are."""
    limit = _limit(spec, params)
    (column,) = spec.columns
    values = source.arrow(column)
    if values is not None and pc.list_flatten(values).null_count == 0:
        flat, lengths, _ = _truncated(values, limit)
        return flat, lengths
    return _flattened([v[:limit] for v in source.cells(column)])


def _scalar_tokens(spec: groups.GroupSpec, source: _Source, params: dict) -> Flat:
    """Each film's one token: the spec's token function of the film's values of its columns."""
    values = list(zip(*(source.values(c) for c in spec.columns)))
    tokens = _per_value(values, lambda v: spec.token(params, *v))
    return tokens, np.ones(len(tokens), np.int64)


# One tokeniser per kind of group (pipeline.groups): (spec, the films' columns, encode params) -> Flat.
TOKENISERS = {"people": _people_tokens, "list": _list_tokens, "scalar": _scalar_tokens}


def _flat_tokens(frame: pd.DataFrame, params: dict, table: pa.Table | None = None) -> dict[str, Flat]:
    """Every film's tokens per group of pipeline.groups, whole columns at a time (Arrow where it can).
    `table`, if given, holds the list columns (as read from parquet); else they are read from `frame`."""
    source = _Source(frame, table)
    return {spec.name: TOKENISERS[spec.kind](spec, source, params) for spec in groups.SPECS}


def group_tokens(frame: pd.DataFrame, params: dict, table: pa.Table | None = None) -> dict[str, list[list[str]]]:
    """Every film's tokens per group, as one list per film (`encode_frame` numbers the same tokens)."""
    tokens = {}
    for group, (flat, lengths) in _flat_tokens(frame, params, table).items():
        flat = flat.to_pylist() if isinstance(flat, pa.Array) else flat
        ends = np.cumsum(lengths).tolist()
        tokens[group] = [flat[a:b] for a, b in zip([0, *ends], ends)]
    return tokens


def record_tokens(records: list[dict], params: dict) -> list[dict[str, list[str]]]:
    """Each film's tokens per group, for films given as records (`kadn forecast`): the records are made a table
    and go through the tokenisers the encode stage runs, so a film scored gets the tokens it would get
    encoded (a field a record lacks is unknown)."""
    columns = dict.fromkeys(c for s in groups.SPECS for c in s.columns)
    frame = pd.DataFrame({c: [r.get(c) for r in records] for c in columns}, index=range(len(records)))
    tokens = group_tokens(frame, params)
    return [{g: t[i] for g, t in tokens.items()} for i in range(len(records))]


def encode_frame(frame: pd.DataFrame, params: dict, table: pa.Table | None = None
                 ) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Index arrays per group (N x width, 0-padded) and the vocabularies (token list; id = position + 2).
    `table`, if given, holds the list columns (see `_flat_tokens`)."""
    vocab: dict[str, list[str]] = {}
    arrays: dict[str, np.ndarray] = {}
    for group, (flat, lengths) in _flat_tokens(frame, params, table).items():
        # Codes in first-seen order over the films sorted by id: the vocabulary is stable across runs.
        if isinstance(flat, pa.Array):
            encoded = flat.dictionary_encode()
            codes, uniques = encoded.indices.to_numpy(), encoded.dictionary.to_pylist()
        else:
            codes, uniques = pd.factorize(np.array(flat, dtype=object), use_na_sentinel=False)
            uniques = uniques.tolist()
        vocab[group] = uniques
        width = max(1, int(lengths.max(initial=1)))
        arr = np.zeros((len(lengths), width), dtype=np.int32)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        arr[np.repeat(np.arange(len(lengths)), lengths), np.arange(len(codes)) - starts] = codes + 2
        arrays[group] = arr
    return arrays, vocab


def release_int(date, year=None) -> int:
    """'YYYY-MM-DD' / 'YYYY-MM' / 'YYYY' (any form the importer reads) -> YYYYMMDD with 00 for an unknown month
    or day; the year alone when there is no date; 0 when neither is known (track records need the order of
    releases)."""
    try:
        text = parse_date(None if date is None or pd.isna(date) else str(date))
    except RecordError:
        text = None
    if text:
        nums = [int(p) for p in text.split("-")] + [0, 0]
        return nums[0] * 10000 + nums[1] * 100 + nums[2]
    if year is not None and not pd.isna(year):
        return int(year) * 10000
    return 0


def popularity_matrix(frame: pd.DataFrame) -> np.ndarray:
    """log1p of rater, review and short-comment counts; NaN where a count is unknown."""
    cols = [frame[c].astype("Float64").to_numpy(dtype="float64", na_value=np.nan) for c in POPULARITY]
    return np.log1p(np.stack(cols, axis=1)).astype(np.float32)


def run_encode(table: Path, cfg: EncodeConfig, out_dir: Path) -> dict:
    # The plain form is what the tokenisers read, here and from a saved model's vocab.json at prediction.
    params = cfg.model_dump()
    # The list columns go to Arrow as they are; only the scalar ones become a pandas frame (a list cell in
    # pandas is one numpy array per film).
    names = pq.read_schema(table).names
    lists = [c for c in groups.list_columns() if c in names]
    frame = pd.read_parquet(table, columns=[c for c in names if c not in lists])
    list_table = pq.read_table(table, columns=lists)
    if pq.read_metadata(table).num_rows == 0 or not names:
        raise KadnError(f"{table}: the cleaned table is empty")
    arrays, vocab = encode_frame(frame, params, list_table)
    split = make_split(frame, cfg.split)
    counts = {name: int((split == code).sum()) for name, code in SPLITS.items()}
    for name, n in counts.items():
        if n == 0:
            raise KadnError(f"{table}: {len(frame)} films leave the {name} split empty; store more films or "
                            "change the fractions in params.yaml encode.split")
    payload = {f"x_{g}": arrays[g] for g in groups.names()}
    years = frame["year"] if "year" in frame else [None] * len(frame)
    payload.update(
        douban_id=frame["douban_id"].to_numpy(np.int64),
        rating=frame["rating"].to_numpy(np.float32),
        split=split,
        popularity=popularity_matrix(frame),
        release=np.array(_per_value(list(zip(frame["release_date"], years)), lambda dy: release_int(*dy)), np.int32),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "arrays.npz", ".npz") as tmp, tmp.open("wb") as fh:
        np.savez_compressed(fh, **payload)
    digest = hashlib.sha256(json.dumps(vocab, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]
    write_json(out_dir / "vocab.json", {"digest": digest, "groups": vocab})
    n_history = int((split == HISTORY).sum())
    meta = {
        "films": len(frame) - n_history,
        "split": counts,
        "vocab_digest": digest,
        "groups": {g: {"tokens": len(vocab[g]), "width": int(arrays[g].shape[1])} for g in groups.names()},
        "popularity_known": {c: int(np.isfinite(payload["popularity"][:, i]).sum()) for i, c in enumerate(POPULARITY)},
        "params": params,
    }
    if n_history:
        meta["history"] = n_history  # training rows from before the range, beside the `films` of the range
    write_json(out_dir / "meta.json", meta)
    return meta


@dataclass
class Encoded:
    """The encode stage's outputs, loaded with numpy (see `load_encoded`)."""

    x: dict[str, np.ndarray]
    rating: np.ndarray
    split: np.ndarray
    douban_id: np.ndarray
    popularity: np.ndarray
    vocab: dict[str, list[str]]
    params: dict = field(default_factory=dict)
    release: np.ndarray | None = None  # YYYYMMDD (00 = unknown month/day, 0 = unknown); None: encoded before it

    def __len__(self) -> int:
        return len(self.rating)

    def index(self, name: str) -> np.ndarray:
        """The rows of a split; `train` includes the films from before the range (HISTORY)."""
        if name == "train":
            return np.flatnonzero((self.split == SPLITS["train"]) | (self.split == HISTORY))
        return np.flatnonzero(self.split == SPLITS[name])

    @property
    def in_range(self) -> np.ndarray:
        """Rows of films inside the range: the only rows any figure is computed on."""
        return self.split != HISTORY

    def restrict(self, train_rows: np.ndarray, min_count: int, dropped: tuple[str, ...] = ()) -> Restricted:
        """Map tokens seen fewer than `min_count` times in `train_rows` to OOV, renumbered densely; every token
        of a `dropped` group goes to OOV (a saved model then knows none of them either)."""
        maps, freqs, x = {}, {}, {}
        for g, arr in self.x.items():
            size = len(self.vocab[g]) + 2
            counts = np.bincount(arr[train_rows].ravel(), minlength=size)
            counts[PAD] = 0
            if g in dropped:
                counts[:] = 0
            keep = np.flatnonzero(counts >= max(1, min_count))
            keep = keep[keep > OOV]
            remap = np.full(size, OOV, dtype=np.int32)
            remap[PAD] = PAD
            remap[keep] = np.arange(2, 2 + len(keep), dtype=np.int32)
            maps[g] = remap
            x[g] = remap[arr]
            freq = np.bincount(x[g][train_rows].ravel(), minlength=2 + len(keep)).astype(np.float32)
            freq[PAD] = 0
            freqs[g] = freq
        return Restricted(x=x, remap=maps, freq=freqs)


@dataclass
class Restricted:
    """Arrays re-indexed to a training set's vocabulary; `freq[g][i]` counts token i in that set."""

    x: dict[str, np.ndarray]
    remap: dict[str, np.ndarray]
    freq: dict[str, np.ndarray]

    def sizes(self) -> dict[str, int]:
        return {g: len(f) for g, f in self.freq.items()}


def load_encoded(out_dir: str | Path) -> Encoded:
    out_dir = Path(out_dir)
    try:
        with np.load(out_dir / "arrays.npz") as npz:
            data = {name: npz[name] for name in npz.files}
        vocab = json.loads((out_dir / "vocab.json").read_text(encoding="utf-8"))
        meta = json.loads((out_dir / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise KadnError(f"{exc.filename}: missing; run `kadn encode` (or `dvc repro`) first") from None
    if vocab["digest"] != meta["vocab_digest"]:
        raise KadnError(f"{out_dir}: vocab.json does not belong to these arrays (digest "
                        f"{vocab['digest']} != {meta['vocab_digest']}); re-run `kadn encode`")
    groups.require([name[2:] for name in data if name.startswith("x_")], str(out_dir / "arrays.npz"),
                   "re-run `kadn encode`")
    groups.require(vocab["groups"], str(out_dir / "vocab.json"), "re-run `kadn encode`")
    x = {g: data[f"x_{g}"] for g in groups.names()}
    for g in x:
        if x[g].size and int(x[g].max()) >= len(vocab["groups"][g]) + 2:
            raise KadnError(f"{out_dir}: group {g} holds ids beyond its vocabulary; re-run `kadn encode`")
    return Encoded(x=x, rating=data["rating"], split=data["split"], douban_id=data["douban_id"],
                   popularity=data["popularity"], vocab=vocab["groups"], params=meta["params"],
                   release=data.get("release"))
