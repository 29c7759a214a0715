"""A deliberately plain forward yardstick: what a short LightGBM script reaches on the backtest's years, so the
project's rows (metrics.json `backtest`) can be held against it. For each year: train on the films released
before it, score that year's films. Features: track records from strictly earlier training films (mean score
and count of a film's directors, writers and first three billed actors), genres, the ten commonest countries,
runtime; with `--trend`, the target less a straight line through the yearly mean scores of the last six training
years, the line's value for the scored year added back. No tuning, no people as tokens, no ensembles.

    .venv/bin/python bench/reference_script.py                        # the shipped snapshot's cleaned table
    .venv/bin/python bench/reference_script.py --import FILE          # a file `kadn import` reads, cleaned first

Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
KADN = Path(sys.executable).with_name("kadn")
ROLES = {"directors": None, "writers": None, "actors": 3}


def cleaned_table(source: Path) -> pd.DataFrame:
    """FILE -> scratch store -> snapshot -> clean with the shipped params; the cleaned table."""
    with tempfile.TemporaryDirectory(prefix="kadn-reference-") as tmp:
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{Path(tmp) / 'store.sqlite'}"}
        (Path(tmp) / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
        for args in (["import", str(source)], ["snapshot"], ["clean", "--snapshot", "data/snapshot/films.jsonl"]):
            subprocess.run([str(KADN), *args], cwd=tmp, env=env, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        return pd.read_parquet(Path(tmp) / "data/clean/movies.parquet")


def people(row, role: str) -> list[str]:
    names, ids = list(row[role]), list(row[role[:-1] + "_ids"])
    keys = [i if i else n for n, i in zip(names, ids)]
    return keys[: ROLES[role]] if ROLES[role] else keys


def track_records(frame: pd.DataFrame, train: np.ndarray) -> pd.DataFrame:
    """Each film's people's mean score and count over training films released strictly before it."""
    order = frame["release_date"].to_numpy()
    out = {f"{role}_{s}": np.full(len(frame), np.nan) for role in ROLES for s in ("mean", "n")}
    for role in ROLES:
        seen = defaultdict(list)  # person -> [(release date, score)] of training films
        for i in np.flatnonzero(train):
            for p in people(frame.iloc[i], role):
                seen[p].append((order[i], frame["rating"].iat[i]))
        for i in range(len(frame)):
            scores = [s for p in people(frame.iloc[i], role) for d, s in seen.get(p, []) if d < order[i]]
            if scores:
                out[f"{role}_mean"][i], out[f"{role}_n"][i] = np.mean(scores), len(scores)
    return pd.DataFrame(out, index=frame.index)


def features(frame: pd.DataFrame, train: np.ndarray) -> pd.DataFrame:
    genres = sorted({g for gs in frame["genres"] for g in gs})
    countries = pd.Series([c for cs in frame.loc[train, "countries"] for c in cs]).value_counts().index[:10]
    cols = {f"g_{g}": frame["genres"].map(lambda gs, g=g: g in gs).astype(float) for g in genres}
    cols |= {f"c_{c}": frame["countries"].map(lambda cs, c=c: c in cs).astype(float) for c in countries}
    cols["runtime"] = frame["runtime_min"].astype(float)
    return pd.concat([pd.DataFrame(cols, index=frame.index), track_records(frame, train)], axis=1)


def trend_line(years: np.ndarray, y: np.ndarray, last: int = 6):
    kept = sorted(set(years))[-last:]
    means = [y[years == k].mean() for k in kept]
    slope, intercept = np.polyfit(kept, means, 1) if len(kept) > 1 else (0.0, means[0])
    return lambda yr: slope * np.asarray(yr, float) + intercept


def forward(frame: pd.DataFrame, years: list[int], trend: bool) -> dict[int, tuple[float, float]]:
    """{year: (MAE, bias)}."""
    maes = {}
    for year in years:
        train = (frame["year"] < year).to_numpy()
        test = (frame["year"] == year).to_numpy()
        x = features(frame, train)
        y = frame["rating"].to_numpy(float)
        line = trend_line(frame["year"].to_numpy()[train], y[train]) if trend else (lambda yr: 0.0)
        model = lgb.LGBMRegressor(n_estimators=300, learning_rate=0.03, num_leaves=15, min_child_samples=10,
                                  subsample=0.8, subsample_freq=1, colsample_bytree=0.5, random_state=0,
                                  deterministic=True, n_jobs=1, verbose=-1)
        model.fit(x[train], y[train] - line(frame["year"].to_numpy()[train]))
        pred = model.predict(x[test]) + line(np.full(test.sum(), year))
        maes[year] = float(np.abs(pred - y[test]).mean()), float((pred - y[test]).mean())
    return maes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default=str(ROOT / "data/clean/movies.parquet"), help="a cleaned table")
    ap.add_argument("--import", dest="source", help="clean this importable file first (the table is ignored)")
    ap.add_argument("--save-table", help="also write the cleaned table of --import here (to reuse with --table)")
    ap.add_argument("--years", nargs="+", type=int, help="default: the backtest years of metrics.json (the "
                    "shipped table) or the last five years with 30 films (another one)")
    args = ap.parse_args()
    if args.source and not Path(args.source).exists():
        print(f"skipped: {args.source} is absent", file=sys.stderr)
        return 0
    frame = cleaned_table(Path(args.source)) if args.source else pd.read_parquet(args.table)
    if args.source and args.save_table:
        frame.to_parquet(args.save_table)
    frame = frame[~frame["history"].fillna(False)].reset_index(drop=True)
    frame = frame.sort_values(["release_date", "douban_id"]).reset_index(drop=True)
    years = args.years
    if not years and not args.source:
        rows = json.loads((ROOT / "metrics.json").read_text(encoding="utf-8"))["backtest"]
        years = sorted(int(k) for k in next(iter(rows.values())) if k.isdigit())
    if not years:
        counts = frame["year"].value_counts().sort_index()
        years = [int(y) for y in counts[counts >= 30].index[2:]][-5:]
    for trend in (False, True):
        maes = forward(frame, years, trend)
        per_year = "  ".join(f"{y} {m:.3f}" for y, (m, _) in maes.items())
        mae, bias = np.mean(list(maes.values()), axis=0)
        print(f"reference LightGBM {'with' if trend else 'without'} the year trend: mean MAE {mae:.3f}, "
              f"bias {bias:+.3f}  ({per_year})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
