"""The saved blend's weights on the forward backtest. The backtest's `blend` row refits its weights each year on
the earlier years' forward predictions; the saved blend (`artifacts/models/blend`, what `kadn forecast --model
blend` sums) has one set. This applies that set to the members' forward predictions of every reported year,
beside the backtest's blend and each member: how far the blend `--model auto` picks is from the row it was
picked on. With `blend.weights: out_of_fold` the set was fitted on random-CV out-of-fold predictions, and the
comparison is fair; with `forward` (the default) it was fitted on these very years, so its column is
in-sample, and the script says so. Reads `artifacts/backtest/forward.npz`, `artifacts/metrics/backtest.json`
and the saved blend (`make repro` first); fits and writes nothing.

    .venv/bin/python bench/blend_forward.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from models.training.conformal import read_forward

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forward", default=str(ROOT / "artifacts" / "backtest" / "forward.npz"))
    parser.add_argument("--backtest", default=str(ROOT / "artifacts" / "metrics" / "backtest.json"))
    parser.add_argument("--blend", default=str(ROOT / "artifacts" / "models" / "blend" / "meta.json"))
    args = parser.parse_args()
    data = read_forward(args.forward)
    if data is None:
        sys.exit(f"{args.forward}: missing; `make repro` (or `kadn backtest`) first")
    meta = json.loads(Path(args.blend).read_text(encoding="utf-8"))
    names = [m["name"] for m in meta["members"]]
    weights = np.array([m["weight"] for m in meta["members"]])
    reported = [int(y) for y in json.loads(Path(args.backtest).read_text(encoding="utf-8"))["backtest"]["blend"]
                if y.isdigit()]

    def rows(model: str, year: int) -> np.ndarray:
        return (data["model"] == model) & (data["year"] == year)

    columns = [*names, "blend (backtest: weights refitted forward)", "saved blend's weights"]
    print("| year | films | " + " | ".join(columns) + " |")
    print("|---|---:|" + "---:|" * len(columns))
    table = []
    for year in reported:
        y = data["y"][rows(names[0], year)]
        preds = {m: data["pred"][rows(m, year)] for m in [*names, "blend"]}
        saved = np.stack([preds[m] for m in names], -1) @ weights + meta["intercept"]
        errors = [np.abs(preds[m] - y) for m in [*names, "blend"]] + [np.abs(saved - y)]
        table.append([e.mean() for e in errors])
        print(f"| {year} | {len(y)} | " + " | ".join(f"{e.mean():.3f}" for e in errors) + " |")
    print("| mean | | " + " | ".join(f"{v:.3f}" for v in np.mean(table, 0)) + " |")
    print(f"\nsaved weights: {', '.join(f'{n} {w:.3f}' for n, w in zip(names, weights))}; "
          f"intercept {meta['intercept']:+.3f} ({meta['fitted_on']})")
    if meta["fitted_on"].startswith("forward"):
        print("those weights were fitted on these years' forward predictions: their column is in-sample")
    return 0


if __name__ == "__main__":
    sys.exit(main())
