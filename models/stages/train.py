"""`kadn train MODEL`: fit one model on the fixed split's training rows (the nets keep their best validation
checkpoint), save it under artifacts/models/MODEL/, then run repeated k-fold cross-validation of the same
model on the same features (vocabularies rebuilt inside every fold, so no fold leaks).

Both feature sets are trained by default: `pre_release` -> artifacts/models/MODEL, `with_popularity`
(+ the dense popularity inputs) -> artifacts/models_with_popularity/MODEL.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from models.serving.artifacts import SKIPPED, encoded_digest, save_model, vocab_payload
from models.training import conformal, track_records
from models.training.config import MODELS, model_config
from models.training.cv import gather_folds, submit_folds
from models.training.data import FEATURE_SETS, cv_folds, dense_columns, fit_inputs, fold_split
from models.training.fit import fit_model
from models.training.runtime import run_task, runtime
from pipeline import registry
from pipeline.errors import KadnError
from pipeline.features.encode import Encoded, load_encoded
from pipeline.io import write_json
from pipeline.params import Baseline, Common, Params, load


def run_train(name: str, params: Params, encoded_dir: Path, out_root: Path, progress: bool = False,
              feature_set: str = "pre_release", pool=None) -> dict:
    """Train, save and cross-validate `name` on `feature_set`. With `with_popularity` and no popularity
    count anywhere in the data, nothing is trained: the folder holds skipped.json with the reason. With
    `pool` (models.training.runtime), the fits run in its worker processes."""
    common = params.train.common
    with runtime(seed=common.seed, threads=common.threads):  # the pool, if any, is the caller's
        return start_train(name, params, encoded_dir, out_root, progress, feature_set, pool)()


def start_train(name: str, params: Params, encoded_dir: Path, out_root: Path, progress: bool = False,
                feature_set: str = "pre_release", pool=None, enc: Encoded | None = None):
    """Submit `run_train`'s fits (to `pool` if any) and return the function that waits for them, saves the
    model and returns its meta: several feature sets can share the workers. Run under
    `models.training.runtime.runtime`, which sets the seeds and threads."""
    if feature_set not in FEATURE_SETS:
        raise KadnError(f"unknown feature set {feature_set!r}; choose one of {', '.join(FEATURE_SETS)}")

    common = params.train.common
    cfg = model_config(params.train, name)
    enc = load_encoded(encoded_dir) if enc is None else enc
    tuned = isinstance(cfg, Baseline) and len(cfg.grid_settings()) > 1
    common.check_folds(int(enc.in_range.sum()))  # before any fit: a fold without films fails deep inside one
    if tuned:
        common.check_folds(int(enc.in_range.sum()), smallest_fit(enc, common))
    digest = encoded_digest(encoded_dir)
    out = Path(out_root) / name
    notes: list[str] = []
    if feature_set != "pre_release":
        columns, notes = dense_columns(enc.popularity)
        if not columns:
            meta = _skip(out, name, feature_set, "no popularity counts in the data")
            return lambda: meta
    # Progress bars only from this process: workers' bars would overwrite each other.
    fixed = run_task(pool, enc, fit_fixed, name, cfg, common, feature_set, progress and pool is None)
    folds = submit_folds(pool, enc, name, cfg, common, feature_set)

    def finish() -> dict:
        trained, restricted, dense, record = fixed.result()
        chosen: list = []
        held: list = []
        cv = gather_folds(folds, name, feature_set, progress, chosen, held)
        return _save(name, enc, digest, out, cfg, common, feature_set, notes, trained, restricted, dense, record,
                     cv, chosen, held)

    return finish


def smallest_fit(enc: Encoded, common: Common) -> int:
    """The training rows of the smallest fit `kadn train` makes: the fixed split's, or a CV fold's fit rows
    (as `models.training.cv.cv_fold` draws them)."""
    spec = common.cv
    folds = cv_folds(len(enc.rating), spec.folds, spec.repeats, spec.seed, enc.in_range)
    fits = [len(fold_split(tr, spec.val, spec.seed + k, enc.in_range)[0]) for k, (tr, _) in enumerate(folds)]
    return min([len(enc.index("train")), *fits])


def fit_fixed(enc: Encoded, name: str, cfg, common: Common, feature_set: str, progress: bool = False):
    """The model on the fixed split's training rows (validated on its val rows): (FittedModel, the restricted
    vocabularies, the dense inputs' statistics, what the saved folder records of the fit: its row counts and
    the track-record payload, read from the fit's own sources)."""
    inputs = fit_inputs(enc, name, common, feature_set, enc.index("train"), enc.index("val"))
    trained = fit_model(name, cfg, common, inputs.data, common.seed, progress, inputs.build)
    track_cfg = common.track_records
    record = {"train_rows": int(len(inputs.data.train_rows)), "val_rows": int(len(inputs.data.val_rows)),
              "track": (track_records.payload(enc, inputs.sources, track_cfg, inputs.scores)
                        if track_cfg.enabled else None)}
    return trained, inputs.restricted, inputs.dense, record


def _save(name, enc, digest, out, cfg, common, feature_set, notes, trained, restricted, dense, record, cv, chosen,
          held):
    meta = {"name": name, "kind": name, "config": cfg.model_dump(), "feature_set": feature_set,
            "track_records": common.track_records.model_dump(), "notes": notes,
            "train_rows": record["train_rows"], "val_rows": record["val_rows"], "cv": cv}
    if trained.estimator is not None:
        meta["chosen"], meta["cv_chosen"] = trained.chosen, chosen
    files, kind_meta, curve = registry.kind_module(name, "saved").files(trained, cfg, restricted)
    meta.update(kind_meta)
    (out / SKIPPED).unlink(missing_ok=True)
    vocab = vocab_payload(enc, restricted, digest, dense, feature_set, record["track"])
    vocab["trend"] = trained.trend.to_dict()  # models.training.trend: added back to every score of the saved model
    save_model(out, files, vocab, meta, curve)
    conformal.save(out, held, enc.split, enc.douban_id, enc.rating)  # for intervals and the blend
    return meta


def _skip(out: Path, name: str, feature_set: str, reason: str) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_file():
            old.unlink()
    meta = {"name": name, "feature_set": feature_set, "skipped": reason}
    write_json(out / SKIPPED, meta)
    return meta


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="train one model (and cross-validate it) on the encoded features")
    p.add_argument("model", help=f"one of {', '.join(MODELS)}")
    p.add_argument("--params", default="params.yaml", help="the parameters file")
    p.add_argument("--encoded", default="data/encoded", help="the encode stage's folder")
    p.add_argument("--out", default="artifacts/models", help="where the pre_release model goes")
    p.add_argument("--out-popularity", default="artifacts/models_with_popularity",
                   help="where the with_popularity model goes")
    p.add_argument("--feature-sets", nargs="+", default=list(FEATURE_SETS), choices=FEATURE_SETS,
                   help="feature sets to train on")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_main)


def _main(args) -> int:
    if args.model not in MODELS:
        raise KadnError(f"unknown model {args.model!r}; choose one of {', '.join(MODELS)}")
    params = load(args.params)
    common = params.train.common
    roots = {"pre_release": Path(args.out), "with_popularity": Path(args.out_popularity)}
    enc = load_encoded(Path(args.encoded))
    started = time.perf_counter()  # printed, never saved: a model folder holds no wall-clock figure
    # Every feature set's fits are queued at once, so the workers stay busy until the last one.
    with runtime(seed=common.seed, threads=common.threads, workers=common.workers, shared=enc) as pool:
        pending = [(fs, start_train(args.model, params, Path(args.encoded), roots[fs], not args.quiet, fs, pool,
                                    enc)) for fs in args.feature_sets]
        metas = [(fs, finish()) for fs, finish in pending]
    elapsed = time.perf_counter() - started
    for feature_set, meta in metas:
        root = roots[feature_set]
        if "skipped" in meta:
            print(f"train {args.model} ({feature_set}): skipped, {meta['skipped']}", file=sys.stderr)
            continue
        summary = ", ".join(f"{out} MAE {np.mean(v['mae']):.4f} ± {np.std(v['mae']):.4f}"
                            for out, v in meta["cv"].items())
        print(f"train {args.model} ({feature_set}): {meta['train_rows']} films, {elapsed:.1f}s in all; "
              f"CV {summary} -> {root / args.model}" + "".join(f"; {n}" for n in meta["notes"]), file=sys.stderr)
    return 0
