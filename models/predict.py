"""`kadn predict FILE`: score films that are not out yet, from records in the export's field names.

FILE holds JSON (one object or a list) or JSONL. Each film needs the fields the features come from (null
where unknown); `rating` is not needed. People and values the model never saw fall back to the
out-of-vocabulary ids, and each output line says how many of the film's feature values were unknown.
A model trained with dense inputs gets them too: track records from its own training films (a film not out
yet counts as released after all of them), and the popularity counts when the record holds them.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import track_records
from models.artifacts import SavedModel, load_model, token_ids
from models.config import REPORTED
from models.data import DENSE, saved_dense
from models.trend import saved_offset
from pipeline.encode import GROUPS, OOV, PEOPLE, POPULARITY, film_tokens, release_int
from pipeline.errors import KadnError, RecordError
from pipeline.records import parse_date

REQUIRED = ("directors", "writers", "actors", "genres", "countries", "languages", "runtime_min", "release_date")
LIST_FIELDS = ("directors", "writers", "actors", "genres", "countries", "languages")


def read_films(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KadnError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise KadnError(f"{path}: not UTF-8 text") from None
    stripped = text.strip()
    if not stripped:
        raise KadnError(f"{path}: empty; expected JSON or JSONL film records")
    try:
        data = json.loads(stripped)
        films = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        films = []
        for n, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                films.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise KadnError(f"{path}:{n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not films:
        raise KadnError(f"{path}: no film records (an empty list)")
    return [check_film(film, f"{path}: film {i}") for i, film in enumerate(films, 1)]


def _short(value) -> str:
    """A bad value as an error line quotes it: its repr, cut to a short prefix."""
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _number(value) -> bool:
    """A finite JSON number (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def check_film(film, where: str) -> dict:
    """The film if every field the features read is usable, with its date in the canonical form; else a
    KadnError naming the film and the field."""
    if not isinstance(film, dict):
        raise KadnError(f"{where}: expected an object with the export's fields, got {type(film).__name__}")
    ident = film.get("douban_id")
    label = f"{where} (douban_id {_short(ident)})" if ident is not None else where
    missing = [f for f in REQUIRED if f not in film]
    if missing:
        raise KadnError(f"{label}: missing field(s) {', '.join(missing)} (use null when unknown)")

    def bad(field: str, expected: str):
        return KadnError(f"{label}: field '{field}' must be {expected}, not {_short(film[field])}")

    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, (str, int))):
        raise bad("douban_id", "a number, a string or null")
    if film.get("title") is not None and not isinstance(film["title"], str):
        raise bad("title", "a string or null")
    for f in LIST_FIELDS:
        value = film[f]
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise bad(f, "a list of strings or null")
    for group in PEOPLE:
        f = group[:-1] + "_ids"
        ids = film.get(f)
        if ids is None:
            continue
        # Ids pair with names by position: a list of another length would drop people or mislabel them.
        names = film[group] or []
        if not (isinstance(ids, list) and all(v is None or (isinstance(v, (str, int)) and not isinstance(v, bool))
                                              for v in ids)):
            raise bad(f, f"a list of ids (string, number or null), one per name in '{group}', or null")
        if ids and len(ids) != len(names):
            raise KadnError(f"{label}: field '{f}' holds {len(ids)} ids for {len(names)} names in '{group}'")
    runtime = film["runtime_min"]
    if runtime is not None and (not _number(runtime) or runtime < 0):
        raise bad("runtime_min", "a number of minutes or null")
    for f in POPULARITY:
        if film.get(f) is not None and (not _number(film[f]) or film[f] < 0):
            raise bad(f, "a count (a number >= 0) or null")
    film = dict(film)
    date = film["release_date"]
    if date is not None:
        try:
            if not isinstance(date, str):
                raise RecordError("release_date", "")
            film["release_date"] = parse_date(date)
        except RecordError:
            raise bad("release_date", "a date 'YYYY-MM-DD', 'YYYY-MM', 'YYYY' or null") from None
    year = film.get("year")
    if year is not None:
        if isinstance(year, str) and year.strip().isdigit() and len(year.strip()) == 4:
            film["year"] = int(year)
        elif isinstance(year, bool) or not isinstance(year, int) or not 1000 <= year <= 9999:
            raise bad("year", "a year such as 2019 or null")
    return film


def encode_films(films: list[dict], vocab: dict, tokens: list[dict] | None = None
                 ) -> tuple[dict[str, np.ndarray], list[dict[str, int]]]:
    """Model-id arrays per group, and per film the count of unknown values per group (`tokens`: the films'
    `film_tokens`, when already made)."""
    params = vocab["encode_params"]
    tokens = tokens if tokens is not None else [film_tokens(f, params) for f in films]
    x, unknown = {}, [dict() for _ in films]
    for g in GROUPS:
        width = max(1, max(len(t[g]) for t in tokens))
        arr = np.zeros((len(films), width), dtype=np.int32)
        for i, t in enumerate(tokens):
            ids = token_ids(vocab, g, t[g])
            arr[i, : len(ids)] = ids
            misses = sum(1 for tok, j in zip(t[g], ids) if j == OOV or tok == "unknown")
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
            tokens = [film_tokens(f, vocab["encode_params"]) for f in films]
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
    """The one scorer of `kadn predict` and `kadn forecast`: checked records -> the model's inputs -> scores."""
    tokens = [film_tokens(f, loaded.vocab["encode_params"]) for f in films]
    x, unknown = encode_films(films, loaded.vocab, tokens)
    if loaded.vocab.get("dense"):
        x[DENSE] = film_dense(films, loaded.vocab, tokens)
    release = np.array([release_int(f.get("release_date"), f.get("year")) for f in films], np.int64)
    scores = np.asarray(loaded.score(x, output), np.float64) + saved_offset(loaded.vocab, release)
    return Scored(films, tokens, x, scores, unknown)


def resolve(model: str) -> tuple[str, str]:
    """A reported model name -> (its folder under --models, its output)."""
    if model not in REPORTED:
        raise KadnError(f"unknown model {model!r}; choose one of {', '.join(REPORTED)}")
    return REPORTED[model]


def predict(path: Path, model: str, models_dir: Path) -> list[dict]:
    artifact, output = resolve(model)
    try:
        films = read_films(path)
    except RecursionError:
        raise KadnError(f"{path}: JSON nested too deeply to read") from None
    except ValueError as exc:  # not a JSONDecodeError: json's limit on the digits of an integer
        raise KadnError(f"{path}: unreadable JSON ({_short(str(exc))})") from None
    scored = score_films(films, load_model(models_dir, artifact), output)
    return [{"douban_id": f.get("douban_id"), "title": f.get("title"), "predicted": round(float(s), 3),
             "unknown": sum(u.values()), "unknown_fields": u}
            for f, s, u in zip(films, scored.scores, scored.unknown)]


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="score films (JSON/JSONL in the export's field names) with a trained model")
    p.add_argument("file", help="JSON or JSONL film records; rating not needed")
    p.add_argument("--model", default="kadn", help=f"kadn (the student, default), kadn_teacher, or any of "
                   f"{', '.join(m for m in REPORTED if m not in ('kadn', 'kadn_teacher'))}")
    p.add_argument("--models", default="artifacts/models", help="where `kadn train` saved the models")
    p.add_argument("--format", choices=("tsv", "jsonl"), default="tsv", help="output format")
    p.set_defaults(func=_main)


def _main(args) -> int:
    rows = predict(Path(args.file), args.model, Path(args.models))
    out = sys.stdout
    if args.format == "jsonl":
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
        return 0
    # The csv module quotes a title holding a tab, a quote or a line break, so every film stays one record.
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(["douban_id", "title", "predicted", "unknown", "unknown_fields"])
    for r in rows:
        detail = ",".join(f"{g}:{n}" for g, n in r["unknown_fields"].items()) or "-"
        writer.writerow(["" if r["douban_id"] is None else r["douban_id"], r["title"] or "", f"{r['predicted']:.2f}",
                         r["unknown"], detail])
    return 0
