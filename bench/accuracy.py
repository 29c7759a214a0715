"""Every model under the same repeated k-fold cross-validation on the encoded snapshot (identical folds,
vocabularies rebuilt per fold), as a Markdown table of MAE and RMSE (mean ± sd over folds), for each feature
set (pre_release, with_popularity), then the paired per-fold differences K-ADN student minus the tuned SVR
(same folds, so the fold-to-fold spread cancels) and the accuracy targets.

    python bench/accuracy.py                          # params.yaml as it is, both feature sets
    python bench/accuracy.py --models svm kadn        # just what the paired difference needs
    python bench/accuracy.py --repeats 3 --seeds 3    # more folds; each net averaged over 3 seeds
    python bench/accuracy.py --models kadn --repeats 3 --seeds 1 3   # paired: 3 seeds against 1, same folds
    python bench/accuracy.py --preset paper --models kadn at kd
    python bench/accuracy.py --set dim=32 --set dropout=0.2 --models kadn
    python bench/accuracy.py --models svm kadn --track-records both --rows trainval

`--set KEY=VALUE` overrides train.nets keys (VALUE read as YAML). `--track-records on|off|both` overrides
train.common.track_records.enabled (`both`: each model with and without, and their paired per-fold
difference); `--track-set KEY=VALUE` its other keys. `--rows trainval` leaves the fixed split's test films
out of the folds (for choosing defaults without touching them). Not run by the test suite.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from models.stages.blend import cross_fitted
from models.training.config import BASELINES, MODELS, REPORTED, model_config
from models.training.cv import cross_validate
from models.training.data import FEATURE_SETS, cv_folds, dense_columns
from models.training.runtime import runtime
from pipeline.features.encode import SPLITS, Encoded, load_encoded
from pipeline.io import load_params
from pipeline.params import Params, parse

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--folds", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="seeds averaged per net (train.nets.seeds); several: each count on the same folds, "
                        "paired against the first")
    parser.add_argument("--preset", help="train.nets.preset (tuned or paper)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--encoded", default=str(ROOT / "data" / "encoded"))
    parser.add_argument("--feature-sets", nargs="+", default=list(FEATURE_SETS), choices=FEATURE_SETS)
    parser.add_argument("--track-records", choices=("on", "off", "both"),
                        help="train.common.track_records.enabled (both: with and without, paired)")
    parser.add_argument("--track-set", action="append", default=[], metavar="KEY=VALUE",
                        help="train.common.track_records keys")
    parser.add_argument("--baseline-set", action="append", default=[], metavar="MODEL.KEY=VALUE",
                        help="a baseline's keys (e.g. svm.C=10, lightgbm.grid={})")
    parser.add_argument("--common-set", action="append", default=[], metavar="KEY=VALUE",
                        help="train.common keys (e.g. oov=indicator)")
    parser.add_argument("--json", help="also write every model's per-fold MAE here, for pairing across runs")
    parser.add_argument("--oof", help="also write every reported row's out-of-fold predictions here (.npz, one "
                        "array `SET__ROW` per feature set and row, [repeats, films]), for blending across runs")
    parser.add_argument("--blend", nargs="+", metavar="MODEL",
                        help="also a stacked blend of these reported rows (e.g. svm lightgbm kadn), cross-fitted "
                        "on their out-of-fold predictions, paired against svm")
    parser.add_argument("--blend-loss", choices=("squared", "absolute"), help="blend.loss")
    parser.add_argument("--rows", choices=("all", "trainval"), default="all",
                        help="trainval: the fixed split's test films are left out of the folds")
    args = parser.parse_args()
    raw = load_params(ROOT / "params.yaml")
    common_raw = raw["train"]["common"]
    if args.folds:
        common_raw["cv"]["folds"] = args.folds
    if args.repeats:
        common_raw["cv"]["repeats"] = args.repeats
    if args.preset:
        raw["train"]["nets"]["preset"] = args.preset
    for item in args.set:
        key, _, value = item.partition("=")
        raw["train"]["nets"][key] = yaml.safe_load(value)
    common_raw["track_records"] = dict(common_raw.get("track_records") or {})
    for item in args.track_set:
        key, _, value = item.partition("=")
        common_raw["track_records"][key] = yaml.safe_load(value)
    for item in args.baseline_set:
        key, _, value = item.partition("=")
        model, _, key = key.partition(".")
        raw["train"].setdefault(model, {})[key] = yaml.safe_load(value)
    for item in args.common_set:
        key, _, value = item.partition("=")
        common_raw[key] = yaml.safe_load(value)
    if args.blend_loss:
        raw.setdefault("blend", {})["loss"] = args.blend_loss
    parsed = parse(raw, "params.yaml with the options given")
    with runtime(seed=parsed.train.common.seed, threads=parsed.train.common.threads):
        run(args, parsed)


def run(args, parsed: Params) -> None:
    train, blend_loss = parsed.train, parsed.blend.loss
    common, track = train.common, train.common.track_records
    seed_counts = args.seeds or [train.nets.seeds]
    arms = {"off": [False], "on": [True], "both": [False, True]}.get(args.track_records, [track.enabled])
    enc = load_encoded(args.encoded)
    if args.rows == "trainval":
        enc = subset(enc, enc.split != SPLITS["test"])
    spec = common.cv
    dump: dict = {}
    oof_dump: dict[str, np.ndarray] = {}
    print(f"{len(enc)} films ({args.rows}); {spec.folds}-fold CV x {spec.repeats} repeat(s); nets: preset "
          f"{train.nets.preset}, seeds {' / '.join(map(str, seed_counts))}, overrides {args.set or 'none'}; "
          f"track records {track.model_dump()} arms {arms}\n")
    for feature_set in args.feature_sets:
        if feature_set != "pre_release" and not dense_columns(enc.popularity)[0]:
            print(f"\n{feature_set}: skipped, no popularity counts in the data")
            continue
        print(f"\n{feature_set}" + "".join(f"; {n}" for n in dense_columns(enc.popularity)[1]
                                           if feature_set != "pre_release"))
        print("\n| model | CV MAE | CV RMSE | time (s) |\n|---|---|---|---:|")
        # One run per (track records on/off, seed count); the baselines have no seeds, so one run serves all counts.
        per_fold: dict[tuple[bool, int], dict[str, np.ndarray]] = {(e, n): {} for e in arms for n in seed_counts}
        oof: dict[str, np.ndarray] = {}  # reported row -> held-out predictions, first arm and seed count
        for name in args.models:
            for enabled in arms:
                for n in seed_counts[:1] if name in BASELINES else seed_counts:
                    cfg = model_config(train, name)
                    if name not in BASELINES:
                        cfg = cfg.model_copy(update={"seeds": n})
                    started = time.perf_counter()
                    arm_common = common.model_copy(update={"track_records": track.model_copy(update={"enabled": enabled})})
                    preds: dict = {}
                    cv = cross_validate(name, enc, cfg, arm_common, feature_set=feature_set, oof=preds)
                    if enabled == arms[0] and (name in BASELINES or n == seed_counts[0]):
                        oof.update({r: preds[o] for r, (a, o) in REPORTED.items() if a == name and o in preds})
                    took = time.perf_counter() - started
                    label = ("" if len(seed_counts) == 1 or name in BASELINES else f" (seeds {n})") + \
                        (" + track" if enabled and len(arms) > 1 else "")
                    for reported, (artifact, output) in REPORTED.items():
                        if artifact == name:
                            mae, rmse = np.asarray(cv[output]["mae"]), np.asarray(cv[output]["rmse"])
                            dump.setdefault(feature_set, {})[reported + label] = mae.tolist()
                            for m in seed_counts if name in BASELINES else [n]:
                                per_fold[(enabled, m)][reported] = mae
                            print(f"| {reported}{label} | {mae.mean():.4f} ± {mae.std():.4f} | {rmse.mean():.4f} ± "
                                  f"{rmse.std():.4f} | {took:.0f} |", flush=True)
        oof_dump.update({f"{feature_set}__{r}": p for r, p in oof.items()})
        if args.blend:
            folds = cv_folds(len(enc), spec.folds, spec.repeats, spec.seed, enc.in_range)
            blend = np.asarray(cross_fitted(oof, args.blend, enc.rating.astype(np.float64), folds, spec.folds,
                                          blend_loss)["mae"])
            dump.setdefault(feature_set, {})["blend"] = blend.tolist()
            print(f"| blend of {' + '.join(args.blend)} ({blend_loss} loss) | {blend.mean():.4f} ± {blend.std():.4f} | | |")
            first = per_fold[(arms[0], seed_counts[0])]
            for ref in ("svm", *args.blend):
                if ref in first:
                    paired(feature_set, f"blend - {ref}", blend - first[ref])
        for (enabled, n), maes in per_fold.items():
            label = "" if len(seed_counts) == 1 else f", seeds {n}"
            targets(feature_set, maes, label + ("" if len(arms) == 1 else f", track records {'on' if enabled else 'off'}"))
        nets = {r for r, (a, _) in REPORTED.items() if a not in BASELINES}
        for enabled in arms:
            for n in seed_counts[1:]:
                first_n = seed_counts[0]
                for reported in sorted(set(per_fold[(enabled, n)]) & nets):
                    paired(feature_set, f"{reported} seeds {n} - seeds {first_n}",
                           per_fold[(enabled, n)][reported] - per_fold[(enabled, first_n)][reported])
        if len(arms) > 1:
            for n in seed_counts:
                for reported, on in per_fold[(True, n)].items():
                    paired(feature_set, f"{reported} with - without track records"
                           + ("" if len(seed_counts) == 1 else f" (seeds {n})"), on - per_fold[(False, n)][reported])
    if args.json:
        Path(args.json).write_text(json.dumps(dump, indent=1) + "\n", encoding="utf-8")
    if args.oof:
        np.savez_compressed(args.oof, rating=enc.rating, **oof_dump)


def paired(feature_set: str, what: str, d: np.ndarray) -> None:
    print(f"{feature_set}: paired per-fold MAE, {what}: {d.mean():+.4f} ± {d.std(ddof=1):.4f} "
          f"(sd over {len(d)} folds; better in {(d < 0).sum()}/{len(d)})")


def subset(enc: Encoded, keep: np.ndarray) -> Encoded:
    rows = np.flatnonzero(keep)
    return Encoded(x={g: a[rows] for g, a in enc.x.items()}, rating=enc.rating[rows], split=enc.split[rows],
                   douban_id=enc.douban_id[rows], popularity=enc.popularity[rows], vocab=enc.vocab,
                   params=enc.params, release=None if enc.release is None else enc.release[rows])


def targets(feature_set: str, mae: dict[str, np.ndarray], label: str = "") -> None:
    """Paired per-fold difference student - tuned SVR, and the accuracy targets that these folds can check."""
    if "kadn" in mae and "svm" in mae:
        d = mae["kadn"] - mae["svm"]
        print(f"\n{feature_set}{label}: paired per-fold MAE, K-ADN student - tuned SVR: {d.mean():+.4f} ± {d.std(ddof=1):.4f} "
              f"(sd over {len(d)} folds; student better in {(d < 0).sum()}/{len(d)}); folds: "
              + " ".join(f"{v:+.3f}" for v in d))
    if "kadn" in mae:
        if feature_set == "pre_release" and "svm" in mae:
            met = mae["kadn"].mean() < mae["svm"].mean()
            print(f"target (pre_release{label}): student CV MAE below the tuned SVR's: {'met' if met else 'NOT met'}")
        if feature_set == "with_popularity":
            met = mae["kadn"].mean() < 0.50
            print(f"target (with_popularity{label}): student CV MAE below 0.50: {'met' if met else 'NOT met'} "
                  f"({mae['kadn'].mean():.4f})")
    if "kadn" in mae and "kadn_teacher" in mae:
        gap = mae["kadn"].mean() / mae["kadn_teacher"].mean() - 1
        print(f"target ({feature_set}{label}): student within 1% of the teacher: {'met' if gap <= 0.01 else 'NOT met'} "
              f"({100 * gap:+.2f}%)")


if __name__ == "__main__":
    main()
