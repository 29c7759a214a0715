"""Is one row of the forward backtest really ahead of another? Paired differences on the same films.

The backtest's rows score the same films each year, so a row's MAE minus another's is far less noisy than
either MAE alone. For each row this prints its forward MAE (the mean over the reported years of each year's
MAE, as `metrics.json` reports it) minus the `--against` row's, a 95% interval for that difference from a
bootstrap that resamples each year's films (with replacement, within the year: the years are what the
figure averages), and in how many years the row was the lower. An interval that holds 0 means the films
cannot tell the two rows apart.

    .venv/bin/python bench/forward_paired.py                          # every row against the K-ADN student
    .venv/bin/python bench/forward_paired.py --against blend --forward DIR/forward.npz

Reads a backtest's forward.npz (`make repro` writes `artifacts/backtest/forward.npz`; bench/forward_backtest.py
`--keep DIR` keeps a second set's) and params.yaml (which years only calibrate); writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from models.training.conformal import read_forward
from pipeline.params import load

ROOT = Path(__file__).resolve().parents[1]


def reported_years(years: np.ndarray, calibration_years: int) -> list[int]:
    """The backtest's years less the first `calibration_years` (fitted only to calibrate the later ones)."""
    return sorted(int(y) for y in np.unique(years))[calibration_years:]


def absolute_errors(data: dict[str, np.ndarray], row: str, years: list[int]
                    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{year: (douban ids, |pred - y|) of the row's films}, in douban_id order so that two rows pair film by film."""
    out = {}
    for year in years:
        take = (data["model"] == row) & (data["year"] == year)
        order = np.argsort(data["douban_id"][take], kind="stable")
        out[year] = data["douban_id"][take][order], np.abs(data["pred"][take] - data["y"][take])[order]
    return out


def mae(errors: dict[int, tuple[np.ndarray, np.ndarray]]) -> float:
    """The mean over the years of each year's MAE, as metrics.json reports a row."""
    return float(np.mean([e.mean() for _, e in errors.values()]))


def paired(a: dict[int, tuple[np.ndarray, np.ndarray]], b: dict[int, tuple[np.ndarray, np.ndarray]], draws: int,
           seed: int) -> dict:
    """Mean over years of (row a's MAE - row b's), its bootstrap 95% interval, and the years a was lower."""
    for year in a:
        if not np.array_equal(a[year][0], b[year][0]):
            raise SystemExit(f"year {year}: the two rows score different films; not a paired comparison")
    diffs = [a[y][1] - b[y][1] for y in a]
    rng = np.random.default_rng(seed)
    boot = np.mean([[d[rng.integers(0, len(d), len(d))].mean() for d in diffs] for _ in range(draws)], axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"diff": float(np.mean([d.mean() for d in diffs])), "low": float(low), "high": float(high),
            "lower_years": int(sum(d.mean() < 0 for d in diffs)), "years": len(diffs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forward", type=Path, default=ROOT / "artifacts" / "backtest" / "forward.npz")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--against", default="kadn", help="the row every other is compared with (default: the student)")
    ap.add_argument("--years", type=int, nargs="+", help="default: the backtest's years less its calibration years")
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = read_forward(args.forward)
    if data is None:
        sys.exit(f"{args.forward}: not there; run `make repro` (or bench/forward_backtest.py --keep DIR) first")
    rows = sorted(set(data["model"].astype(str)))
    if args.against not in rows:
        sys.exit(f"{args.forward}: no row {args.against!r} (rows: {', '.join(rows)})")
    years = args.years or reported_years(data["year"], load(args.params).backtest.calibration_years)
    base = absolute_errors(data, args.against, years)
    base_mae = mae(base)
    print(f"{args.forward}, years {years[0]}-{years[-1]}: each row's forward MAE minus {args.against}'s "
          f"({base_mae:.4f}); 95% bootstrap interval over each year's films ({args.draws} draws)")
    print(f"{'row':<14}{'MAE':>8}{'minus':>9}{'95% interval':>20}  lower in")
    results = []
    for row in rows:
        if row == args.against:
            continue
        errors = absolute_errors(data, row, years)
        results.append((mae(errors), row, paired(errors, base, args.draws, args.seed)))
    for row_mae, row, r in sorted(results):
        print(f"{row:<14}{row_mae:>8.4f}{r['diff']:>+9.4f}   [{r['low']:+.4f}, {r['high']:+.4f}]  "
              f"{r['lower_years']}/{r['years']} years")


if __name__ == "__main__":
    main()
