"""`kadn train MODEL`: fit one model on the fixed split's training rows (the nets keep their best validation
checkpoint), save it under artifacts/models/MODEL/, then run repeated k-fold cross-validation of the same
model on the same features (vocabularies rebuilt inside every fold, so no fold leaks).

Both feature sets are trained by default: `pre_release` -> artifacts/models/MODEL, `with_popularity`
(+ the dense popularity inputs) -> artifacts/models_with_popularity/MODEL.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from models import track_records
from models.artifacts import baseline_files, net_files, save_model, vocab_payload
from models.config import MODELS, model_config
from models.cv import cross_validate
from models.data import DENSE, FEATURE_SETS, FitData, dense_columns, features_from
from models.fit import fit_model, set_determinism
from pipeline.encode import Encoded, load_encoded
from pipeline.errors import KadnError
from pipeline.io import atomic_path, write_json
from pipeline.params import Params, load


def encoded_digest(encoded_dir: Path) -> str:
    return json.loads((Path(encoded_dir) / "meta.json").read_text(encoding="utf-8"))["vocab_digest"]


SKIPPED = "skipped.json"  # left in a model's folder instead of a model when its feature set has no data
OOF_FILE = "oof.npz"  # its CV's held-out predictions per output, [repeats, films] (models.blend stacks them)


def run_train(name: str, params: Params, encoded_dir: Path, out_root: Path, progress: bool = False,
              feature_set: str = "pre_release") -> dict:
    """Train, save and cross-validate `name` on `feature_set`. With `with_popularity` and no popularity
    count anywhere in the data, nothing is trained: the folder holds skipped.json with the reason."""
    if feature_set not in FEATURE_SETS:
        raise KadnError(f"unknown feature set {feature_set!r}; choose one of {', '.join(FEATURE_SETS)}")

    common = params.train.common
    set_determinism(common.threads)
    cfg = model_config(params.train, name)
    enc: Encoded = load_encoded(encoded_dir)
    digest = encoded_digest(encoded_dir)
    out = Path(out_root) / name
    notes: list[str] = []
    if feature_set != "pre_release":
        columns, notes = dense_columns(enc.popularity)
        if not columns:
            return _skip(out, name, feature_set, "no popularity counts in the data")
    y = enc.rating.astype(np.float32)
    train_rows, val_rows = enc.index("train"), enc.index("val")
    restricted = enc.restrict(train_rows, common.min_count)
    track_cfg = common.track_records
    build = features_from(enc, restricted.x, feature_set, track_cfg)
    x, dense = build(train_rows)
    trained = fit_model(name, cfg, common, FitData(x, restricted.freq, y, train_rows, val_rows), common.seed,
                        progress, build)
    chosen: list = []
    oof: dict = {}
    cv = cross_validate(name, enc, cfg, common, progress, feature_set, chosen, oof)
    meta = {"name": name, "kind": name, "config": cfg.model_dump(), "feature_set": feature_set,
            "track_records": track_cfg.model_dump(), "notes": notes, "train_s": round(trained.train_s, 3),
            "train_rows": int(len(train_rows)), "val_rows": int(len(val_rows)), "cv": cv}
    if trained.estimator is not None:
        meta["chosen"], meta["cv_chosen"] = trained.chosen, chosen
        meta["oov"] = common.oov
    history: list = []
    if trained.estimator is not None:
        files = baseline_files(name, trained.estimator)
    else:
        fits = trained.fits
        meta["epochs_run"] = [f.history[-1]["epoch"] if f.history else 0 for f in fits]
        meta["best"] = [f.best for f in fits]
        meta["head"] = fits[0].head.kind
        history = fits[0].history
        files = net_files(name, cfg.model_dump(), restricted.sizes(), fits[0].head,
                          [f.model.state_dict() for f in fits], x[DENSE].shape[1] if DENSE in x else 0)
    (out / SKIPPED).unlink(missing_ok=True)
    saved_track = track_records.payload(enc, train_rows, track_cfg) if track_cfg.enabled else None
    save_model(out, files, vocab_payload(enc, restricted, digest, dense, feature_set, saved_track), meta,
               history)
    with atomic_path(out / OOF_FILE, ".npz") as tmp, tmp.open("wb") as fh:
        np.savez_compressed(fh, **oof)
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
    roots = {"pre_release": Path(args.out), "with_popularity": Path(args.out_popularity)}
    for feature_set in args.feature_sets:
        root = roots[feature_set]
        meta = run_train(args.model, params, Path(args.encoded), root, progress=not args.quiet,
                         feature_set=feature_set)
        if "skipped" in meta:
            print(f"train {args.model} ({feature_set}): skipped, {meta['skipped']}", file=sys.stderr)
            continue
        summary = ", ".join(f"{out} MAE {np.mean(v['mae']):.4f} ± {np.std(v['mae']):.4f}"
                            for out, v in meta["cv"].items())
        print(f"train {args.model} ({feature_set}): {meta['train_s']:.1f}s on {meta['train_rows']} films; "
              f"CV {summary} -> {root / args.model}" + "".join(f"; {n}" for n in meta["notes"]), file=sys.stderr)
    return 0
