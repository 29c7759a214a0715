"""`kadn backtest`: how a pre-release forecaster would have done, year by year. For each year of
`backtest.years`, every model of `backtest.models` is trained (pre_release features, baselines tuned on
their own training rows, nets with `backtest.seeds` seeds) on the films released before that year, and
scores that year's films; the random split and its CV stay the paper's protocol.

Films from before the range (clean.history) are training rows of every year; only in-range films are
scored. Writes a metrics fragment: `backtest.<model>.<year>` = {mae, rmse, films} and `backtest.<model>.mean`
(the mean of the yearly MAEs), merged into metrics.json by `kadn metrics`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from models.config import BASELINES, REPORTED, model_config
from models.cv import closing_pool, errors, make_pool, run_task
from models.data import FitData, features_from, fold_split
from models.fit import fit_model, set_determinism
from pipeline.encode import Encoded, load_encoded
from pipeline.errors import KadnError
from pipeline.io import write_json
from pipeline.params import Params, load


def year_rows(enc: Encoded, year: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows: every film released before `year`, scored rows: the in-range films of `year`)."""
    if enc.release is None:
        raise KadnError("the encoded data holds no release dates; re-run `kadn encode` (or `dvc repro`)")
    released = enc.release // 10000
    known = enc.release > 0
    train = np.flatnonzero(known & (released < year))
    scored = np.flatnonzero(known & (released == year) & enc.in_range)
    return train, scored


def fit_year(enc: Encoded, params: Params, year: int, name: str) -> dict[str, dict]:
    """{reported row: {mae, rmse, films}} of model `name` trained on the films before `year`, scoring `year`'s."""
    common = params.train.common
    y = enc.rating.astype(np.float32)
    train_rows, scored = year_rows(enc, year)
    fit_rows, val_rows = fold_split(train_rows, common.cv.val, common.cv.seed + year, enc.in_range)
    restricted = enc.restrict(fit_rows, common.min_count)
    build = features_from(enc, restricted.x, "pre_release", common.track_records)
    x, _ = build(fit_rows)
    model_cfg = model_config(params.train, name)
    if name not in BASELINES:
        model_cfg = model_cfg.model_copy(update={"seeds": params.backtest.seeds})
    trained = fit_model(name, model_cfg, common, FitData(x, restricted.freq, y, fit_rows, val_rows, enc.in_range),
                        common.seed + year, features=build)
    outputs = trained.scores(scored)
    figures = {}
    for reported, (artifact, output) in REPORTED.items():
        if artifact == name and output in outputs:
            mae, rmse = errors(outputs[output], y[scored])
            figures[reported] = {"mae": round(mae, 3), "rmse": round(rmse, 3), "films": int(len(scored))}
    return figures


def run_backtest(params: Params, encoded_dir: Path, out: Path, progress: bool = False) -> dict:
    cfg, common = params.backtest, params.train.common
    set_determinism(common.threads)
    enc = load_encoded(encoded_dir)
    rows = {year: year_rows(enc, year) for year in cfg.years}
    for year, (train_rows, scored) in rows.items():  # every year checked before any training
        if len(scored) == 0 or len(train_rows) < 10:
            raise KadnError(f"{encoded_dir}: backtest year {year} has {len(train_rows)} earlier films and "
                            f"{len(scored)} films of its own; change params.yaml backtest.years")
    # Every (year, model) fit is its own seeded task, so the worker processes give the bytes of one process;
    # the latest years (the most rows) go first, so no long fit starts last.
    order = sorted(((year, name) for year in cfg.years for name in cfg.models), key=lambda t: -t[0])
    with closing_pool(make_pool(common.workers, common.threads, enc)) as pool:
        tasks = {key: run_task(pool, enc, fit_year, params, *key) for key in order}
        figures: dict[str, dict] = {}
        for year in cfg.years:
            for name in cfg.models:
                for reported, fig in tasks[(year, name)].result().items():
                    figures.setdefault(reported, {})[str(year)] = fig
                if progress:
                    print(f"backtest {year} {name}: trained on the films before {year}, scored "
                          f"{len(rows[year][1])}", file=sys.stderr)
    for per_year in figures.values():
        per_year["mean"] = round(float(np.mean([v["mae"] for v in per_year.values()])), 3)
    fragment = {"backtest": figures}
    write_json(out, fragment)
    return fragment


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="train on the films before each year, score that year's films")
    p.add_argument("--params", default="params.yaml", help="the parameters file (backtest, train sections)")
    p.add_argument("--encoded", default="data/encoded", help="the encode stage's folder")
    p.add_argument("--out", default="artifacts/metrics/backtest.json", help="the metrics fragment to write")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_main)


def _main(args) -> int:
    fragment = run_backtest(load(args.params), Path(args.encoded), Path(args.out), progress=not args.quiet)
    means = ", ".join(f"{m} {v['mean']:.3f}" for m, v in fragment["backtest"].items())
    print(f"backtest: mean MAE over the years {means} -> {args.out}", file=sys.stderr)
    return 0
