"""Where the forward bias comes from: every row forecasts the backtest's years too high on average (metrics.json
`backtest.<row>.mean.bias`), and on the second real set more than a plain LightGBM script does
(bench/reference_script.py). This splits a row's bias into the target trend's part and the model's part, and
measures what moves the model's part, on the backtest's own fits (models.stages.backtest.fit_year) of the SVR
and LightGBM:

1. the trend alone: each year's mean score against the level the trend forecasts for it, for the shipped
   trend (`train.common.trend_years`) and for the plain script's line (through the yearly means of the last
   six training years);
2. each row's bias and MAE with the shipped params and with one change each: track records off, track
   records from strictly earlier films, the year token off, and (`people`) a person unknown to a training film
   unless a strictly earlier training film has them, as a forecast film's are (with `min_count: 1`, so a
   forecast knows everyone seen once), and (`line`) every training year's level read off the trend's line, as
   the plain script detrends, instead of the year's own mean; and people read through their records alone,
   as the plain script reads them (both rows in `train.common.records_only`);
3. the bias per share of the film's people the model knows;
4. the forecasts moved by the mean of the earlier years' forward residuals (overall and per known-share bin),
   a correction learned forward.

    .venv/bin/python bench/forward_bias.py                 # the shipped snapshot (data/douban.sqlite)
    .venv/bin/python bench/forward_bias.py --import FILE   # a file `kadn import` reads (skipped when absent)

Writes only scratch files (the encoded set under the shipped params.yaml) and nothing into the repository.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

# forward_backtest sits beside this script (run as `python bench/forward_bias.py`).
from forward_backtest import KADN, encode_store, variant_params

from models.stages import backtest
from models.stages.backtest import fit_year, plan_years, year_rows
from models.training.runtime import runtime
from models.training.trend import Trend, release_time
from pipeline.features.encode import OOV, Encoded, load_encoded
from pipeline.params import parse

ROOT = Path(__file__).resolve().parents[1]
ROWS = ("svm", "lightgbm")
VARIANTS = {
    "shipped": {},
    "no track records": {"train.common.track_records.enabled": False},
    "tracks strictly earlier": {"train.common.track_records.earlier": True},
    "no year token": {"train.common.year_token": False},
    "people known from earlier films": {"train.common.min_count": 1, "people": True},
    "the trend one line for every year": {"line": True},
    "people as records alone, no tokens": {"train.common.records_only": list(ROWS)},
}
FLAGS = ("people", "line")  # variants that change code, not params.yaml
EDGES = [0.001, 0.25, 0.5, 0.75]  # known-share bins: none known, then the forecast's own bins


def earlier_people(restricted_for):
    """`restricted_for` with each person token of a film set to OOV unless a strictly earlier fit row holds it."""
    def restrict(enc: Encoded, fit_rows: np.ndarray, common, name: str):
        restricted = restricted_for(enc, fit_rows, common, name)
        release = np.asarray(enc.release, np.int64)
        order = fit_rows[np.argsort(release[fit_rows], kind="stable")]
        for group in ("directors", "writers", "actors"):
            x = restricted.x[group].copy()
            first: dict[int, int] = {}
            for row in order:
                for token in x[row]:
                    if token > OOV:
                        first.setdefault(int(token), int(release[row]))
            earliest = np.array([first.get(int(t), 10**9) for t in x.ravel()]).reshape(x.shape)
            x[(x > OOV) & (earliest >= release[:, None])] = OOV
            restricted.x[group] = x
        return restricted
    return restrict


def one_line(fit):
    """`Trend.fit` with every training year's level read off the line too (as the plain script detrends),
    instead of the year's own mean."""
    def line_fit(cls, t, y, rows, years):
        trend = fit.__func__(cls, t, y, rows, years)
        levels = [trend.slope * (s + 0.5) + trend.intercept - trend.overall for s in trend.seen]
        return Trend(trend.seen, levels, trend.slope, trend.intercept, trend.overall)
    return classmethod(line_fit)


def trend_alone(enc: Encoded, years: list[int], window: int) -> dict[str, list[float]]:
    """Per year, the trend's forecast mean minus the year's mean score: shipped trend and the script's line."""
    t, y = release_time(enc.release), enc.rating.astype(np.float64)
    year = np.floor(t)
    out = {"shipped trend": [], "script's line": []}
    for target in years:
        train, scored = year_rows(enc, target)
        trend = Trend.fit(t, y, train, window)
        out["shipped trend"].append(float((trend.offset(t[scored]) + trend.overall).mean() - y[scored].mean()))
        kept = np.unique(year[train])[-6:]
        slope, intercept = np.polyfit(kept, [y[train][year[train] == k].mean() for k in kept], 1)
        out["script's line"].append(float(slope * target + intercept - y[scored].mean()))
    return out


def fits(enc: Encoded, params: dict, flags: set[str], years: list[int]) -> dict:
    """{row: {year: (errors, known shares)}} of the backtest's fits under `params` (and the code `flags`)."""
    real, real_fit = backtest.restricted_for, Trend.fit
    if "people" in flags:
        backtest.restricted_for = earlier_people(real)
    if "line" in flags:
        Trend.fit = one_line(real_fit)
    try:
        typed = parse(params)
        out: dict = {}
        with runtime(seed=typed.train.common.seed, threads=1):
            for row in ROWS:
                for target in years:
                    result = fit_year(enc, typed, target, row)
                    err = result[row] - enc.rating[year_rows(enc, target)[1]]
                    out.setdefault(row, {})[target] = (err, result["known"])
        return out
    finally:
        backtest.restricted_for, Trend.fit = real, real_fit


def corrected(per_year: dict, reported: list[int], by_bin: bool) -> float:
    """Mean over the reported years of the MAE after moving each year's forecasts by the mean residual of the
    earlier years (per known-share bin with `by_bin`, a bin under 30 residuals not moved)."""
    maes = []
    for target in reported:
        err, known = per_year[target]
        past = [p for p in per_year if p < target]
        past_err = np.concatenate([per_year[p][0] for p in past])
        past_bin = np.digitize(np.concatenate([per_year[p][1] for p in past]), EDGES)
        if not by_bin:
            maes.append(np.abs(err - past_err.mean()).mean())
            continue
        offset = np.zeros(len(err))
        for b in range(len(EDGES) + 1):
            if (past_bin == b).sum() >= 30:
                offset[np.digitize(known, EDGES) == b] = past_err[past_bin == b].mean()
        maes.append(np.abs(err - offset).mean())
    return float(np.mean(maes))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--import", dest="source", help="a file `kadn import` reads (default: the shipped store)")
    args = ap.parse_args()
    if args.source and not Path(args.source).exists():
        print(f"skipped: {args.source} is absent", file=sys.stderr)
        return 0
    base = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="kadn-bias-") as tmp:
        scratch = Path(tmp)
        store = ROOT / "data" / "douban.sqlite" if not args.source else scratch / "store.sqlite"
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{store}"}
        if args.source:
            subprocess.run([str(KADN), "import", args.source], env=env, check=True, stdout=subprocess.DEVNULL)
        enc = load_encoded(encode_store(scratch / "set", base, env))
    plan = plan_years(enc, parse(base).backtest)
    reported, years = plan.reported, plan.years

    print(f"years {reported[0]}-{reported[-1]} (fits from {years[0]}: the earlier ones for the corrections)\n")
    print("1. The trend alone: forecast mean minus the year's mean score\n")
    print("| trend | " + " | ".join(map(str, reported)) + " | mean |\n|---|" + "---:|" * (len(reported) + 1))
    for name, biases in trend_alone(enc, reported, base["train"]["common"]["trend_years"]).items():
        print(f"| {name} | " + " | ".join(f"{b:+.3f}" for b in biases) + f" | {np.mean(biases):+.3f} |")

    results = {name: fits(enc, variant_params({k: v for k, v in c.items() if k not in FLAGS}), set(c) & set(FLAGS),
                          years) for name, c in VARIANTS.items()}
    print("\n2. Each row's mean MAE and bias over the years\n")
    print("| params | " + " | ".join(f"{r} MAE | {r} bias" for r in ROWS) + " |\n|---|" + "---:|" * 2 * len(ROWS))
    for name, per_row in results.items():
        cells = []
        for row in ROWS:
            errs = [per_row[row][y][0] for y in reported]
            cells += [f"{np.mean([np.abs(e).mean() for e in errs]):.3f}", f"{np.mean([e.mean() for e in errs]):+.3f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")

    print("\n3. Bias by the share of the film's people the model knows (shipped params, pooled over the years)\n")
    labels = ["none", "under 0.25", "0.25-0.5", "0.5-0.75", "0.75 and over"]
    print("| row | " + " | ".join(labels) + " |\n|---|" + "---:|" * len(labels))
    for row in ROWS:
        err = np.concatenate([results["shipped"][row][y][0] for y in reported])
        known = np.digitize(np.concatenate([results["shipped"][row][y][1] for y in reported]), EDGES)
        print(f"| {row} | " + " | ".join(f"{err[known == b].mean():+.3f} ({(known == b).sum()})"
                                         if (known == b).any() else "-" for b in range(len(labels))) + " |")

    print("\n4. Mean MAE with a correction learned forward (shipped params)\n")
    print("| row | none | the earlier years' mean residual | the same per known-share bin |\n|---|---:|---:|---:|")
    for row in ROWS:
        per_year = results["shipped"][row]
        plain = np.mean([np.abs(per_year[y][0]).mean() for y in reported])
        print(f"| {row} | {plain:.3f} | {corrected(per_year, reported, False):.3f} | "
              f"{corrected(per_year, reported, True):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
