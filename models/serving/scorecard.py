"""`kadn scorecard`: how the recorded forecasts did, once the films' scores appeared.

`kadn forecast` records each forecast it prints for a stored film in the store's ledger (pipeline.film.store's
`forecasts` table). A later crawl (`-a refresh=1`) or import brings the films' scores; this command joins the
two and reports, per model and per month the forecasts were made: films scored since, films still awaiting a
score, MAE, bias (forecast minus actual: above zero, the model was too kind) and coverage (the share of scores
inside their interval, to hold against the interval's level). A stored rating of null or 0 is no score yet.
A film forecast several times in one month by one model counts once, by its latest forecast of that month.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never look for a display

import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first
import numpy as np  # noqa: E402

from models.serving.tables import check_target, write_table  # noqa: E402
from pipeline.errors import KadnError  # noqa: E402
from pipeline.film import store  # noqa: E402
from pipeline.io import atomic_path  # noqa: E402

COLUMNS = ("model", "month", "films", "awaiting", "mae", "bias", "coverage", "level")


def latest(ledger: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(model, month made) -> the latest forecast of each film that month (the ledger's rows)."""
    last: dict[tuple[str, str, int], dict] = {}
    for f in sorted(ledger, key=lambda f: (f["made_on"], f["digest"])):
        last[f["model"], f["made_on"].strftime("%Y-%m"), f["douban_id"]] = f
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for (model, month, _), f in sorted(last.items()):
        groups[model, month].append(f)
    return groups


def scored(forecasts: list[dict]) -> list[dict]:
    return [f for f in forecasts if f["rating"]]  # None and 0: no score shown yet


def scorecard(ledger: list[dict]) -> list[dict]:
    """One row per (model, month made), in that order."""
    rows = []
    for (model, month), forecasts in latest(ledger).items():
        done = scored(forecasts)
        error = np.array([f["score"] - f["rating"] for f in done])
        inside = [f["low"] <= f["rating"] <= f["high"] for f in done]
        rows.append({"model": model, "month": month, "films": len(done), "awaiting": len(forecasts) - len(done),
                     "mae": _mean(np.abs(error)), "bias": _mean(error), "coverage": _mean(inside),
                     "level": _mean([f["level"] for f in forecasts])})
    return rows


def _mean(values) -> float | None:
    return round(float(np.mean(values)), 3) if len(values) else None


def table(rows: list[dict]) -> str:
    widths = (14, 7, 6, 8, 6, 7, 8, 5)
    lines = ["  ".join(h.ljust(w) for h, w in zip(COLUMNS, widths)).rstrip()]
    for r in rows:
        cells = [r["model"], r["month"], str(r["films"]), str(r["awaiting"])] + [
            "-" if r[k] is None else f"{r[k]:.3f}" if k != "coverage" else f"{r[k]:.0%}" for k in ("mae", "bias",
                                                                                                "coverage")]
        cells.append(f"{r['level']:.0%}")
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    return "\n".join(lines) + "\n"


def plot(ledger: list[dict], path: Path) -> int:
    """Forecast against outcome, one colour per model, each forecast's interval as a bar; returns the points."""
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    by_model: dict[str, list[dict]] = defaultdict(list)
    for (model, _), forecasts in latest(ledger).items():
        by_model[model] += scored(forecasts)
    points = 0
    for model, done in sorted(by_model.items()):
        if not done:
            continue
        actual = np.array([f["rating"] for f in done])
        score = np.array([f["score"] for f in done])
        spread = np.array([[f["score"] - f["low"] for f in done], [f["high"] - f["score"] for f in done]])
        ax.errorbar(actual, score, yerr=np.clip(spread, 0, None), fmt="o", markersize=4, capsize=2, alpha=0.7,
                    label=f"{model} ({len(done)})")
        points += len(done)
    ax.plot([0, 10], [0, 10], color="#888888", linestyle="--", linewidth=1)
    ax.set(xlim=(0, 10), ylim=(0, 10), xlabel="Douban score (since)", ylabel="forecast, with its interval",
           title="Recorded forecasts against outcomes")
    if points:
        ax.legend(loc="upper left", fontsize=8)
    try:
        # No creation time or software version in the file: the same ledger gives the same bytes.
        with atomic_path(path, ".png") as tmp:
            fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    except OSError as exc:
        raise KadnError(f"{path}: cannot write: {exc.strerror}") from None
    finally:
        plt.close(fig)
    return points


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="how the recorded forecasts did once the films' scores appeared")
    p.add_argument("--database-url", help="SQLAlchemy URL of the store (default: $DATABASE_URL, else the shipped "
                   "SQLite file)")
    p.add_argument("-o", "--out", help="write the table to this .csv, .jsonl or .parquet file instead")
    p.add_argument("--plot", help="also draw forecast against outcome, with the intervals, into this .png file")
    p.set_defaults(func=_main)


def _main(args) -> int:
    out = Path(args.out) if args.out else None
    if out is not None:
        check_target(out)
    figure = Path(args.plot) if args.plot else None
    if figure is not None and (figure.suffix.lower() != ".png" or figure.is_dir()):
        raise KadnError(f"{figure}: --plot names a .png file")
    engine = store.connect(args.database_url, create=False)
    where = engine.url.render_as_string(hide_password=True)
    ledger = store.load_forecasts(engine)
    if not ledger:
        print(f"scorecard: no forecast recorded in {where} yet; `kadn forecast` records them", file=sys.stderr)
        return 0
    rows = scorecard(ledger)
    if figure is not None:
        plot(ledger, figure)
    if out is not None:
        write_table(rows, out, list(COLUMNS))
    else:
        sys.stdout.write(table(rows))
    scored_films = sum(r["films"] for r in rows)
    print(f"scorecard: {len(ledger)} forecasts recorded in {where}, {scored_films} with a score since"
          + (f" -> {out}" if out else "") + (f"; plot -> {figure}" if figure else ""), file=sys.stderr)
    return 0
