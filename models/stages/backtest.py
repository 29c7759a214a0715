"""`kadn backtest`: the forward backtest, the project's yardstick. For each year, every model of
`backtest.models` is trained (pre_release features, baselines tuned on their own training rows, nets with
their shipped seeds unless `backtest.seeds` says otherwise) on the films released before that year, and
scores that year's films; the random split and its CV stay the paper's protocol.

Years: `backtest.years: auto` reports the last `last` calendar years that hold `min_films` in-range films and
follow `calibration_years` such years; an explicit list is taken as given, a year without films (or without
earlier films to train on) skipped with one line on stderr. The `calibration_years` years before the first
reported one are fitted and scored too, but not reported: with every earlier year's forward predictions they
make an expanding window, so year Y's intervals are calibrated on (models.training.conformal, per known-share bin),
and the blend's weights (blend.members, blend.loss) fitted on, forward residuals of years before Y alone.

Films from before the range (clean.history) are training rows of every year; only in-range films are scored.
Writes a metrics fragment, `backtest.<model>.<year>` = {mae, rmse, bias, films, coverage, mean_width} and
`backtest.<model>.{mean, pooled}` (over the years; over the films), merged into metrics.json by `kadn metrics`,
and every scored film's forward prediction and known share (`forward.npz`), which `kadn forecast` calibrates
its intervals on.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.training.config import BASELINES, REPORTED, model_config
from models.training.conformal import FORWARD_KEYS, calibrate, known_share
from models.training.data import fit_inputs, fold_split
from models.training.fit import fit_model
from models.training.runtime import run_task, runtime
from models.training.stacking import fit_forward
from pipeline.errors import KadnError
from pipeline.features.encode import Encoded, load_encoded
from pipeline.io import atomic_path, write_json
from pipeline.params import BacktestConfig, BlendConfig, Params, load

MIN_TRAIN = 10  # fewer earlier films than this: a year cannot be backtested
DECIMALS = 3


def year_rows(enc: Encoded, year: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows: every film released before `year`, scored rows: the in-range films of `year`)."""
    if enc.release is None:
        raise KadnError("the encoded data holds no release dates; re-run `kadn encode` (or `dvc repro`)")
    released = enc.release // 10000
    known = enc.release > 0
    train = np.flatnonzero(known & (released < year))
    scored = np.flatnonzero(known & (released == year) & enc.in_range)
    return train, scored


@dataclass
class Plan:
    """Which years the backtest fits: `calibration` (scored, not reported) then `reported`; `skipped` notes."""

    calibration: list[int]
    reported: list[int]
    skipped: list[str]

    @property
    def years(self) -> list[int]:
        return self.calibration + self.reported


def plan_years(enc: Encoded, cfg: BacktestConfig, where: str = "data/encoded") -> Plan:
    """The years to fit (see the module docstring); a KadnError when no year can be reported."""
    year_rows(enc, 0)  # refuses an encoding without release dates
    released = enc.release // 10000
    counts = np.bincount(released[(enc.release > 0) & enc.in_range], minlength=1)
    full = [int(y) for y in np.flatnonzero(counts >= cfg.min_films)]  # years with min_films films
    if cfg.years == "auto":
        reported = full[cfg.calibration_years:][-cfg.last:]
        if not reported:
            raise KadnError(f"{where}: no year holds backtest.min_films ({cfg.min_films}) films after "
                            f"{cfg.calibration_years} such years; store more films or lower backtest.min_films")
        skipped = []
    else:
        reported, skipped = [], []
        for year in cfg.years:
            train, scored = year_rows(enc, year)
            if len(scored) == 0 or len(train) < MIN_TRAIN:
                skipped.append(f"{year} ({len(scored)} films of its own, {len(train)} earlier)")
            else:
                reported.append(year)
        if not reported:
            raise KadnError(f"{where}: no year of backtest.years has films of its own and {MIN_TRAIN} earlier "
                            f"ones (skipped {', '.join(skipped)}); change params.yaml backtest.years or use auto")
    earlier = [y for y in full if y < reported[0] and len(year_rows(enc, y)[0]) >= MIN_TRAIN]
    return Plan(earlier[-cfg.calibration_years:], reported, skipped)


def fit_year(enc: Encoded, params: Params, year: int, name: str) -> dict[str, np.ndarray]:
    """Model `name` trained on the films before `year`: {reported row: its scores of `year`'s films, "known":
    their known shares}."""
    common = params.train.common
    train_rows, scored = year_rows(enc, year)
    inputs = fit_inputs(enc, name, common, "pre_release",
                        *fold_split(train_rows, common.cv.val, common.cv.seed + year, enc.in_range))
    model_cfg = model_config(params.train, name)
    if name not in BASELINES and params.backtest.seeds is not None:
        model_cfg = model_cfg.model_copy(update={"seeds": params.backtest.seeds})
    trained = fit_model(name, model_cfg, common, inputs.data, common.seed + year, features=inputs.build)
    outputs = trained.scores(scored)
    preds = {reported: outputs[output] for reported, (artifact, output) in REPORTED.items()
             if artifact == name and output in outputs}
    return {**preds, "known": known_share(inputs.restricted.x, scored)}


def blended(forward: dict, known: dict, y: dict, blend: BlendConfig) -> tuple[dict, dict]:
    """The blend's forward predictions and known shares for every year after the first: weights fitted on
    the members' forward predictions of the earlier years only."""
    preds, shares = {}, {}
    years, members = sorted(y), blend.members
    for i, year in enumerate(years[1:], 1):
        weights = fit_forward(forward, y, years[:i], blend)
        preds[year] = weights.predict(np.stack([forward[m][year] for m in members], -1))
        shares[year] = known[members[0]][year]
    return preds, shares


def row_figures(pred: dict, known: dict, y: dict, reported: list[int], params: Params) -> dict:
    """{year: {mae, rmse, bias, films, coverage, mean_width}, mean, pooled} of one row; a year's interval is
    calibrated on the forward residuals of the earlier years (none: no coverage figure)."""
    out, hits, widths = {}, {}, {}
    reported = [year for year in reported if year in pred]  # the blend has none for the first fitted year
    for year in reported:
        err = pred[year] - y[year]
        fig = _errors(err)
        past = [p for p in pred if p < year]
        if past:
            residuals = np.concatenate([pred[p] - y[p] for p in past])
            half = calibrate(residuals, np.concatenate([known[p] for p in past]), params.forecast).half_width(
                known[year])
            hits[year], widths[year] = np.abs(err) <= half, 2 * half
            fig.update(coverage=_r(hits[year].mean()), mean_width=_r(widths[year].mean()))
        out[str(year)] = fig
    keys = [k for k in ("mae", "rmse", "bias", "coverage", "mean_width") if all(k in out[str(y)] for y in reported)]
    out["mean"] = {k: _r(np.mean([out[str(y)][k] for y in reported])) for k in keys}
    pooled = _errors(np.concatenate([pred[y_] - y[y_] for y_ in reported]))
    if len(hits) == len(reported):
        pooled.update(coverage=_r(np.concatenate(list(hits.values())).mean()),
                      mean_width=_r(np.concatenate(list(widths.values())).mean()))
    out["pooled"] = pooled
    return out


def _r(value) -> float:
    return round(float(value), DECIMALS)


def _errors(err: np.ndarray) -> dict:
    err = np.asarray(err, np.float64)
    return {"mae": _r(np.abs(err).mean()), "rmse": _r(np.sqrt((err ** 2).mean())), "bias": _r(err.mean()),
            "films": int(len(err))}


def save_forward(path: Path, enc: Encoded, forward: dict, known: dict) -> None:
    """Every row's forward predictions, one entry per (row, year, film): what `kadn forecast` calibrates on."""
    parts: dict[str, list] = {k: [] for k in FORWARD_KEYS}
    for row, per_year in forward.items():
        for year, pred in per_year.items():
            scored = year_rows(enc, year)[1]
            parts["model"].append(np.full(len(pred), row))
            parts["year"].append(np.full(len(pred), year, np.int32))
            parts["douban_id"].append(enc.douban_id[scored].astype(np.int64))
            parts["known"].append(np.asarray(known[row][year], np.float64))
            parts["pred"].append(np.asarray(pred, np.float64))
            parts["y"].append(enc.rating[scored].astype(np.float64))
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    arrays["model"] = arrays["model"].astype("U16")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".npz") as tmp, tmp.open("wb") as fh:
        np.savez(fh, **arrays)


def fit_all(enc: Encoded, params: Params, years: list[int], progress: bool, pool=None) -> tuple[dict, dict]:
    """({row: {year: forward predictions}}, {row: {year: known shares}}) of every (year, model) fit, in the
    worker processes of `pool` (models.training.runtime) if given."""
    cfg = params.backtest
    # Every (year, model) fit is its own seeded task, so the worker processes give the bytes of one process;
    # the latest years (the most rows) go first, so no long fit starts last.
    order = sorted(((year, name) for year in years for name in cfg.models), key=lambda t: -t[0])
    forward: dict[str, dict] = {}
    known: dict[str, dict] = {}
    tasks = {key: run_task(pool, enc, fit_year, params, *key) for key in order}
    for year in years:
        for name in cfg.models:
            result = tasks[(year, name)].result()
            share = result.pop("known")
            for row, pred in result.items():
                forward.setdefault(row, {})[year] = pred
                known.setdefault(row, {})[year] = share
            if progress:
                print(f"backtest {year} {name}: trained on the films before {year}, scored "
                      f"{len(share)}", file=sys.stderr)
    return forward, known


def run_backtest(params: Params, encoded_dir: Path, out: Path, progress: bool = False,
                 forward_out: Path | None = None) -> dict:
    enc = load_encoded(encoded_dir)
    plan = plan_years(enc, params.backtest, str(encoded_dir))  # every year checked before any training
    common = params.train.common
    first = year_rows(enc, plan.years[0])[0]  # the earliest year's fit is the smallest a grid is tuned on
    smallest = len(fold_split(first, common.cv.val, common.cv.seed + plan.years[0], enc.in_range)[0])
    common.check_folds(int(enc.in_range.sum()), smallest)
    if plan.skipped:
        print(f"backtest: skipped {', '.join(plan.skipped)}", file=sys.stderr)
    with runtime(seed=common.seed, threads=common.threads, workers=common.workers, shared=enc) as pool:
        forward, known = fit_all(enc, params, plan.years, progress, pool)
        y = {year: enc.rating[year_rows(enc, year)[1]].astype(np.float64) for year in plan.years}
        members = params.blend.members
        if len(plan.years) > 1 and all(m in forward for m in members):
            forward["blend"], known["blend"] = blended(forward, known, y, params.blend)
        figures = {row: row_figures(pred, known[row], y, plan.reported, params) for row, pred in forward.items()}
    fragment = {"backtest": figures}
    if forward_out is not None:
        save_forward(forward_out, enc, forward, known)
    write_json(out, fragment)
    return fragment


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="train on the films before each year, score that year's films")
    p.add_argument("--params", default="params.yaml", help="the parameters file (backtest, train sections)")
    p.add_argument("--encoded", default="data/encoded", help="the encode stage's folder")
    p.add_argument("--out", default="artifacts/metrics/backtest.json", help="the metrics fragment to write")
    p.add_argument("--forward", default="artifacts/backtest/forward.npz",
                   help="every scored film's forward prediction and known share (for kadn forecast)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_main)


def _main(args) -> int:
    fragment = run_backtest(load(args.params), Path(args.encoded), Path(args.out), progress=not args.quiet,
                            forward_out=Path(args.forward))
    means = ", ".join(f"{m} {v['mean']['mae']:.3f}" for m, v in fragment["backtest"].items())
    print(f"backtest: mean MAE over the years {means} -> {args.out}", file=sys.stderr)
    return 0
