"""The forward backtest (`kadn backtest`) on a second real set: does a choice made on the shipped snapshot
hold elsewhere? Imports FILE into a scratch SQLite store, then snapshot -> clean -> encode -> backtest in a
scratch folder, once per variant of params.yaml's train.common (and clean.history), and prints each row's
mean MAE over the years, bias and interval coverage. Nothing is written into the repository.

    .venv/bin/python bench/forward_backtest.py                       # ../shared/data/openkg_douban.jsonl
    .venv/bin/python bench/forward_backtest.py FILE --variants shipped no_trend
    .venv/bin/python bench/forward_backtest.py --variants shipped --keep /tmp/openkg   # then bench/intervals.py

`--keep DIR` (outside the repository: the files are derived from FILE) keeps each variant's backtest.json and
forward.npz in DIR/VARIANT/, which `bench/intervals.py --forward ... --backtest ...` reads.

Skips (exit 0) when the file is absent.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "data" / "openkg_douban.jsonl"
KADN = Path(sys.executable).with_name("kadn")
# Each variant: changes to the shipped params.yaml.
VARIANTS = {
    "shipped": {},
    "no_trend": {"train.common.trend_years": None},  # the release year as a category alone (before the trend)
    "trend_3": {"train.common.trend_years": 3},
    "trend_6": {"train.common.trend_years": 6},
    "trend_12": {"train.common.trend_years": 12},
    "no_token": {"train.common.year_token": False},
    "earlier_tracks": {"train.common.track_records.earlier": True},
    "history": {"clean.history": True},
    "baselines_all_rows": {"train.common.baseline_rows": "all"},  # the baselines learn from every training film
}


def variant_params(changes: dict) -> dict:
    params = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8")))
    for dotted, value in changes.items():
        *path, key = dotted.split(".")
        node = params
        for part in path:
            node = node[part]
        node[key] = value
    return params


def kadn(*args: str, cwd: Path, env: dict) -> None:
    subprocess.run([str(KADN), *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def encode_store(folder: Path, params: dict, env: dict) -> Path:
    """The store at env's DATABASE_URL through snapshot -> clean -> encode in `folder` under `params`: the
    encoded folder (bench/levers_forward.py reads it too)."""
    folder.mkdir()
    (folder / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    kadn("snapshot", cwd=folder, env=env)
    kadn("clean", "--snapshot", "data/snapshot/films.jsonl", cwd=folder, env=env)
    kadn("encode", cwd=folder, env=env)
    return folder / "data" / "encoded"


def run(file: Path, name: str, changes: dict, scratch: Path, env: dict) -> dict:
    folder = scratch / name
    encode_store(folder, variant_params(changes), env)
    started = time.perf_counter()
    kadn("backtest", "--quiet", cwd=folder, env=env)
    figures = json.loads((folder / "artifacts/metrics/backtest.json").read_text(encoding="utf-8"))["backtest"]
    return {"seconds": round(time.perf_counter() - started), "figures": figures}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", default=str(DEFAULT), help="films in a layout `kadn import` reads")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--keep", help="a folder outside the repository to keep each variant's backtest.json and "
                    "forward.npz in")
    args = ap.parse_args()
    file = Path(args.file)
    if not file.exists():
        print(f"skipped: {file} is absent", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="kadn-forward-") as tmp:
        scratch = Path(tmp)
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{scratch / 'store.sqlite'}"}
        subprocess.run([str(KADN), "import", str(file)], env=env, check=True, stdout=subprocess.DEVNULL)
        for name in args.variants:
            result = run(file, name, VARIANTS[name], scratch, env)
            if args.keep:
                kept = Path(args.keep) / name
                kept.mkdir(parents=True, exist_ok=True)
                for part in ("artifacts/metrics/backtest.json", "artifacts/backtest/forward.npz"):
                    shutil.copyfile(scratch / name / part, kept / Path(part).name)
            years = sorted(k for k in next(iter(result["figures"].values())) if k.isdigit())
            print(f"{name} (years {', '.join(years)}; backtest {result['seconds']} s)")
            for row, fig in result["figures"].items():
                mean = fig["mean"]
                print(f"  {row:13s} MAE {mean['mae']:.3f}  bias {mean['bias']:+.3f}  "
                      f"coverage {mean.get('coverage', float('nan')):.3f}  width {mean.get('mean_width', float('nan')):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
