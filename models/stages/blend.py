"""A stacked blend: the K-ADN student and the strongest baselines combined with non-negative weights (plus
an intercept) fitted on their out-of-fold predictions, so no weight is fitted on a prediction a model
made for a film it trained on. Reported as its own row (`blend`), never in place of a model's own row.
The weights minimise the squared error (`blend.loss: squared`) or, matching the MAE every row is judged
by, the absolute error (`absolute`: least absolute deviations, a linear programme).

Its cross-validated error is cross-fitted on the same folds as the models': the weights scoring fold k
are fitted on the other folds' held-out predictions of the same repeat, never on fold k's scores.

The `blend` row's weights follow the random-split protocol of every `models` row: fitted on the out-of-fold
predictions of the films outside the test split. The saved blend, the one `kadn forecast` sums, has its own
(`blend.weights: forward`): fitted on the members' forward predictions of every backtest year (`forward.npz`,
models.stages.backtest: each film scored by models trained on earlier films, as a forecast is), so it is the
blend the backtest's `blend` row measures, with one more year behind its weights. Forward predictions are
narrower than the scores (every member's slope of score on forward prediction is 1.1-1.3), so forward
weights sum past 1 with a negative intercept; on random-split films, which the members trained beside,
they stretch too far. With `out_of_fold`, and for the with_popularity set (no backtest), the saved weights
are the row's. No film of the test split sets either.

The saved blend (`artifacts/models/blend/`, models.serving.saved_blend) names its members' folders and their
checksums, so `kadn forecast --model blend` sums the members' forecasts; its `oof.npz` holds the
cross-fitted predictions, on which its intervals fall back like any model's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from models.serving.artifacts import SKIPPED, encoded_digest, load_model
from models.serving.results import DECIMALS, cv_summary, model_view, rows_of
from models.serving.saved_blend import NAME, OUTPUT, member_digest, save_blend
from models.training import conformal
from models.training.config import REPORTED
from models.training.cv import errors
from models.training.data import cv_folds
from models.training.runtime import runtime
from models.training.stacking import fit_forward, fit_weights
from models.training.trend import saved_offset
from pipeline.errors import KadnError
from pipeline.features.encode import Encoded, load_encoded
from pipeline.io import write_json
from pipeline.params import Params, load


def stacked(oof: dict[str, np.ndarray], members: list[str]) -> np.ndarray:
    """[repeats, films, members]: each member's out-of-fold predictions side by side."""
    return np.stack([oof[m] for m in members], -1)


def cross_fitted(oof: dict[str, np.ndarray], members: list[str], y: np.ndarray,
                 folds: list[tuple[np.ndarray, np.ndarray]], per_repeat: int, loss: str,
                 into: np.ndarray | None = None) -> dict[str, list[float]]:
    """{"mae": [per fold], "rmse": [per fold]} of the blend on `folds` (those the members were
    cross-validated on, `per_repeat` of them per repeat), each fold scored with weights fitted on the
    other folds' held-out predictions of its repeat. `into` ([repeats, films]) receives those predictions."""
    preds = stacked(oof, members)
    out: dict[str, list[float]] = {"mae": [], "rmse": []}
    for k, (_, held) in enumerate(folds):
        p = preds[k // per_repeat]
        others = np.setdiff1d(np.flatnonzero(np.isfinite(p).all(1)), held)
        model = fit_weights(p[others], y[others], loss)
        pred = model.predict(p[held])
        if into is not None:
            into[k // per_repeat, held] = pred
        mae, rmse = errors(pred, y[held])
        out["mae"].append(round(mae, 6))
        out["rmse"].append(round(rmse, 6))
    return out


def load_oof(folder: Path, output: str, enc: Encoded, repeats: int) -> np.ndarray:
    """[repeats, films]: the model's out-of-fold predictions of `output` (its `oof.npz`), NaN where a film is
    never held out (films before the range only ever train)."""
    data = conformal.load(folder)
    key = f"pred_{output}"
    oof = np.full((repeats, len(enc.rating)), np.nan)
    fits = {key, "douban_id", "repeat"} <= data.keys()  # a file of an older layout has other keys
    if fits:
        ids = data["douban_id"]
        order = np.argsort(enc.douban_id)
        at = order[np.searchsorted(enc.douban_id, ids, sorter=order).clip(0, len(order) - 1)]
        fits = bool((enc.douban_id[at] == ids).all()) and data["repeat"].max(initial=-1) < repeats
    if fits:
        oof[data["repeat"], at] = data[key]
    if not fits or not np.isfinite(oof[:, enc.in_range]).all():
        raise KadnError(f"{folder / conformal.FILE}: no {output} predictions for these {len(enc.rating)} films "
                        f"and {repeats} CV repeat(s); retrain with `kadn train {folder.name}` (or `dvc repro`)")
    return oof


def forward_predictions(path: Path, enc: Encoded, members: list[str],
                        leave_out: np.ndarray) -> tuple[dict, dict, list[int]]:
    """({member: {year: forward predictions}}, {year: scores}, years) from the backtest's forward.npz, without
    the films of `leave_out` (douban ids); a KadnError naming the file when it is missing, lacks a member or
    belongs to another encoding."""
    rerun = "re-run `kadn backtest` (or `dvc repro`)"
    data = conformal.read_forward(path)
    if data is None:
        raise KadnError(f"{path}: missing (blend.weights: forward fits the weights on the backtest's forward "
                        f"predictions); {rerun}, or set blend.weights: out_of_fold")
    order = np.argsort(enc.douban_id)
    forward: dict[str, dict[int, np.ndarray]] = {}
    y: dict[int, np.ndarray] = {}
    first = data["model"] == members[0]
    years = sorted({int(v) for v in data["year"][first]})
    for year in years:
        rows = first & (data["year"] == year)
        ids, scores = data["douban_id"][rows], data["y"][rows]
        pos = order[np.searchsorted(enc.douban_id, ids, sorter=order).clip(0, len(order) - 1)]
        if not (enc.douban_id[pos] == ids).all() or not np.allclose(enc.rating[pos], scores):
            raise KadnError(f"{path}: from another encoding (its {year} films are not these films with these "
                            f"scores); {rerun}")
        keep = ~np.isin(ids, leave_out)
        y[year] = scores[keep]
        for m in members:
            at = (data["model"] == m) & (data["year"] == year)
            if not np.array_equal(data["douban_id"][at], ids):
                raise KadnError(f"{path}: no forward predictions of {m} for the {year} films {members[0]} scored; "
                                f"{rerun} with {m} in backtest.models")
            forward.setdefault(m, {})[year] = data["pred"][at][keep]
    if not years:
        raise KadnError(f"{path}: no forward predictions of {members[0]}; {rerun} with it in backtest.models")
    return forward, y, years


def blend_row(params: Params, enc: Encoded, root: Path, digest: str,
              forward: Path | None) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """The blend's row of one feature set, by the random-split protocol every `models` row follows: the
    test-split error with weights fitted on the out-of-fold predictions of the films outside the test split,
    and the cross-fitted CV error on the models' folds. With the saved blend's meta.json and oof.npz
    (models.serving.saved_blend): its weights are the row's, or with `forward` given (the backtest's
    forward.npz) fitted on the members' forward predictions of the films outside the test split."""
    members, spec = params.blend.members, params.train.common.cv
    y = enc.rating.astype(np.float64)
    oof = {m: load_oof(root / REPORTED[m][0], REPORTED[m][1], enc, spec.repeats) for m in members}
    folds = cv_folds(len(y), spec.folds, spec.repeats, spec.seed, enc.in_range)
    held_out = np.full((spec.repeats, len(y)), np.nan)
    cv = cross_fitted(oof, members, y, folds, spec.folds, params.blend.loss, into=held_out)
    test = enc.index("test")
    preds = stacked(oof, members)
    fit_rows = np.setdiff1d(np.flatnonzero(enc.in_range), test)  # the test films never set a weight
    protocol = fit_weights(preds[:, fit_rows].reshape(-1, len(members)), np.tile(y[fit_rows], spec.repeats),
                           params.blend.loss)
    shipped, fitted_on = protocol, (f"out-of-fold predictions of the {len(fit_rows)} in-range films outside the "
                                    f"test split, {spec.repeats} CV repeat(s)")
    if forward is not None:
        scored, target, years = forward_predictions(forward, enc, members, enc.douban_id[test])
        shipped = fit_forward(scored, target, years, params.blend)
        fitted_on = (f"forward predictions of the {sum(len(v) for v in target.values())} films of backtest years "
                     f"{years[0]}-{years[-1]} outside the test split (each scored by models trained on earlier "
                     f"films)")
    scores = []
    for m in members:
        artifact, output = REPORTED[m]
        loaded = load_model(root, artifact)
        if loaded.vocab["vocab_digest"] != digest:
            raise KadnError(f"{root / artifact}: trained on another encoding; retrain with `dvc repro`")
        scores.append(loaded.score(rows_of(model_view(enc, loaded), test), output)
                      + saved_offset(loaded.vocab, None if enc.release is None else enc.release[test]))
    scores = np.stack(scores, -1)
    mae, rmse = errors(protocol.predict(scores), y[test])
    row = {"mae": round(mae, DECIMALS), "rmse": round(rmse, DECIMALS), **cv_summary(cv), "members": list(members),
           "weights": [round(float(w), DECIMALS) for w in protocol.coef_],
           "intercept": round(float(protocol.intercept_), DECIMALS)}
    mae, rmse = errors(shipped.predict(scores), y[test])
    meta = {"kind": NAME, "feature_set": loaded.vocab["feature_set"], "vocab_digest": digest,
            "members": [{"name": m, "weight": float(w), "checksums_sha256": member_digest(root, m)}
                        for m, w in zip(members, shipped.coef_)],
            "intercept": float(shipped.intercept_), "loss": params.blend.loss,
            "fitted_on": fitted_on,
            "test": {"mae": round(mae, DECIMALS), "rmse": round(rmse, DECIMALS)}, "cv": {OUTPUT: cv}}
    return row, meta, held_out_arrays(root / REPORTED[members[0]][0], enc, held_out)


def held_out_arrays(first: Path, enc: Encoded, held_out: np.ndarray) -> dict[str, np.ndarray]:
    """The blend's oof.npz: the rows of its first member's (repeat, fold, film, known share), with the
    blend's cross-fitted prediction of each."""
    data = conformal.load(first)
    order = np.argsort(enc.douban_id)
    at = order[np.searchsorted(enc.douban_id, data["douban_id"], sorter=order)]  # load_oof checked every id
    keep = ("repeat", "fold", "douban_id", "split", "known", "y")
    return {**{k: data[k] for k in keep}, f"pred_{OUTPUT}": held_out[data["repeat"], at]}


def run_blend(params: Params, encoded_dir: Path, roots: dict[str, Path], out: Path,
              forward: Path | None = None) -> dict:
    """The metrics fragment `models.blend` (and `models_with_popularity.blend` when that set was trained);
    the saved blend in each root (`skipped.json` there when the feature set was not trained). With
    `blend.weights: forward`, the pre_release weights are fitted on `forward` (the backtest's forward.npz)."""
    enc = load_encoded(encoded_dir)
    digest = encoded_digest(encoded_dir)
    fragment: dict = {}
    saved: dict[Path, tuple[dict, dict] | None] = {}
    common = params.train.common
    with runtime(seed=common.seed, threads=common.threads):  # the members' scores, as evaluate computes them
        for feature_set, root in roots.items():
            if any((root / REPORTED[m][0] / SKIPPED).exists() for m in params.blend.members):
                saved[root] = None  # the feature set was not trained (no popularity counts): evaluate reports why
                continue
            key = "models" if feature_set == "pre_release" else f"models_{feature_set}"
            by_forward = params.blend.weights == "forward" and feature_set == "pre_release"
            if by_forward and forward is None:
                raise KadnError("blend.weights: forward needs the backtest's forward predictions (--forward)")
            row, meta, arrays = blend_row(params, enc, root, digest, forward if by_forward else None)
            fragment[key], saved[root] = {"blend": row}, (meta, arrays)
    # Written once every feature set is fitted: a refused one leaves no blend of the other half-made.
    for root, fitted in saved.items():
        if fitted is None:
            _skip(root / NAME, "its members were not trained on this feature set")
        else:
            save_blend(root / NAME, *fitted)
    write_json(out, fragment)
    return fragment


def _skip(folder: Path, reason: str) -> None:
    """The folder holds skipped.json alone (it is a DVC output either way)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_file():
            old.unlink()
    write_json(folder / SKIPPED, {"name": NAME, "skipped": reason})


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="stack the student and the strongest baselines on their out-of-fold predictions; "
                       "saved as the model blend beside them")
    p.add_argument("--params", default="params.yaml", help="the parameters file (blend, train.common)")
    p.add_argument("--encoded", default="data/encoded", help="the encode stage's folder")
    p.add_argument("--models", default="artifacts/models", help="the pre_release models (the blend is saved "
                   "among them, as blend/)")
    p.add_argument("--models-popularity", default="artifacts/models_with_popularity",
                   help="the with_popularity models")
    p.add_argument("--forward", default="artifacts/backtest/forward.npz",
                   help="the backtest's forward predictions, which the weights are fitted on (blend.weights: forward)")
    p.add_argument("--out", default="artifacts/metrics/blend.json", help="the metrics fragment to write")
    p.set_defaults(func=_main)


def _main(args) -> int:
    roots = {"pre_release": Path(args.models), "with_popularity": Path(args.models_popularity)}
    fragment = run_blend(load(args.params), Path(args.encoded), roots, Path(args.out), Path(args.forward))
    summary = "; ".join(f"{k}: test MAE {v['blend']['mae']:.3f}, CV {v['blend']['cv_mae_mean']:.3f}"
                        for k, v in fragment.items())
    saved = ", ".join(str(root / NAME) for root in roots.values() if (root / NAME / "model.json").exists())
    print(f"blend: {summary or 'nothing to blend'} -> {args.out}" + (f"; saved as {saved}" if saved else ""),
          file=sys.stderr)
    return 0
