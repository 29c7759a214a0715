"""`kadn evaluate`: every trained model on the fixed test split, its cross-validation figures, the paper's
Table 2 (teacher against student), and the data behind the plots (paper figures 3-5).

Writes a metrics fragment (merged into metrics.json by `kadn metrics --fragments`) and CSVs for
`dvc plots show`. Wall-clock timings, the only figures that change between identical runs, go to a file of
their own (timings.json), so `dvc metrics diff` shows real changes only.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from models.nets.layers import DenseBranch
from models.nets.nets import count_params, ensemble_scores
from models.serving import figures
from models.serving.artifacts import SKIPPED, SavedModel, encoded_digest, load_curve, load_model
from models.serving.results import DECIMALS, cv_summary, model_view, rows_of
from models.training import conformal
from models.training.config import REPORTED
from models.training.cv import errors
from models.training.data import dense_columns, tensors
from models.training.fit_net import train_step
from models.training.runtime import runtime
from models.training.trend import saved_offset
from pipeline.errors import KadnError
from pipeline.features.encode import Encoded, load_encoded
from pipeline.io import atomic_path, write_json
from pipeline.params import EvaluateConfig, ForecastConfig, Params, load


def _interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Fastest of `repeats` runs of each function, the functions taking turns."""
    for fn in fns.values():
        fn()  # warm-up
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def multiply_adds(nets: list[torch.nn.Module], x: dict[str, torch.Tensor]) -> int:
    """Multiply-adds of the ensemble `nets` scoring the films of `x`, counted by torch's FLOP counter (its
    matrix products: every Linear layer and the attention units; 2 FLOPs per multiply-add). The attention
    runs on a film's real tokens only, so the count depends on the films, never on the machine."""
    total = 0
    for net in nets:
        net.eval()
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            net(x)
        total += counter.get_total_flops()
    return total // 2


def private_multiply_adds(nets: list[torch.nn.Module], x: dict[str, torch.Tensor]) -> int:
    """Multiply-adds of the private MLPs alone of the branches `nets` (models.nets.Branch) on the films of `x`:
    the rest of a branch's count is its shared layers (attention units, dense branch)."""
    total = 0
    for net in nets:
        net.eval()
        with torch.inference_mode():
            pooled = DenseBranch.join(net.dense, net.features(x).flatten(1), x)
            with FlopCounterMode(display=False) as counter:
                net.mlp(pooled)
        total += counter.get_total_flops()
    return total // 2


def split_counts(nets: list[torch.nn.Module], x: dict[str, torch.Tensor], films: int) -> dict:
    """Parameters and multiply-adds per film of the branches `nets`, whole and split into the shared layers
    (embedding table, attention, dense branch, wide term: the same in teacher and student) and the private
    MLP. The embedding table grows with the vocabulary, so at scale it dominates the whole count."""
    params = sum(count_params(b) for b in nets)
    private = sum(count_params(b.mlp) for b in nets)
    macs = multiply_adds(nets, x)
    private_macs = private_multiply_adds(nets, x)
    return {"params": params, "params_shared": params - private, "params_private": private,
            "multiply_adds_per_film": round(macs / films),
            "multiply_adds_shared_per_film": round((macs - private_macs) / films),
            "multiply_adds_private_per_film": round(private_macs / films)}


def branch_figures(loaded: SavedModel, x: dict[str, np.ndarray], rows: np.ndarray, train_rows: np.ndarray,
                   y: np.ndarray, cfg: EvaluateConfig, timed: bool = True) -> tuple[dict, dict]:
    """Table 2 for teacher and student: (what the models determine, wall-clock timings).

    The first holds parameters, the size of the serialised weights and multiply-adds per film (the mean over
    `rows`): the same on every machine. The second holds inference and training times.

    With N seeds (`train.nets.seeds`) each side is an ensemble of N nets, like with like: the teacher's N
    branches against the student's N. Parameters, sizes and multiply-adds add up over the members; inference is
    every member scoring the films plus the averaging, as `kadn predict` does. Each net is timed alone (shared
    layers + its private MLP). Training time is one net trained alone for one epoch of the training rows, times
    the epochs the joint runs took (summed over the members), so the two are comparable. Without `timed`, the
    second is empty and nothing is timed.
    """
    test_x = tensors(x, rows)
    members = {name: loaded.members(name) for name in ("teacher", "student")}
    figures, timings = {}, {}
    for name, nets in members.items():
        size = 0
        for branch in nets:
            buf = io.BytesIO()
            torch.save(branch.state_dict(), buf)
            size += len(buf.getvalue())
        counts = split_counts(nets, test_x, len(rows))
        figures[name] = {
            "params": counts.pop("params"),
            "size_kb": round(size / 1024, 1),
            "multiply_adds_per_film": counts.pop("multiply_adds_per_film"),
            **counts,
        }
    if timed:
        timings = _timings(loaded, members, x, rows, train_rows, y, cfg)
    return figures, timings


def _timings(loaded: SavedModel, members: dict, x: dict[str, np.ndarray], rows: np.ndarray,
             train_rows: np.ndarray, y: np.ndarray, cfg: EvaluateConfig) -> dict:
    test_x = tensors(x, rows)
    big = np.resize(rows, cfg.timing_films)
    big_x = tensors(x, big)
    train_x, train_y = tensors(x, train_rows), torch.from_numpy(y[train_rows])
    epochs = float(np.sum(loaded.meta.get("epochs_run", [0])))
    # Teacher and student are timed in alternation, so load from other work hits both alike.
    test_s = _interleaved({n: (lambda m=m: ensemble_scores(m, loaded.head, test_x)) for n, m in members.items()},
                          cfg.timing_repeats)
    big_s = _interleaved({n: (lambda m=m: ensemble_scores(m, loaded.head, big_x)) for n, m in members.items()},
                         cfg.timing_repeats)
    timings = {}
    for name, nets in members.items():
        # The members share one architecture and the same rows, so one member's epoch times them all.
        per_epoch = _epoch_seconds(nets[0], loaded.head, train_x, train_y, loaded.meta["config"])
        timings[name] = {
            "infer_s": round(test_s[name], 5),
            "infer_10k_s": round(big_s[name] * 10000 / len(big), 4),
            "train_s": round(per_epoch * epochs, 3),
        }
    return timings


def _epoch_seconds(branch, head, xt, y, cfg) -> float:
    net = copy.deepcopy(branch)  # the saved weights stay untouched
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    n, batch = len(y), int(cfg["batch"])
    start = time.perf_counter()
    for b in range(0, n, batch):
        xb = {g: v[b : b + batch] for g, v in xt.items()}
        train_step(net, opt, xb, y[b : b + batch], head, cfg["hint_weight"], cfg["block_gradient"])
    return time.perf_counter() - start


def write_csv(path: Path, header: list[str], rows: list) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with atomic_path(path, ".csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")


def _load_all(models_dir: Path, names: list[str], digest: str) -> dict[str, SavedModel]:
    loaded: dict[str, SavedModel] = {}
    for name in names:
        loaded[name] = load_model(models_dir, name)
        if loaded[name].vocab["vocab_digest"] != digest:
            raise KadnError(f"{models_dir / name}: trained on another encoding (vocabulary digest "
                            f"{loaded[name].vocab['vocab_digest']} != {digest}); retrain with `dvc repro`")
    return loaded


def interval_figures(model_dir: Path, output: str, x: dict[str, np.ndarray], pred: np.ndarray,
                     test: np.ndarray, y: np.ndarray, cfg: ForecastConfig) -> dict:
    """Intervals at `cfg.level`: coverage and mean width on the test split (calibrated on the out-of-fold
    residuals of the other films, never a test film's) and in CV (cross-conformal: each fold calibrated on
    the other folds)."""
    data = conformal.load(model_dir)
    half = conformal.for_model(data, output, cfg).half_width(conformal.known_share(x, test))
    cv = conformal.cross_conformal(data, output, cfg)
    return {"level": cfg.level, "coverage": round(float((np.abs(pred - y[test]) <= half).mean()), DECIMALS),
            "mean_width": round(float(2 * half.mean()), DECIMALS),
            "cv_coverage": round(cv["cv_coverage"], DECIMALS), "cv_mean_width": round(cv["cv_mean_width"], DECIMALS)}


def _scored(enc: Encoded, loaded: dict[str, SavedModel], test: np.ndarray, y: np.ndarray,
            models_dir: Path | None = None, interval: ForecastConfig | None = None):
    models: dict[str, dict] = {}
    predictions: dict[str, np.ndarray] = {}
    for reported, (artifact, output) in REPORTED.items():
        if artifact not in loaded:
            continue
        model = loaded[artifact]
        view = model_view(enc, model)
        pred = model.score(rows_of(view, test), output) + saved_offset(
            model.vocab, None if enc.release is None else enc.release[test])
        predictions[reported] = pred
        mae, rmse = errors(pred, y[test])
        models[reported] = {"mae": round(mae, DECIMALS), "rmse": round(rmse, DECIMALS), **cv_summary(model.meta["cv"][output])}
        if model.nets is not None:
            models[reported]["head"] = model.meta["head"]
        if interval is not None:
            models[reported]["interval"] = interval_figures(models_dir / artifact, output, view, pred, test, y,
                                                            interval)
    return models, predictions


def popularity_figures(enc: Encoded, popularity_dir: Path, names: list[str], digest: str, test: np.ndarray,
                       y: np.ndarray, interval: ForecastConfig | None = None) -> dict:
    """`models_with_popularity`: every model trained on the with_popularity set, or why there is none."""
    skipped = [n for n in names if (popularity_dir / n / SKIPPED).exists()]
    if skipped:
        reasons = {json.loads((popularity_dir / n / SKIPPED).read_text(encoding="utf-8"))["skipped"] for n in skipped}
        return {"skipped": "; ".join(sorted(reasons))}
    models, _ = _scored(enc, _load_all(popularity_dir, names, digest), test, y, popularity_dir, interval)
    _, notes = dense_columns(enc.popularity)
    if notes:
        models["note"] = "; ".join(notes)
    return models


def run_evaluate(params: Params, encoded_dir: Path, models_dir: Path, out: Path, plots_dir: Path,
                 popularity_dir: Path | None = None, timings_out: Path | None = None) -> dict:
    """Write the metrics fragment (only what data, params and code determine: the same bytes on any machine
    and thread count), the plot data and, if `timings_out` is given, the wall-clock timings apart."""
    common = params.train.common
    with runtime(seed=common.seed, threads=common.threads):  # timings too: Table 2 is timed on these threads
        return _evaluate(params, encoded_dir, models_dir, out, plots_dir, popularity_dir, timings_out)


def _evaluate(params: Params, encoded_dir: Path, models_dir: Path, out: Path, plots_dir: Path,
              popularity_dir: Path | None, timings_out: Path | None) -> dict:
    cfg = params.evaluate
    enc = load_encoded(encoded_dir)
    digest = encoded_digest(encoded_dir)
    names = params.models.baselines + params.models.nets
    test = enc.index("test")
    y = enc.rating.astype(np.float64)
    loaded = _load_all(models_dir, names, digest)
    models, predictions = _scored(enc, loaded, test, y, models_dir, params.forecast)
    fragment: dict = {"models": models}
    if popularity_dir is not None:
        fragment["models_with_popularity"] = popularity_figures(enc, popularity_dir, names, digest, test, y,
                                                                params.forecast)
    if "kadn" in loaded:
        kadn = loaded["kadn"]
        table, timed = branch_figures(kadn, model_view(enc, kadn), test, enc.index("train"), y.astype(np.float32),
                                      cfg, timed=timings_out is not None)
        teacher, student = table["teacher"], table["student"]
        fragment["distillation"] = {
            "teacher": teacher, "student": student,
            "param_reduction": round(1 - student["params"] / teacher["params"], 4),
            # The private MLPs alone: the architecture's own reduction, whatever the vocabulary's size.
            "param_reduction_private": round(1 - student["params_private"] / teacher["params_private"], 4),
            "size_reduction": round(1 - student["size_kb"] / teacher["size_kb"], 4),
            "multiply_add_reduction": round(1 - student["multiply_adds_per_film"] / teacher["multiply_adds_per_film"],
                                            4),
            "multiply_add_reduction_private": round(
                1 - student["multiply_adds_private_per_film"] / teacher["multiply_adds_private_per_film"], 4),
            "test_films": int(len(test)),
            "seeds": len(kadn.nets),  # each side an ensemble of this many nets (train.nets.seeds)
        }
        if timings_out is not None:
            write_json(timings_out, {"distillation": {
                "teacher": timed["teacher"], "student": timed["student"],
                "speedup": round(timed["teacher"]["infer_10k_s"] / max(timed["student"]["infer_10k_s"], 1e-9), 2),
                "threads": params.train.common.threads,
            }})
        write_csv(plots_dir / "predicted_vs_actual.csv", ["douban_id", "actual", "predicted"],
                  [[int(enc.douban_id[i]), round(float(y[i]), 2), round(float(p), 3)]
                   for i, p in zip(test, predictions["kadn"])])
        curve = load_curve(models_dir, "kadn")
        write_csv(plots_dir / "learning_curves.csv", ["epoch", "train_loss", "val_loss", "val_mae_student",
                                                      "val_mae_teacher"],
                  [[r["epoch"], round(r["train_loss"], 5), round(r["val_loss"], 5), round(r["val_mae_student"], 5),
                    round(r["val_mae_teacher"], 5)] for r in curve])
        figures.learning_curves(curve, plots_dir / "learning_curves.png")
        figures.table2(fragment["distillation"], plots_dir / "table2.png")
        baselines = [m for m in params.models.baselines if m in models and m != figures.FLOOR]
        shown = {"K-ADN student": predictions["kadn"]}
        if baselines:
            best = min(baselines, key=lambda m: (models[m]["cv_mae_mean"], m))
            shown[f"{best} (best baseline by CV MAE)"] = predictions[best]
        figures.predicted_vs_actual(y[test], shown, plots_dir / "predicted_vs_actual.png")
    sets = {k: fragment[k] for k in ("models", "models_with_popularity") if k in fragment}
    write_csv(plots_dir / "model_errors.csv", ["model", "mae", "rmse", "cv_mae", "cv_mae_std", "cv_rmse", "cv_rmse_std"],
              error_rows(sets))
    figures.model_errors(sets, plots_dir / "cv_mae.png", "cv_mae")
    figures.model_errors(sets, plots_dir / "cv_rmse.png", "cv_rmse")
    write_json(out, fragment)
    return fragment


def error_rows(sets: dict[str, dict]) -> list[list]:
    """The plot table: one row per model and feature set, best CV MAE first. The mean baseline is left out:
    its error (about 1.0 against 0.5-0.7) would set the scale; it stays in metrics.json and cv_mae.png."""
    rows = []
    for key, models in sets.items():
        suffix = "" if key == "models" else " +popularity"
        rows += [[f"{m}{suffix}", v["mae"], v["rmse"], v["cv_mae_mean"], v["cv_mae_std"], v["cv_rmse_mean"],
                  v["cv_rmse_std"]] for m, v in models.items() if isinstance(v, dict) and m != figures.FLOOR]
    return sorted(rows, key=lambda r: (r[3], r[0]))


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="score every trained model on the test split; Table 2; figures")
    p.add_argument("--params", default="params.yaml", help="the parameters file")
    p.add_argument("--encoded", default="data/encoded", help="the encode stage's folder")
    p.add_argument("--models", default="artifacts/models", help="the pre_release models (one folder each)")
    p.add_argument("--models-popularity", default="artifacts/models_with_popularity",
                   help="the with_popularity models ('' to leave that feature set out)")
    p.add_argument("--out", default="artifacts/metrics/evaluate.json",
                   help="the metrics fragment `kadn metrics` merges")
    p.add_argument("--plots", default="plots", help="folder for the plot data (CSV) and figures (PNG)")
    p.add_argument("--timings", default="",
                   help="also time Table 2's inference and training on this machine, into this file (the stage "
                        "leaves it out: wall-clock figures differ on every run)")
    p.set_defaults(func=_main)


def _main(args) -> int:
    params = load(args.params)
    fragment = run_evaluate(params, Path(args.encoded), Path(args.models), Path(args.out), Path(args.plots),
                            Path(args.models_popularity) if args.models_popularity else None,
                            Path(args.timings) if args.timings else None)
    for key in ("models", "models_with_popularity"):
        for name, m in fragment.get(key, {}).items():
            if not isinstance(m, dict):
                print(f"{key}.{name}: {m}", file=sys.stderr)
                continue
            suffix = "" if key == "models" else " (with popularity)"
            iv = m.get("interval")
            cover = (f" | {iv['level']:.0%} interval coverage {iv['coverage']:.3f} (CV {iv['cv_coverage']:.3f}), "
                     f"width {iv['mean_width']:.2f}") if iv else ""
            print(f"{name:13s} test MAE {m['mae']:.3f} RMSE {m['rmse']:.3f} | CV MAE {m['cv_mae_mean']:.3f} "
                  f"± {m['cv_mae_std']:.3f} RMSE {m['cv_rmse_mean']:.3f}{cover}{suffix}", file=sys.stderr)
    if "distillation" in fragment:
        d = fragment["distillation"]
        print(f"distillation ({d['seeds']} seed(s) per side): params {d['teacher']['params']} -> {d['student']['params']} "
              f"(-{100 * d['param_reduction']:.1f}%), multiply-adds per film {d['teacher']['multiply_adds_per_film']} "
              f"-> {d['student']['multiply_adds_per_film']} (-{100 * d['multiply_add_reduction']:.1f}%); private MLPs: "
              f"params -{100 * d['param_reduction_private']:.1f}%, multiply-adds "
              f"-{100 * d['multiply_add_reduction_private']:.1f}%", file=sys.stderr)
    return 0
