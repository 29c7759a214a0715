"""`kadn forecast` (and `kadn predict`, its alias): score films, with an interval and the reasons.

Which films:
- default: every stored film ($DATABASE_URL) with no usable score, whatever its date: no score shown, or
  fewer than `clean.min_votes` raters (the clean stage's rule 4). `--since DATE` keeps those released on or
  after DATE.
- `--ids 35267208,...`: those stored subjects, scored or not (only those without a usable score are recorded).
- `FILE`: every row of a file in any layout `kadn import` reads (models.serving.predict.read_films), with or without
  Douban ids; a row without one is labelled by its title and line.

Every path turns records into scores through `models.serving.predict.score_films`. Each score comes with an interval
at `forecast.level` (models.training.conformal) and, in words, what the model did not know; the attention models also
name the people the score leaned on (models.serving.explain). The stacked blend (`--model blend`,
models.serving.saved_blend) scores with each of its members and sums them with its weights; each row then names
the members' scores. Output: a table on the terminal, or `-o out.csv|.jsonl|.parquet` (written atomically, chosen
by extension).
"""

from __future__ import annotations

import hashlib
import json
import sys
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from models.serving import explain
from models.serving.artifacts import SavedModel, load_model
from models.serving.predict import read_films, score_films
from models.serving.saved_blend import NAME as BLEND
from models.serving.saved_blend import OUTPUT as BLEND_OUTPUT
from models.serving.saved_blend import SavedBlend, load_blend
from models.serving.tables import check_target, write_table
from models.training import conformal
from models.training.config import REPORTED
from models.training.runtime import runtime
from pipeline import groups
from pipeline.errors import KadnError, RecordError
from pipeline.features import rules
from pipeline.film import store
from pipeline.film.records import date_sort_key, parse_date, short
from pipeline.params import Params, load

SCALE = (0.0, 10.0)  # Douban's scores
FLAT = ("douban_id", "line", "title", "release_date", "predicted", "low", "high", "level", "known_share", "unknown",
        "unknown_text")


def parse_ids(text: str) -> list[int]:
    ids = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not (part.isascii() and part.isdigit() and len(part) <= 18 and int(part) > 0):
            raise KadnError(f"--ids: {short(part, 20)} is not a Douban subject id (digits, e.g. 35267208)")
        ids.append(int(part))
    if not ids:
        raise KadnError("--ids: no subject id given (e.g. --ids 35267208,1292052)")
    return list(dict.fromkeys(ids))


def unscored(records: list[dict], params: Params, since: str | None = None) -> list[dict]:
    """The stored films with no usable score (the clean stage's rule 4), whatever their date; with `since`,
    only those released on or after it (a film without a date is left out then)."""
    low = date_sort_key(since) if since else None
    no_score = rules.rule("few_raters").drops

    def wanted(r: dict) -> bool:
        if not no_score(r, params.clean):
            return False
        return low is None or (r["release_date"] is not None and date_sort_key(r["release_date"]) >= low)

    return sorted(filter(wanted, records), key=lambda r: r["douban_id"])


def parse_since(text: str) -> str:
    try:
        date = parse_date(text, "--since")
    except RecordError as exc:
        raise KadnError(f"--since: {exc.message}") from None
    if date is None:
        raise KadnError("--since: no date given (e.g. --since 2026-01-01)")
    return date


def select_films(params: Params, file: Path | None, ids: list[int] | None, database_url: str | None,
                 since: str | None = None, ignore_unknown: bool = False) -> tuple[list[dict], str]:
    """(records to score, where they came from)."""
    if file is not None:
        return read_films(file, ignore_unknown), str(file)
    engine = store.connect(database_url, create=False)
    where = engine.url.render_as_string(hide_password=True)
    records = store.load_records(engine)
    if ids is None:
        return unscored(records, params, since), where
    by_id = {r["douban_id"]: r for r in records}
    missing = [i for i in ids if i not in by_id]
    if missing:
        shown = ",".join(map(str, missing[:20])) + (",..." if len(missing) > 20 else "")
        raise KadnError(f"subject(s) {shown} not stored in {where}; crawl them first: "
                        f"scrapy crawl douban -a ids={shown}")
    return [by_id[i] for i in ids], where


def parse_swap(text: str) -> tuple[str, str, str, str | None]:
    """"actors:OLD=NEW" (NEW may end in #PERSONID) -> (group, old, new name, new person id)."""
    group, _, rest = text.partition(":")
    old, _, new = rest.partition("=")
    name, _, pid = new.partition("#")
    swappable = groups.names("people", "list")
    if group not in swappable or not old.strip() or not name.strip() or (pid and not pid.isdigit()):
        raise KadnError(f"--swap {short(text, 60)}: expected GROUP:OLD=NEW with GROUP one of {', '.join(swappable)}"
                        " (a person's Douban id may follow NEW: actors:白客=刘昊然#1274297)")
    return group, old.strip(), name.strip(), pid or None


def swapped(film: dict, swaps: list[tuple[str, str, str, str | None]]) -> dict:
    """The film with each OLD value of its group replaced by NEW; a film lacking an OLD value: one line."""
    changed = dict(film)
    for group, old, new, pid in swaps:
        spec = groups.spec(group)
        column = spec.columns[0]
        values = list(changed.get(column) or [])
        if old not in values:
            raise KadnError(f"--swap {group}:{old}: film {label(film)} ({film.get('title')}) lists no such "
                            f"{spec.word} (it lists {', '.join(values) or 'none'})")
        j = values.index(old)
        values[j] = new
        changed[column] = values
        if spec.kind == "people":
            ids = list(changed.get(spec.columns[1]) or [None] * len(values))
            ids[j] = pid
            changed[spec.columns[1]] = ids
    return changed


def what_if(films: list[dict], swaps: list[str], model: str | Forecaster, models_dir: Path, params: Params,
            with_reasons: bool, with_effects: bool, forward: Path | None = None) -> list[dict]:
    """Each film's forecast followed by its forecast with the swaps made (`what_if`, `change`: the difference)."""
    parsed = [parse_swap(s) for s in swaps]
    changed = [swapped(f, parsed) for f in films]
    spec = ", ".join(swaps)
    ready = model if isinstance(model, Forecaster) else prepare(model, models_dir, params, forward)
    rows = []
    for before, after in zip(forecast(films, ready, models_dir, params, with_reasons, with_effects),
                             forecast(changed, ready, models_dir, params, with_reasons, with_effects)):
        rows += [before, {**after, "what_if": spec, "change": round(after["predicted"] - before["predicted"], 3)}]
    return rows


@dataclass
class Forecaster:
    """A model loaded with its interval calibration: what scoring films needs, read once per command."""

    name: str
    output: str
    model: SavedModel | SavedBlend
    calibration: conformal.Calibration
    calibrated: str  # "forward" (the backtest's residuals) or "out of fold"


def prepare(model: str, models_dir: Path, params: Params, forward: Path | None = None) -> Forecaster:
    """Load `model` and its calibration: on the backtest's forward residuals of the model (`forward`, when it
    holds them: a forecast is a forward prediction), else on its out-of-fold residuals."""
    artifact, output = model_folder(model)
    # The blend refuses itself when a member changed since it was fitted.
    loaded = load_blend(models_dir) if model == BLEND else load_model(models_dir, artifact)
    calibration = conformal.forward(forward, model, params.forecast) if forward is not None else None
    if calibration is not None:
        return Forecaster(model, output, loaded, calibration, "forward")
    oof = conformal.for_model(conformal.load(Path(models_dir) / artifact), output, params.forecast)
    return Forecaster(model, output, loaded, oof, "out of fold")


def forecast(films: list[dict], model: str | Forecaster, models_dir: Path, params: Params, with_reasons: bool = True,
             with_effects: bool | None = None, forward: Path | None = None) -> list[dict]:
    """One row per film: score, interval, known share, unknown values (and what was unknown, with
    `with_reasons`; the effects in score points too, with `with_effects`, by default as `with_reasons`). The
    intervals as `prepare` calibrates them (`model` may be its result, loaded once for several calls). The
    blend's rows also carry `members`: each member's weight and score."""
    ready = model if isinstance(model, Forecaster) else prepare(model, models_dir, params, forward)
    output, calibration = ready.output, ready.calibration
    if not films:
        return []
    effects = with_reasons if with_effects is None else with_effects
    if ready.name == BLEND:
        blend = ready.model
        # Each member scores as it does alone (its own trend offset included).
        each = [score_films(films, m.model, m.output) for m in blend.members]
        scores = blend.intercept + sum(m.weight * s.scores for m, s in zip(blend.members, each))
        scored = each[0]  # the blend's known share is its first member's, as in the backtest
        reasons = (explain.explain_blend(each, [m.model for m in blend.members], [m.output for m in blend.members],
                                         [m.weight for m in blend.members], effects)
                   if with_reasons else [{} for _ in films])
        extra = [{"members": {m.name: {"weight": round(m.weight, 3), "score": round(float(s.scores[i]), 3)}
                              for m, s in zip(blend.members, each)}, "intercept": round(blend.intercept, 3)}
                 for i in range(len(films))]
    else:
        loaded = ready.model
        scored = score_films(films, loaded, output)
        scores = scored.scores
        reasons = explain.explain(scored, loaded, output, effects) if with_reasons else [{} for _ in films]
        extra = [{} for _ in films]
    known = conformal.known_share(scored.x)
    half = calibration.half_width(known)
    rows = []
    low, high = SCALE
    # A score and its interval stay on Douban's scale: the blend's weights, fitted forward, stretch its
    # members' scores (they add up to more than 1), so a film every member rates near the top could pass 10.
    scores = np.clip(np.asarray(scores, np.float64), low, high)
    for f, s, h, k, u, why, more in zip(films, scores, half, known, scored.unknown, reasons, extra):
        rows.append({"douban_id": f.get("douban_id"), "line": f.get("line"), "title": f.get("title"),
                     "release_date": f.get("release_date"), "predicted": round(float(s), 3),
                     "low": round(max(low, float(s - h)), 3), "high": round(min(high, float(s + h)), 3),
                     "level": calibration.level,
                     "known_share": round(float(k), 3), "unknown": sum(u.values()), "unknown_fields": u, **why,
                     **more})
    return rows


def model_folder(model: str) -> tuple[str, str]:
    """A model name of `--model` -> (its folder under --models, its output): a reported row, or the blend."""
    if model == BLEND:
        return BLEND, BLEND_OUTPUT
    if model not in REPORTED:
        raise KadnError(f"unknown model {model!r}; choose one of {', '.join([*REPORTED, BLEND])}")
    return REPORTED[model]


def model_digest(folder: Path) -> str:
    """sha256 over the model folder's files (relative path and bytes of each, in sorted order): a retrained
    model gets another digest, the same one copied elsewhere keeps it."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def record(rows: list[dict], model: str, models_dir: Path, database_url: str | None) -> int:
    """Write the forecasts of stored films to the store's ledger, dated today (UTC)."""
    digest = model_digest(Path(models_dir) / model_folder(model)[0])
    today = datetime.now(timezone.utc).date()
    entries = [{"douban_id": r["douban_id"], "made_on": today, "model": model, "digest": digest,
                "score": r["predicted"], "low": r["low"], "high": r["high"], "level": r["level"],
                "known_share": r["known_share"]} for r in rows]
    return store.record_forecasts(store.connect(database_url, create=False), entries)


def _flat(row: dict) -> dict:
    flat = {k: row.get(k) for k in FLAT}
    if "members" in row:
        flat["members"] = members_text(row["members"])
    if "what_if" in row:
        flat.update(what_if=row["what_if"], change=row["change"])
    if "effects" in row:
        flat["effects"] = effects_text(row["effects"])
        flat["people"] = "; ".join(f"{g}: " + ", ".join(map(_person, people))
                                   for g, people in row["people"].items() if people)
    return flat


def write_rows(rows: list[dict], out: Path) -> None:
    columns = list(FLAT) + (["members"] if any("members" in r for r in rows) else []) + (
        ["effects", "people"] if any("effects" in r for r in rows) else []) + (
        ["what_if", "change"] if any("what_if" in r for r in rows) else [])
    write_table(rows, out, columns, _flat)


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
        cells = [label(r), _cut(r["title"] or "", widths[1]), r["release_date"] or "?",
                 f"{r['predicted']:.2f}", f"{r['low']:.1f} - {r['high']:.1f}", f"{r['known_share']:.0%}"]
        lines.append("  ".join(_pad(c, w) for c, w in zip(cells, widths)).rstrip())
        if "what_if" in r:
            lines.append(f"    what if {r['what_if']}: {r['predicted'] - r['change']:.2f} -> {r['predicted']:.2f} "
                         f"({r['change']:+.2f})")
        if explained:
            if "members" in r:
                lines.append(f"    members: {members_text(r['members'])}, intercept {r['intercept']:+.2f}")
            lines.append(f"    unknown: {r.get('unknown_text', '')}")
            if "effects" in r:
                lines.append(f"    effect of knowing: {effects_text(r['effects'])}")
            for g, people in (r.get("people") or {}).items():
                if people:
                    lines.append(f"    {g}: {', '.join(map(_person, people))}")
    return "\n".join(lines) + "\n"


def label(row: dict) -> str:
    """A film's name in the id column: its Douban id, else (a file row without one) its line."""
    return str(row["douban_id"]) if row["douban_id"] is not None else f"line {row.get('line')}"


def effects_text(effects: dict[str, float]) -> str:
    return ", ".join(f"{g} {e:+.2f}" for g, e in effects.items())


def members_text(members: dict[str, dict]) -> str:
    """"svm 7.12 x 0.40, kadn 6.98 x 0.26": each blend member's score and weight."""
    return ", ".join(f"{name} {m['score']:.2f} x {m['weight']:.2f}" for name, m in members.items())


def _person(p: dict) -> str:
    """"饺子 +0.42 (1 film, mean 8.4; too few for an embedding)": the effect, then the model's view of them."""
    notes = []
    if p.get("films"):
        notes.append(f"{p['films']} film{'s' if p['films'] > 1 else ''}, mean {p['mean_score']:.1f}")
    elif "films" in p:
        notes.append("no scored film")
    if not p["embedding"]:
        notes.append("too few for an embedding" if p.get("films") else "unknown to the model")
    return f"{p['name']} {p['effect']:+.2f}" + (f" ({'; '.join(notes)})" if notes else "")


def best_forward(models_dir: Path, backtest: Path | None = None) -> tuple[str, str]:
    """(model, why): the row with the lowest forward-backtest MAE (the mean over the backtest years, from the
    backtest stage's fragment beside `models_dir`) among those saved under `models_dir`, the stacked blend
    included; the K-ADN student when there is no backtest to go by."""
    path = backtest or Path(models_dir).parent / "metrics" / "backtest.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8")).get("backtest", {})
    except (OSError, ValueError, AttributeError):
        return "kadn", f"no forward backtest at {path}: the K-ADN student"
    maes = {}
    for name, figures in rows.items():
        mae = figures.get("mean", {}).get("mae") if isinstance(figures, dict) else None
        if isinstance(mae, int | float) and saved(Path(models_dir), name):
            maes[name] = mae
    if not maes:
        return "kadn", f"no trained model in {path}: the K-ADN student"
    best = min(maes, key=lambda m: (maes[m], m))
    return best, f"best forward-backtest MAE of the saved models ({maes[best]:.3f}, {path})"


def saved(models_dir: Path, name: str) -> bool:
    """Whether row `name` of the backtest is a model saved under `models_dir` (a folder with model.json: not
    one whose feature set was skipped)."""
    if name != BLEND and name not in REPORTED:
        return False
    return (models_dir / model_folder(name)[0] / "model.json").is_file()


def register(sub, name: str) -> None:
    summary = "score the films with no usable score yet, with intervals and reasons"
    p = sub.add_parser(name, help=summary if name == "forecast" else "alias of `kadn forecast`")
    p.add_argument("file", nargs="?", help="score this file's films instead (any layout `kadn import` reads; "
                   "rows without a Douban id are labelled by line)")
    p.add_argument("--ids", help="score these stored subjects (comma-separated Douban ids) instead")
    p.add_argument("--since", help="only the stored films released on or after this date (YYYY[-MM[-DD]])")
    p.add_argument("--database-url", help="SQLAlchemy URL of the store (default: $DATABASE_URL, else the shipped "
                   "SQLite file)")
    p.add_argument("--model", default="auto", help="auto: the saved model best in the forward backtest (backtest.json "
                   "beside --models; the K-ADN student without one); or kadn (the student), kadn_teacher, blend (the "
                   "stacked blend of `kadn blend`), or any trained model")
    p.add_argument("--models", default="artifacts/models", help="where `kadn train` saved the models")
    p.add_argument("--params", default="params.yaml", help="the parameters file (rule 4's raters, forecast level)")
    p.add_argument("--forward", help="the backtest's forward predictions (default: backtest/forward.npz beside the "
                   "--models folder): intervals calibrated on them when they hold the model, else out of fold")
    p.add_argument("-o", "--out", help="write the table to this .csv, .jsonl or .parquet file instead")
    p.add_argument("--explain", action="store_true", help="print what was unknown and whom the score leaned on")
    p.add_argument("--ignore-unknown", action="store_true", help="FILE: leave out columns or keys no layout knows "
                   "instead of refusing the file")
    p.add_argument("--swap", action="append", metavar="GROUP:OLD=NEW", help="what if: also score each film with "
                   "OLD replaced by NEW (e.g. actors:白客=刘昊然#1274297; repeat for several); needs --ids or FILE")
    p.add_argument("--no-record", action="store_true", help="do not add the stored films' forecasts to the "
                   "store's ledger (read by `kadn scorecard`)")
    p.set_defaults(func=_main)


def _main(args) -> int:
    if sum(map(bool, (args.file, args.ids, args.since))) > 1:
        raise KadnError("give one of FILE, --ids or --since")
    params = load(args.params)
    common = params.train.common
    # The configured thread count, as training and evaluation use: on a shared machine more threads than
    # cores made scoring 10,000 films ten times slower.
    with runtime(seed=common.seed, threads=common.threads):
        return _forecast(args, params)


def _forecast(args, params: Params) -> int:
    ids = parse_ids(args.ids) if args.ids is not None else None
    since = parse_since(args.since) if args.since is not None else None
    out = Path(args.out) if args.out else None
    chosen = ""
    if args.model == "auto":
        args.model, why = best_forward(Path(args.models))
        chosen = f"; model {args.model}: {why}"
    if out is not None:
        check_target(out)
    if args.swap and not (args.file or ids):
        raise KadnError("--swap needs the films named: --ids or FILE")
    films, where = select_films(params, Path(args.file) if args.file else None, ids, args.database_url, since,
                                args.ignore_unknown)
    # Files always say what was unknown (JSONL as fields, CSV/Parquet as text columns); the effects, about 20
    # scorings per film, only on --explain, as the terminal.
    reasons = args.explain or out is not None
    forward = Path(args.forward) if args.forward else Path(args.models).parent / "backtest" / "forward.npz"
    if args.forward and not forward.is_file():  # only the default may be absent (then out-of-fold residuals)
        raise KadnError(f"--forward {forward}: no such file; `kadn backtest --forward FILE` writes one")
    ready = prepare(args.model, Path(args.models), params, forward)
    rows = (what_if(films, args.swap, ready, Path(args.models), params, reasons, args.explain)
            if args.swap else forecast(films, ready, Path(args.models), params, reasons, args.explain))
    calibrated = ready.calibrated
    # Stored films only: a file's row is the user's version of a film (or no film of Douban's yet), and a
    # what-if is no forecast of the film. Nor is a score made once the film's own is out (--ids may name such
    # films): only films still without a usable score enter the ledger the scorecard judges.
    real = [r for r in rows if "what_if" not in r]
    recorded, ledgered = 0, real
    if not (args.file or args.no_record):
        pending = {f["douban_id"] for f in unscored(films, params)}
        ledgered = [r for r in real if r["douban_id"] in pending]
        recorded = record(ledgered, args.model, Path(args.models), args.database_url)
    where += f"; {recorded} recorded in the ledger" if recorded else ""
    if len(ledgered) < len(real):
        where += f"; {len(real) - len(ledgered)} already rated, not recorded (a forecast is made before the score)"
    if out is not None:
        write_rows(rows, out)
        print(f"forecast: {len(real)} films from {where} -> {out}{chosen}", file=sys.stderr)
        return 0
    if not rows:
        print(f"forecast: no film to score in {where}: none" + (f" released since {since}" if since else "") +
              f" lacks a usable score (rating shown, {params.clean.min_votes}+ raters); name films with --ids or "
              "FILE", file=sys.stderr)
        return 0
    sys.stdout.write(table(rows, args.explain))
    print(f"forecast: {len(real)} films from {where}; intervals hold the real score for about "
          f"{rows[0]['level']:.0%} of films (calibrated {calibrated}){chosen}", file=sys.stderr)
    return 0
