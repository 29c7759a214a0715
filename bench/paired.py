"""Paired per-fold MAE differences between runs of bench/accuracy.py written with `--json` (same CV folds:
same films, `train.common.cv` and `--repeats`), so the fold-to-fold spread cancels.

    python bench/paired.py base.json other.json [more.json ...]   # every row of each run minus base's row
    python bench/paired.py run.json --against svm                  # every row of a run minus its svm row
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def line(what: str, d: np.ndarray) -> str:
    return (f"{what}: {d.mean():+.4f} ± {d.std(ddof=1):.4f} (sd over {len(d)} folds; lower in "
            f"{(d < 0).sum()}/{len(d)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--against", help="a row of the same run to subtract (e.g. svm), instead of the first run")
    args = parser.parse_args()
    runs = {p: json.loads(p.read_text(encoding="utf-8")) for p in args.runs}
    base = runs[args.runs[0]]
    for path, run in runs.items():
        for feature_set, rows in run.items():
            for row, mae in rows.items():
                if args.against:
                    ref = rows.get(args.against)
                    label = f"{path.stem} {feature_set} {row} - {args.against}"
                else:
                    if path == args.runs[0]:
                        continue
                    ref = base.get(feature_set, {}).get(row)
                    label = f"{feature_set} {row}: {path.stem} - {args.runs[0].stem}"
                if ref is None or row == args.against:
                    continue
                if len(ref) != len(mae):
                    raise SystemExit(f"{path}: {feature_set} {row} has {len(mae)} folds, its reference {len(ref)}")
                print(line(label, np.asarray(mae) - np.asarray(ref)))


if __name__ == "__main__":
    main()
