"""Time `kadn forecast` end to end (store -> table) on 10,000 stored films with no score yet.

The films come from the mock site's generator (people, genres and countries shared with its catalogue), made
unrated and written straight into a fresh SQLite store, so the forecast scores that many. Then the command
runs as a separate process (interpreter start, imports, reading the store, selecting, scoring, intervals,
reasons, the ledger and the table all included), and the same steps are timed one by one in this process.

    .venv/bin/python bench/forecast.py                          # K-ADN student, artifacts/models
    .venv/bin/python bench/forecast.py --model ridge --runs 1

Target: under 10 s for 10,000 films on this machine (2 cores).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crawler.mocksite.catalogue import films_in_years, generate_catalogue
from models.serving import explain
from models.serving.artifacts import load_model
from models.serving.forecast import forecast, table, unscored
from models.serving.predict import resolve, score_films
from models.training import conformal
from models.training.runtime import runtime
from pipeline.film import store
from pipeline.params import load

ROOT = Path(__file__).resolve().parents[1]

def unrated_store(url: str, n: int, seed: int, params) -> int:
    """Write `n` films that `kadn forecast` will score (no usable score) into `url`."""
    records = [{**r, "rating": None, "votes": None}
               for r in films_in_years(generate_catalogue(int(n * 1.25) + 100, seed))]
    chosen = unscored(records, params)[:n]
    if len(chosen) < n:
        raise SystemExit(f"the generator gave only {len(chosen)} usable films; raise the catalogue size")
    engine = store.connect(url)
    for i in range(0, n, 5000):
        store.upsert_records(engine, chosen[i : i + 5000], source="bench")
    return len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=10_000)
    parser.add_argument("--model", default="kadn")
    parser.add_argument("--models", default=str(ROOT / "artifacts" / "models"))
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--runs", type=int, default=3, help="command runs (each a fresh process)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    params = load(args.params)
    common = params.train.common
    # The command's seeds and threads (models.training.runtime), for the steps timed in this process.
    with runtime(seed=common.seed, threads=common.threads), tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'store.sqlite'}"
        start = time.perf_counter()
        n = unrated_store(url, args.films, args.seed, params)
        print(f"store: {n} unrated films written in {time.perf_counter() - start:.1f}s")

        command = [sys.executable, "-m", "pipeline.cli", "forecast", "--database-url", url, "--model", args.model,
                   "--models", args.models, "--params", args.params]
        for label, extra in (("table", []), ("table --explain", ["--explain"]),
                             ("-o out.jsonl", ["-o", str(Path(tmp) / "out.jsonl")])):
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                proc = subprocess.run(command + extra, cwd=ROOT, capture_output=True, text=True)
                times.append(time.perf_counter() - start)
                if proc.returncode != 0:
                    raise SystemExit(f"kadn forecast failed:\n{proc.stderr}")
            scored = proc.stderr.split("forecast: ", 1)[1].split(" films", 1)[0]
            print(f"kadn forecast {label:16s}: {scored} films, wall {min(times):.2f}s best of {len(times)} "
                  f"({', '.join(f'{t:.2f}' for t in times)})")

        # The same work step by step, in this process (imports already paid).
        steps: dict[str, float] = {}

        def timed(name, fn):
            start = time.perf_counter()
            out = fn()
            steps[name] = time.perf_counter() - start
            return out

        records = timed("read store", lambda: store.load_records(store.connect(url, create=False)))
        films = timed("select unscored", lambda: unscored(records, params))
        artifact, output = resolve(args.model)
        loaded = timed("load model", lambda: load_model(Path(args.models), artifact))
        scored = timed("encode + score", lambda: score_films(films, loaded, output))
        timed("calibrate", lambda: conformal.for_model(conformal.load(Path(args.models) / artifact), output,
                                                       params.forecast))
        timed("reasons", lambda: explain.explain(scored, loaded, output))
        rows = forecast(films, args.model, Path(args.models), params)
        timed("table", lambda: table(rows, True))
        print("in process: " + ", ".join(f"{k} {v:.2f}s" for k, v in steps.items())
              + f"; total {sum(steps.values()):.2f}s")


if __name__ == "__main__":
    main()
