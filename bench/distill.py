"""Teacher against student (the paper's Table 2) and K-ADN training throughput on a mock catalogue.

    python bench/distill.py table2                     # the trained artifacts/models/kadn, on the test split
    python bench/distill.py throughput --films 140000  # train K-ADN on a mock catalogue, films/s per epoch

`table2` times each net alone (shared layers + its own MLP; with N seeds, all N and the averaging) over the
test set repeated to --films films, the fastest of several runs, so a busy machine distorts it less.
`throughput` builds a deterministic mock catalogue (crawler.mocksite.catalogue), cleans and encodes it as the
pipeline does, then times training epochs with the params.yaml K-ADN settings (batch size and threads
overridable). Not run by the test suite.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from models.serving.artifacts import load_model
from models.serving.results import model_view
from models.stages.evaluate import branch_figures
from models.training.config import model_config
from models.training.data import FitData
from models.training.fit_net import fit_net
from models.training.runtime import runtime
from pipeline.features.encode import load_encoded, run_encode
from pipeline.params import EvaluateConfig, load

ROOT = Path(__file__).resolve().parents[1]

def table2(args) -> None:
    """Table 2 exactly as `kadn evaluate` computes it (models.stages.evaluate.branch_figures), with more timing
    repeats and a chosen thread count."""
    enc = load_encoded(ROOT / "data" / "encoded")
    kadn = load_model(ROOT / "artifacts" / "models", "kadn")
    test = enc.index("test")
    cfg = EvaluateConfig(timing_repeats=5 * args.rounds, timing_films=args.films)
    with runtime(seed=0, threads=args.threads):
        table, timed = branch_figures(kadn, model_view(enc, kadn), test, enc.index("train"),
                                      enc.rating.astype(np.float32), cfg)
    print(f"threads {args.threads}; {len(kadn.nets)} seed(s) per side; test set {len(test)} films; per-10k timing "
          f"on {args.films} films")
    print("| net | params | multiply-adds per film | test set (s) | per 10k films (s) |\n|---|---:|---:|---:|---:|")
    for name in ("teacher", "student"):
        print(f"| {name} | {table[name]['params']:,} | {table[name]['multiply_adds_per_film']:,} | "
              f"{timed[name]['infer_s']:.4f} | {timed[name]['infer_10k_s']:.4f} |")
    t, s = timed["teacher"], timed["student"]
    print(f"parameter reduction {100 * (1 - table['student']['params'] / table['teacher']['params']):.1f}%; "
          f"student scores x{t['infer_10k_s'] / s['infer_10k_s']:.2f} faster (per 10k films), "
          f"x{t['infer_s'] / s['infer_s']:.2f} on the test set alone")


def throughput(args) -> None:
    from crawler.mocksite.catalogue import films_in_years, generate_catalogue
    from pipeline.features.clean import apply_rules, to_frame

    params = load(ROOT / "params.yaml")
    started = time.perf_counter()
    kept, _ = apply_rules(films_in_years(generate_catalogue(args.films, args.seed)), params.clean)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "movies.parquet"
        to_frame(kept).to_parquet(table)
        run_encode(table, params.encode, Path(tmp) / "enc")
        enc = load_encoded(Path(tmp) / "enc")
    prep = time.perf_counter() - started
    with runtime(seed=params.train.common.seed, threads=args.threads):
        train_epochs(args, params, enc, prep)


def train_epochs(args, params, enc, prep: float) -> None:
    train, val = enc.index("train"), enc.index("val")
    r = enc.restrict(train, params.train.common.min_count)
    rows = sum(len(f) for f in r.freq.values())
    print(f"mock catalogue: {args.films} generated, {len(enc)} films after cleaning (prep {prep:.0f}s); "
          f"train {len(train)}, embedding rows {rows:,}")
    for batch in args.batch or [0]:
        cfg = model_config(params.train, "kadn").model_copy(
            update={"epochs": args.epochs, "patience": None, "seeds": 1, **({"batch": batch} if batch else {})})
        fitted = fit_net("kadn", FitData(r.x, r.freq, enc.rating, train, val), cfg, seed=0, progress=args.progress)
        per_epoch = fitted.train_s / args.epochs
        print(f"K-ADN, batch {cfg.batch}, {args.threads} thread(s): {per_epoch:.1f}s per epoch "
              f"(validation included) = {len(train) / per_epoch:,.0f} films/s; "
              f"val MAE student {fitted.curve[-1]['val_mae_student']:.3f} "
              f"teacher {fitted.curve[-1]['val_mae_teacher']:.3f} after {args.epochs} epoch(s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("table2")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--films", type=int, default=10000)
    t.add_argument("--rounds", type=int, default=3)
    t.set_defaults(func=table2)
    p = sub.add_parser("throughput")
    p.add_argument("--films", type=int, default=140000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, nargs="*", help="batch sizes to time (default: params.yaml's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--progress", action="store_true")
    p.set_defaults(func=throughput)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
