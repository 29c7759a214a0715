"""The one scorer of saved models (`kadn forecast`, and `kadn predict`, its alias) and the reader of films to
score from a file.

A file is read in any layout `kadn import` reads, through the importer's row readers and its record check, so
a film is valid here exactly when it could be imported. Unlike an import, a row may lack its Douban id (a
slate, or a casting choice not on Douban yet): it is labelled by its title and line. Repeated ids are not
merged: every row is a film as written, scored as it is (two castings of one film get two scores).
People and values the model never saw fall back to the out-of-vocabulary ids, and each film says how many of
its feature values were unknown. A model trained with dense inputs gets them too: track records from its own
training films (a film not out yet counts as released after all of them), and the popularity counts when the
record holds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.serving.artifacts import SavedModel, load_model, token_ids
from models.training import track_records
from models.training.config import REPORTED
from models.training.data import DENSE, saved_dense
from models.training.trend import saved_offset
from pipeline import groups
from pipeline.errors import KadnError, RecordError
from pipeline.exchange import importer
from pipeline.features.encode import OOV, POPULARITY, record_tokens, release_int
from pipeline.film.records import normalise_record, short

# Stands in for a missing Douban id while the importer's record check reads the row (put back to None after).
_NO_ID = 1


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def read_films(path: str | Path, ignore_unknown: bool = False) -> list[dict]:
    """Every film of the file as a canonical record plus `line` (its line, or its position in a JSON array);
    `douban_id` None where the row has none. Any bad row: one KadnError naming file, line and field."""
    path = Path(path)
    fmt, rows, convert = importer.read_rows(path, ignore_unknown=ignore_unknown, ids_optional=True)
    films = []
    for line, row in rows:
        if not isinstance(row, dict):
            raise KadnError(f"{path}:{line}: expected a JSON object per line")
        try:
            raw = convert(row)
            no_id = _blank(raw.get("douban_id"))
            film = normalise_record({**raw, "douban_id": _NO_ID} if no_id else raw)
        except RecordError as exc:
            raise importer.record_error(path, fmt, line, exc) from None
        films.append({**film, "douban_id": None if no_id else film["douban_id"], "line": line})
    if not films:
        raise KadnError(f"{path}: no film records")
    return films


def encode_films(films: list[dict], vocab: dict, tokens: list[dict] | None = None
                 ) -> tuple[dict[str, np.ndarray], list[dict[str, int]]]:
    """Model-id arrays per group, and per film the count of unknown values per group (`tokens`: the films'
    `record_tokens`, when already made)."""
    tokens = tokens if tokens is not None else record_tokens(films, vocab["encode_params"])
    x, unknown = {}, [dict() for _ in films]
    for g in groups.names():
        width = max(1, max(len(t[g]) for t in tokens))
        arr = np.zeros((len(films), width), dtype=np.int32)
        for i, t in enumerate(tokens):
            ids = token_ids(vocab, g, t[g])
            arr[i, : len(ids)] = ids
            misses = sum(1 for tok, j in zip(t[g], ids) if j == OOV or tok == groups.UNKNOWN)
            if misses:
                unknown[i][g] = misses
        x[g] = arr
    return x, unknown


def film_dense(films: list[dict], vocab: dict, tokens: list[dict] | None = None) -> np.ndarray:
    """The dense inputs of a model trained with some, for these films (NaN -> missing flag where unknown)."""
    counts = np.array([[f.get(c) if isinstance(f.get(c), (int, float)) else np.nan for c in POPULARITY]
                       for f in films], np.float64)
    track = None
    if vocab.get("track"):
        if tokens is None:
            tokens = record_tokens(films, vocab["encode_params"])
        # As in encode: the date, else the year alone; a film with neither counts as later than every training film.
        release = np.array([release_int(f["release_date"], f.get("year")) or track_records.AFTER_ALL for f in films])
        track = track_records.from_payload(vocab["track"], {r: [t[r] for t in tokens] for r in track_records.ROLES},
                                           release, [_int_id(f.get("douban_id")) for f in films])
    return saved_dense(vocab, np.log1p(counts), track)


def _int_id(value) -> int | None:
    """A Douban id as the store keeps it ("123" and 123 are one film: a training film must get its out-of-fold
    track record, never one holding its own score)."""
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


@dataclass
class Scored:
    """Films scored by a saved model: its inputs (model ids), the scores and the unknown values per group."""

    films: list[dict]
    tokens: list[dict[str, list[str]]]
    x: dict[str, np.ndarray]
    scores: np.ndarray
    unknown: list[dict[str, int]]


def score_films(films: list[dict], loaded: SavedModel, output: str) -> Scored:
    """The one scorer of `kadn forecast` (and `kadn predict`): checked records -> the model's inputs -> scores."""
    tokens = record_tokens(films, loaded.vocab["encode_params"])
    x, unknown = encode_films(films, loaded.vocab, tokens)
    if loaded.vocab.get("dense"):
        x[DENSE] = film_dense(films, loaded.vocab, tokens)
    release = np.array([release_int(f.get("release_date"), f.get("year")) for f in films], np.int64)
    scores = np.asarray(loaded.score(x, output), np.float64) + saved_offset(loaded.vocab, release)
    bad = np.flatnonzero(~np.isfinite(scores))
    if len(bad):  # NaN is no score (and not JSON): a model giving one is damaged, however it passed its checks
        i = int(bad[0])
        ident = films[i].get("douban_id")
        film = f"film {i + 1}" + ("" if ident is None else f" (douban_id {short(ident)})")
        raise KadnError(f"model {loaded.name} scores {film} as {scores[i]}; retrain with `kadn train {loaded.name}`")
    return Scored(films, tokens, x, scores, unknown)


def resolve(model: str) -> tuple[str, str]:
    """A reported model name -> (its folder under --models, its output)."""
    if model not in REPORTED:
        raise KadnError(f"unknown model {model!r}; choose one of {', '.join(REPORTED)}")
    return REPORTED[model]


def predict(path: str | Path, model: str, models_dir: Path, ignore_unknown: bool = False) -> list[dict]:
    """A file's films scored by a saved model, without interval, reasons or ledger (what `kadn forecast FILE`
    prints adds those): douban_id, title, predicted, and the unknown values (count, and per group)."""
    artifact, output = resolve(model)
    films = read_films(path, ignore_unknown)
    scored = score_films(films, load_model(models_dir, artifact), output)
    return [{"douban_id": f["douban_id"], "title": f["title"], "predicted": round(float(s), 3),
             "unknown": sum(u.values()), "unknown_fields": u}
            for f, s, u in zip(films, scored.scores, scored.unknown)]
