"""Do intervals calibrated on nets of one seed count hold for nets of another? `kadn forecast` calibrates on the
forward residuals of the backtest's nets (`artifacts/backtest/forward.npz`), which have `backtest.seeds` seeds
each (null, the default: their shipped `train.nets.seeds`, so a forecast is calibrated on its own kind of
model). This backtests the nets again with `--seeds` seeds (same years, same fits otherwise) and reports, per
reported year, the coverage of those scores under the interval calibrated on the backtest's residuals of
earlier years, against the backtest's own coverage and the `--seeds` scores calibrated on their own
residuals; and the blend with its student so refitted. Reads `artifacts/backtest/forward.npz` (`make repro`
first); writes nothing.

    nice .venv/bin/python bench/interval_seeds.py --seeds 1      # the student (and its teacher), one seed each
    nice .venv/bin/python bench/interval_seeds.py --models kadn kd --seeds 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from models.stages.backtest import blended, fit_all, plan_years, year_rows
from models.training.conformal import calibrate, read_forward
from pipeline.features.encode import load_encoded
from pipeline.params import load

ROOT = Path(__file__).resolve().parents[1]


def per_year(data: dict, row: str) -> tuple[dict, dict]:
    """({year: predictions}, {year: known shares}) of one row of forward.npz."""
    mine = data["model"] == row
    years = sorted({int(y) for y in data["year"][mine]})
    return ({y: data["pred"][mine & (data["year"] == y)] for y in years},
            {y: data["known"][mine & (data["year"] == y)] for y in years})


def interval(pred: dict, known: dict, y: dict, year: int, cfg) -> np.ndarray:
    """Half-widths for `year`'s films from the residuals of the years before it (as the backtest does)."""
    past = [p for p in pred if p < year]
    residuals = np.concatenate([pred[p] - y[p] for p in past])
    return calibrate(residuals, np.concatenate([known[p] for p in past]), cfg).half_width(known[year])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["kadn"], help="nets of backtest.models to fit again")
    parser.add_argument("--seeds", type=int, help="seeds per net fitted again (default: train.nets.seeds)")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--encoded", default=str(ROOT / "data" / "encoded"))
    parser.add_argument("--forward", default=str(ROOT / "artifacts" / "backtest" / "forward.npz"))
    args = parser.parse_args()
    params = load(args.params)
    shipped = params.backtest.seeds or params.train.nets.seeds  # the seeds behind forward.npz's nets
    seeds = args.seeds or params.train.nets.seeds
    params = params.model_copy(update={"backtest": params.backtest.model_copy(
        update={"seeds": seeds, "models": args.models})})
    cfg = params.forecast
    enc = load_encoded(Path(args.encoded))
    plan = plan_years(enc, params.backtest)
    data = read_forward(args.forward)
    if data is None:
        sys.exit(f"{args.forward}: missing; `make repro` (or `kadn backtest`) first")
    started = time.perf_counter()
    many, many_known = fit_all(enc, params, plan.years, progress=True)
    print(f"{len(args.models)} net(s) x {len(plan.years)} years with {seeds} seeds: "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    y = {year: enc.rating[year_rows(enc, year)[1]].astype(np.float64) for year in plan.years}
    members = params.blend.members
    rows = list(many)
    if any(m in many for m in members):  # the blend with those members averaged, weights fitted forward
        forward = {m: many[m] if m in many else per_year(data, m)[0] for m in members}
        known = {m: many_known[m] if m in many else per_year(data, m)[1] for m in members}
        many["blend"], many_known["blend"] = blended(forward, known, y, params.blend)
        rows.append("blend")
    print(f"| row | year | MAE, {shipped} seed(s) | MAE, {seeds} seed(s) | coverage: {shipped} (the backtest's) | "
          f"{seeds}, calibrated on {shipped} | {seeds}, on {seeds} | width on {shipped} | on {seeds} |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        one, one_known = per_year(data, row)
        totals = []
        for year in plan.reported:
            if year not in many[row] or not any(p < year for p in many[row]):
                continue
            half1 = interval(one, one_known, y, year, cfg)
            half_many = interval(many[row], many_known[row], y, year, cfg)
            err1, err = np.abs(one[year] - y[year]), np.abs(many[row][year] - y[year])
            figs = [err1.mean(), err.mean(), np.mean(err1 <= half1), np.mean(err <= half1),
                    np.mean(err <= half_many), 2 * half1.mean(), 2 * half_many.mean()]
            totals.append(figs)
            print(f"| {row} | {year} | " + " | ".join(f"{f:.3f}" for f in figs) + " |")
        print(f"| {row} | mean | " + " | ".join(f"{f:.3f}" for f in np.mean(totals, 0)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
