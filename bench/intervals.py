"""The forward backtest's 80% intervals, year by year, under calibration variants: what explains a year whose
coverage falls outside the 75-85% target? Reads `artifacts/backtest/forward.npz` (every row's forward
predictions of every fitted year: `make repro` or `kadn backtest` first) and params.yaml's `forecast` section;
fits nothing and writes nothing.

    .venv/bin/python bench/intervals.py                  # every row
    .venv/bin/python bench/intervals.py --rows kadn svm blend

Per row and reported year, coverage of the interval calibrated on the earlier fitted years' forward residuals:
- `shipped`: as `kadn backtest` (models.training.conformal.calibrate: finite-sample split-conformal quantile
  per known-share bin, an expanding window of every earlier year, equally weighted)
- `one bin`: the same residuals without the known-share bins
- `last year`: the previous year's residuals alone
- `recent x2`: weighted (non-exchangeable) split-conformal, Barber et al. 2023: a residual of a year k years
  before counts 2^-(k-1) (the half-life fixed beforehand, never searched), the film scored counting 1
- `adaptive g`: adaptive conformal inference (Gibbs and Candes 2021) a year at a time: the shipped calibration
  at a level moved by g times the shortfall of every earlier fitted year (the level minus the coverage that
  year's own adaptive interval had), so a run of under-covered years widens the next one (`--gammas`)
and the year's own `q80` (the 80% quantile of its |residuals|, which no interval may read) beside the
calibration's, and the binomial range: the central 90% of the coverage of `films` films if each were covered
with probability 0.8.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binom

from models.training.conformal import calibrate, conformal_quantile, read_forward
from pipeline.params import load

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = ("shipped", "one bin", "last year", "recent x2")


def adaptive(data: dict, mine: np.ndarray, cfg, gamma: float) -> dict[int, np.ndarray]:
    """{year: the half-widths of its films} under adaptive conformal inference for every fitted year with an
    earlier one: year k calibrated as shipped, at level + gamma * sum over the earlier years j >= 1 of
    (level - coverage of year j's own interval), the level kept within [0.5, 0.99]."""
    years = sorted({int(y) for y in data["year"][mine]})
    err = np.abs(data["pred"] - data["y"])
    out, shortfall = {}, 0.0
    for year in years[1:]:
        now, past = mine & (data["year"] == year), mine & (data["year"] < year)
        level = min(0.99, max(0.5, cfg.level + gamma * shortfall))
        half = calibrate(err[past], data["known"][past], cfg.model_copy(update={"level": level})).half_width(
            data["known"][now])
        out[year] = half
        shortfall += cfg.level - float(np.mean(err[now] <= half))
    return out


def weighted_quantile(scores: np.ndarray, weights: np.ndarray, level: float) -> float:
    """The `level` quantile of the weighted scores with the scored film's own weight (1) at +infinity: the
    non-exchangeable split-conformal quantile (infinite when the finite scores' weight cannot reach it)."""
    order = np.argsort(scores)
    s, w = scores[order], weights[order] / (weights.sum() + 1.0)
    reached = np.flatnonzero(np.cumsum(w) >= level)
    return float(s[reached[0]]) if len(reached) else float("inf")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forward", default=str(ROOT / "artifacts" / "backtest" / "forward.npz"))
    parser.add_argument("--backtest", default=str(ROOT / "artifacts" / "metrics" / "backtest.json"),
                        help="which years are reported")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--rows", nargs="*")
    parser.add_argument("--gammas", nargs="*", type=float, default=[0.5, 1.0],
                        help="the adaptive variants' step sizes")
    parser.add_argument("--years", nargs="*", type=int,
                        help="report these fitted years (default: the backtest's reported ones)")
    args = parser.parse_args()
    variants = VARIANTS + tuple(f"adaptive {g:g}" for g in args.gammas)
    cfg = load(args.params).forecast
    data = read_forward(args.forward)
    if data is None:
        sys.exit(f"{args.forward}: missing; `make repro` (or `kadn backtest`) first")
    figures = json.loads(Path(args.backtest).read_text(encoding="utf-8"))["backtest"]
    rows = args.rows or list(dict.fromkeys(data["model"].tolist()))
    print(f"| row | year | films | {' | '.join(variants)} | binomial 90% | q80 of the year | "
          "shipped half-widths (bins) |")
    print("|---|---:|---:|" + "---:|" * len(variants) + "---|---:|---|")
    low_bins: dict[str, list] = {}
    summary: dict[str, list] = {name: [] for name in variants}
    for row in rows:
        mine = data["model"] == row
        reported = args.years or [int(y) for y in figures[row] if y.isdigit()]
        adapted = {g: adaptive(data, mine, cfg, g) for g in args.gammas}
        for year in reported:
            now, past = mine & (data["year"] == year), mine & (data["year"] < year)
            if not past.any():
                continue  # the row's first fitted year (`--years`): nothing earlier to calibrate on
            err = np.abs(data["pred"][now] - data["y"][now])
            res, known = np.abs(data["pred"][past] - data["y"][past]), data["known"][past]
            cal = calibrate(res, known, cfg)
            half = cal.half_width(data["known"][now])
            prev = mine & (data["year"] == year - 1)
            age = year - data["year"][past]
            variants = [half, conformal_quantile(res, cfg.level),
                        conformal_quantile(np.abs(data["pred"][prev] - data["y"][prev]), cfg.level),
                        weighted_quantile(res, 0.5 ** (age - 1.0), cfg.level)] + [adapted[g][year]
                                                                                   for g in args.gammas]
            n = len(err)
            lo, hi = binom.ppf(0.05, n, cfg.level) / n, binom.ppf(0.95, n, cfg.level) / n
            bins = ", ".join(f"{h:.2f} ({a:.2f}-{b:.2f})" for h, a, b in zip(cal.half_widths, cal.edges, cal.edges[1:]))
            cells = " | ".join(f"{np.mean(err <= v):.3f}" for v in variants)
            for name, v in zip(summary, variants):
                summary[name].append((np.mean(err <= v), np.mean(2 * np.broadcast_to(v, err.shape))))
            print(f"| {row} | {year} | {n} | {cells} | {lo:.2f}-{hi:.2f} | {np.quantile(err, cfg.level):.2f} "
                  f"(cal. {np.quantile(res, cfg.level):.2f}) | {bins} |")
            # Coverage by the film's known share, pooled over the years: does a bin miss more than the others?
            low_bins.setdefault(row, []).append((data["known"][now], err <= half))
    print("\n| variant | mean coverage over the (row, year)s | inside 0.75-0.85 | under 0.75 | mean width |")
    print("|---|---:|---:|---:|---:|")
    for name, figs in summary.items():
        cover, width = np.array(figs).T
        print(f"| {name} | {cover.mean():.3f} | {np.mean((cover >= 0.75) & (cover <= 0.85)):.0%} | "
              f"{np.mean(cover < 0.75):.0%} | {width.mean():.2f} |")
    print("\n| row | coverage, known share < 0.25 (films) | 0.25-0.5 | >= 0.5 |")
    print("|---|---:|---:|---:|")
    for row, parts in low_bins.items():
        known = np.concatenate([k for k, _ in parts])
        hit = np.concatenate([h for _, h in parts])
        cells = []
        for a, b in ((0.0, 0.25), (0.25, 0.5), (0.5, 1.01)):
            sel = (known >= a) & (known < b)
            cells.append(f"{hit[sel].mean():.3f} ({sel.sum()})" if sel.any() else "-")
        print(f"| {row} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
