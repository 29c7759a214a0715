"""`kadn forecast`: score the films that have no usable score yet, with an interval and the reasons.

Which films:
- default: every stored film ($DATABASE_URL) that the clean stage keeps in params.yaml's date range except
  for rule 4 (no score shown, or fewer than `clean.min_votes` raters): the films not out yet. A group
  training would require but the film lacks is reported as unknown instead of dropping the film.
- `--ids 35267208,...`: those stored subjects, scored or not.
- `FILE`: every film of a file in any layout `kadn import` reads, through the importer's own readers.

Every path turns records into scores through `models.predict.score_films`, the scorer of `kadn predict`.
Each score comes with an interval at `forecast.level` (models.conformal) and, in words, what the model did not
know; the attention models also name the people the score leaned on (models.explain). Output: a table on
the terminal, or `-o out.csv|.jsonl|.parquet` (written atomically, chosen by extension).
"""

from __future__ import annotations

import csv
import io
import json
import sys
import unicodedata
from pathlib import Path

import torch

from models import conformal, explain
from models.artifacts import load_model
from models.predict import resolve, score_films
from pipeline import store
from pipeline.clean import apply_rules
from pipeline.errors import KadnError
from pipeline.importer import read_export
from pipeline.io import atomic_path
from pipeline.params import Params, load

FORMATS = (".csv", ".jsonl", ".parquet")
FLAT = ("douban_id", "title", "release_date", "predicted", "low", "high", "level", "known_share", "unknown",
        "unknown_text")


def parse_ids(text: str) -> list[int]:
    ids = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not (part.isascii() and part.isdigit() and len(part) <= 18 and int(part) > 0):
            raise KadnError(f"--ids: {part[:20]!r} is not a Douban subject id (digits, e.g. 35267208)")
        ids.append(int(part))
    if not ids:
        raise KadnError("--ids: no subject id given (e.g. --ids 35267208,1292052)")
    return list(dict.fromkeys(ids))


def unrated(records: list[dict], params: Params) -> list[dict]:
    """The stored films the clean stage would keep but for having no usable score (rule 4)."""
    cfg = params.clean.model_copy(update={"required": []})
    _, removed = apply_rules(records, cfg)
    return sorted(removed["few_raters"], key=lambda r: r["douban_id"])


def select_films(params: Params, file: Path | None, ids: list[int] | None, database_url: str | None
                 ) -> tuple[list[dict], str]:
    """(records to score, where they came from)."""
    if file is not None:
        fmt, records = read_export(file)
        if not records:
            raise KadnError(f"{file}: no film records")
        return records, f"{file} ({fmt})"
    engine = store.connect(database_url, create=False)
    where = engine.url.render_as_string(hide_password=True)
    records = store.load_records(engine)
    if ids is None:
        return unrated(records, params), where
    by_id = {r["douban_id"]: r for r in records}
    missing = [i for i in ids if i not in by_id]
    if missing:
        shown = ",".join(map(str, missing[:20])) + (",..." if len(missing) > 20 else "")
        raise KadnError(f"subject(s) {shown} not stored in {where}; crawl them first: "
                        f"scrapy crawl douban -a ids={shown}")
    return [by_id[i] for i in ids], where


def forecast(films: list[dict], model: str, models_dir: Path, params: Params, with_reasons: bool = True,
             forward: Path | None = None) -> list[dict]:
    """One row per film: score, interval, known share, unknown values (and why, with `with_reasons`). The
    intervals are calibrated on the backtest's forward residuals of the model (`forward`, when it holds
    them: a forecast is a forward prediction), else on its out-of-fold residuals."""
    artifact, output = resolve(model)
    loaded = load_model(models_dir, artifact)
    calibration = conformal.forward(forward, model, params.forecast) if forward is not None else None
    if calibration is None:
        calibration = conformal.for_model(conformal.load(Path(models_dir) / artifact), output, params.forecast)
    if not films:
        return []
    scored = score_films(films, loaded, output)
    known = conformal.known_share(scored.x)
    half = calibration.half_width(known)
    reasons = explain.explain(films, scored.x, loaded, output, scored.tokens) if with_reasons else [{} for _ in films]
    rows = []
    for f, s, h, k, u, why in zip(films, scored.scores, half, known, scored.unknown, reasons):
        rows.append({"douban_id": f.get("douban_id"), "title": f.get("title"), "release_date": f.get("release_date"),
                     "predicted": round(float(s), 3), "low": round(max(0.0, float(s - h)), 3),
                     "high": round(min(10.0, float(s + h)), 3), "level": calibration.level,
                     "known_share": round(float(k), 3), "unknown": sum(u.values()), "unknown_fields": u, **why})
    return rows


def _flat(row: dict) -> dict:
    flat = {k: row.get(k) for k in FLAT}
    if "leaned_on" in row:
        flat["leaned_on"] = "; ".join(f"{g}: " + ", ".join(f"{p['name']} {p['weight']:.2f}" for p in people)
                                      for g, people in row["leaned_on"].items() if people)
    return flat


def write_rows(rows: list[dict], out: Path) -> None:
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise KadnError(f"{out}: unknown output format {out.suffix or '(none)'!r}; name a .csv, .jsonl or "
                        ".parquet file")
    if out.is_dir():
        raise KadnError(f"{out}: is a directory; name a file")
    if suffix == ".jsonl":
        payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    elif suffix == ".csv":
        buf = io.StringIO()
        header = list(FLAT) + (["leaned_on"] if any("leaned_on" in r for r in rows) else [])
        writer = csv.DictWriter(buf, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_flat(r) for r in rows)
        payload = buf.getvalue().encode("utf-8")
    else:
        import pandas as pd  # only the parquet output needs pandas' writer

        frame = pd.DataFrame([_flat(r) for r in rows], columns=list(FLAT) + (
            ["leaned_on"] if any("leaned_on" in r for r in rows) else []))
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        payload = buf.getvalue()
    try:
        with atomic_path(out, suffix) as tmp:
            tmp.write_bytes(payload)
    except OSError as exc:
        raise KadnError(f"{out}: cannot write: {exc.strerror}") from None


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _cut(text: str, width: int) -> str:
    out, used = "", 0
    for ch in text:
        w = _width(ch)
        if used + w > width - (1 if used + w < _width(text) else 0):
            return out + "…"
        out, used = out + ch, used + w
    return out


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def table(rows: list[dict], explained: bool) -> str:
    """The terminal table: one line per film, and with `explained` the reasons under it."""
    level = rows[0]["level"] if rows else 0.8
    header = ["douban_id", "title", "release", "score", f"{level:.0%} interval", "known"]
    widths = [10, 24, 10, 5, 11, 5]
    lines = ["  ".join(_pad(h, w) for h, w in zip(header, widths)).rstrip()]
    for r in rows:
        cells = [str(r["douban_id"] or ""), _cut(r["title"] or "", widths[1]), r["release_date"] or "?",
                 f"{r['predicted']:.2f}", f"{r['low']:.1f} - {r['high']:.1f}", f"{r['known_share']:.0%}"]
        lines.append("  ".join(_pad(c, w) for c, w in zip(cells, widths)).rstrip())
        if explained:
            lines.append(f"    unknown: {r.get('unknown_text', '')}")
            for g, people in (r.get("leaned_on") or {}).items():
                if people:
                    shown = ", ".join(_person(p) for p in people)
                    lines.append(f"    {g} weighed: {shown}")
    return "\n".join(lines) + "\n"


def _person(p: dict) -> str:
    text = f"{p['name']} {p['weight']:.2f}"
    if p.get("films"):
        text += f" ({p['films']} film{'s' if p['films'] > 1 else ''}, mean {p['mean_score']:.1f})"
    elif "films" in p:
        text += " (no scored film)"
    return text


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="score the films with no usable score yet, with intervals and reasons")
    p.add_argument("file", nargs="?", help="score this file's films instead (any layout `kadn import` reads)")
    p.add_argument("--ids", help="score these stored subjects (comma-separated Douban ids) instead")
    p.add_argument("--database-url", help="SQLAlchemy URL of the store (default: $DATABASE_URL, else the shipped "
                   "SQLite file)")
    p.add_argument("--model", default="kadn", help="kadn (the student, default), kadn_teacher, or any trained model")
    p.add_argument("--models", default="artifacts/models", help="where `kadn train` saved the models")
    p.add_argument("--params", default="params.yaml", help="the parameters file (clean range, forecast level)")
    p.add_argument("--forward", help="the backtest's forward predictions (default: backtest/forward.npz beside the "
                   "--models folder): intervals calibrated on them when they hold the model, else out of fold")
    p.add_argument("-o", "--out", help="write the table to this .csv, .jsonl or .parquet file instead")
    p.add_argument("--explain", action="store_true", help="print what was unknown and whom the score leaned on")
    p.set_defaults(func=_main)


def _main(args) -> int:
    if args.file and args.ids:
        raise KadnError("give FILE or --ids, not both")
    params = load(args.params)
    # The configured thread count, as training and evaluation use: on a shared machine more threads than
    # cores made scoring 10,000 films ten times slower.
    torch.set_num_threads(params.train.common.threads)
    ids = parse_ids(args.ids) if args.ids is not None else None
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in FORMATS:
        raise KadnError(f"{out}: unknown output format {out.suffix or '(none)'!r}; name a .csv, .jsonl or .parquet file")
    films, where = select_films(params, Path(args.file) if args.file else None, ids, args.database_url)
    # Files always carry the reasons (JSONL as fields, CSV/Parquet as text columns); the terminal on --explain.
    forward = Path(args.forward) if args.forward else Path(args.models).parent / "backtest" / "forward.npz"
    rows = forecast(films, args.model, Path(args.models), params, with_reasons=args.explain or out is not None,
                    forward=forward)
    calibrated = "forward" if conformal.forward(forward, args.model, params.forecast) else "out of fold"
    if out is not None:
        write_rows(rows, out)
        print(f"forecast: {len(rows)} films from {where} -> {out}", file=sys.stderr)
        return 0
    if not rows:
        print(f"forecast: no film to score in {where}" + ("" if args.file or args.ids else
              f": none in {params.clean.date_min}..{params.clean.date_max} lacks a usable score (rating shown, "
              f"{params.clean.min_votes}+ raters); name films with --ids or FILE"), file=sys.stderr)
        return 0
    sys.stdout.write(table(rows, args.explain))
    print(f"forecast: {len(rows)} films from {where}; intervals hold the real score for about "
          f"{rows[0]['level']:.0%} of films (calibrated {calibrated})", file=sys.stderr)
    return 0
