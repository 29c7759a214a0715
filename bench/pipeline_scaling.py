"""Time and peak memory of the clean and encode stages on mock catalogues of growing size.

Each catalogue comes from the mock site's generator, written straight into a fresh SQLite store (no crawl);
then each stage runs as its own process, so each one's peak RSS is its own. Two paths are timed:
`kadn clean` straight from the store, then `kadn encode`; and the DVC pipeline's, `kadn snapshot` then
`kadn clean --snapshot` (whose table, the same bytes, encode reads alike).

    .venv/bin/python bench/pipeline_scaling.py                 # 10k, 50k, 140k films
    .venv/bin/python bench/pipeline_scaling.py --sizes 2000    # a quick look

Target: clean + encode under 20 s and 2 GiB at 140k films on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crawler.mocksite.catalogue import generate_catalogue, store_catalogue

ROOT = Path(__file__).resolve().parents[1]


def run_stage(args: list[str], env: dict) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MiB) of one `kadn` stage run in a child process."""
    code = ("import resource, sys; from pipeline.cli import main; rc = main(sys.argv[1:]); "
            "u = resource.getrusage(resource.RUSAGE_SELF); "
            "print('PEAK', u.ru_maxrss, u.ru_utime + u.ru_stime, file=sys.stderr); sys.exit(rc)")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr}")
    _, peak_kb, cpu = next(line.split() for line in proc.stderr.splitlines() if line.startswith("PEAK"))
    return elapsed, float(cpu), int(peak_kb) / 1024


def columns(stage: tuple[float, float, float], width: int) -> str:
    wall, cpu, mib = stage
    return f"{wall:>{width}.1f} {cpu:>5.1f} {mib:>5.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 140_000])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print("Wall seconds, and the CPU seconds behind them (what a shared machine's load does not inflate).")
    print(f"{'films':>8} {'stored':>8} {'kept':>7} {'gen+store s':>12} {'clean s':>8} {'cpu':>5} {'MiB':>5} "
          f"{'encode s':>9} {'cpu':>5} {'MiB':>5} {'total s':>8} {'cpu':>5} | {'snapshot s':>11} {'cpu':>5} {'MiB':>5} "
          f"{'clean --snapshot s':>19} {'cpu':>5} {'MiB':>5}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            url = f"sqlite:///{tmp / 'mock.sqlite'}"
            start = time.perf_counter()
            stored = store_catalogue(generate_catalogue(n, seed=args.seed), url)
            gen_s = time.perf_counter() - start
            env = {**os.environ, "DATABASE_URL": url}
            clean = run_stage(["clean", "--out", str(tmp / "clean.parquet"), "--report", str(tmp / "report.json")], env)
            encode = run_stage(["encode", "--table", str(tmp / "clean.parquet"), "--out", str(tmp / "enc")], env)
            snap = run_stage(["snapshot", "--out", str(tmp / "films.jsonl")], env)
            snap_clean = run_stage(["clean", "--snapshot", str(tmp / "films.jsonl"), "--out",
                                    str(tmp / "clean_snap.parquet"), "--report", str(tmp / "report_snap.json")], env)
            if (tmp / "clean_snap.parquet").read_bytes() != (tmp / "clean.parquet").read_bytes():
                raise SystemExit(f"{n} films: clean --snapshot wrote another table than clean from the store")
            kept = json.loads((tmp / "report.json").read_text())["kept"]
            print(f"{n:>8} {stored:>8} {kept:>7} {gen_s:>12.1f} {columns(clean, 8)} {columns(encode, 9)} "
                  f"{clean[0] + encode[0]:>8.1f} {clean[1] + encode[1]:>5.1f} | {columns(snap, 11)} "
                  f"{columns(snap_clean, 19)}", flush=True)

if __name__ == "__main__":
    main()
