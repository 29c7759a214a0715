"""Levers chosen forward: each lever of params.yaml re-chosen on rolling-origin forward folds of the training
years alone (for each origin year before the first year the backtest reports: train on the films released
before it, score its films), on the shipped snapshot, then the same choice checked on a second real set.

    nice .venv/bin/python bench/levers_forward.py --log /tmp/levers.log --json /tmp/levers.json
    nice .venv/bin/python bench/levers_forward.py --sets snapshot --levers trend_years recency_half_life

Each set is encoded with params.yaml in a scratch folder (the second set imported into a scratch store
first, as bench/forward_backtest.py does), and every fit is the backtest's own
(models.stages.backtest.fit_year: pre-release features, baselines tuned on their own training rows, nets
with one seed each, seeded per year). Origins: the last `--origins` years before the first
reported one that hold `backtest.min_films` films and earlier films to train on (the snapshot: 2011-2014,
reported 2015-2019; the second set: 2008-2010, reported 2011-2015); the `calibration_years` years before the
first origin are fitted too, as in the backtest, so the blend's weights of an origin come from earlier
years' forward predictions (the second set has none before 2008: its blend starts at 2009).

A lever value is one change to params.yaml, the rest at their defaults. Only the models a lever reaches
are refitted; the others keep the default's forward predictions, and the blend is refitted on the mix
(a net's lever cannot move the SVR). Groups: `common` (refits svm, lightgbm, catboost, kadn; rows those
and the blend; decided on svm, kadn and blend), `nets` (refits kadn; rows kadn, its teacher and the blend;
decided on kadn), `blend` (no refit; decided on the blend), `members` (a choice made per model, e.g. which
models read people through their records alone: refits as `common`, decided on the blend, which is what a
forecast sums). Each net is one seed, as in the backtest, but
fitted for `--replicates` seeds (train.common.seed + r) and every figure is the mean over them: one seed's
student moves by more than most levers do.

Decision (written before the full run): a lever's score is the mean, over its deciding rows, of each
row's mean MAE over the origins. Its candidate is the value with the lowest snapshot score; it replaces the
default when it is lower than the default's by at least the margin, max(0.005, twice the standard error
of the default's score over the replicates), and on the second set it is not higher than the default's by
more than that set's margin.

Reads params.yaml, data/douban.sqlite and the second set (skipped when absent); writes only scratch files,
the log and the JSON asked for.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

# forward_backtest sits beside this script (run as `python bench/levers_forward.py`).
from forward_backtest import DEFAULT as SECOND
from forward_backtest import KADN, encode_store

from models.stages.backtest import MIN_TRAIN, blended, plan_years, year_rows
from models.stages.backtest import fit_year as backtest_fit
from models.training.config import NETS, REPORTED
from models.training.runtime import run_task, runtime
from pipeline.errors import KadnError
from pipeline.features.encode import Encoded, load_encoded
from pipeline.params import Params, parse
from pipeline.registry import NAMES

ROOT = Path(__file__).resolve().parents[1]

GROUPS = {
    "common": {"fit": ("svm", "lightgbm", "catboost", "kadn"),
               "rows": ("svm", "lightgbm", "catboost", "kadn", "blend"), "decide": ("svm", "kadn", "blend")},
    "nets": {"fit": ("kadn",), "rows": ("kadn", "kadn_teacher", "blend"), "decide": ("kadn",)},
    "blend": {"fit": (), "rows": ("blend",), "decide": ("blend",)},
    # How each member reads people: a choice per model, judged by what the forecast sums (the blend).
    "members": {"fit": ("svm", "lightgbm", "catboost", "kadn"),
                "rows": ("svm", "lightgbm", "catboost", "kadn", "blend"), "decide": ("blend",)},
}
# Candidates the blend's members may gain (their default forward predictions are fitted once for it).
EXTRA_MEMBERS = ("lightgbm", "ridge", "kd", "at", "deepfm")
# name: (group, dotted params key, values); the default is added when missing. blend_members' values are
# made from the default list: each member left out, each of EXTRA_MEMBERS added.
LEVERS: dict[str, tuple[str, str, list]] = {
    "trend_years": ("common", "train.common.trend_years", [None, 3, 6, 12]),
    "recency_half_life": ("common", "train.common.recency_half_life", [None, 1.0, 2.0, 4.0, 8.0]),
    "track_half_life": ("common", "train.common.track_records.half_life", [None, 1.0, 2.0, 4.0, 8.0]),
    "track_enabled": ("common", "train.common.track_records.enabled", [True, False]),
    "track_actors": ("common", "train.common.track_records.actors", [2, 3, 5]),
    "track_counts": ("common", "train.common.track_records.counts", [False, True]),
    "track_earlier": ("common", "train.common.track_records.earlier", [False, True]),
    # The baselines' grid judged on a random share of their training films or on the latest-released share.
    "tune_split": ("common", "train.common.tune.split", ["random", "latest"]),
    # What the baselines learn from: the nets' fit rows, or every training film (the nets' stopping share too).
    "baseline_rows": ("common", "train.common.baseline_rows", ["fit", "all"]),
    # Where a fit reads vocabularies and track records from: its fit rows, or its validation share too (nets).
    "sources": ("nets", "train.common.sources", ["fit", "all"]),
    # People through their records alone: nobody, LightGBM (better so on both sets' folds when every model
    # was), every baseline, every model.
    "records_only": ("members", "train.common.records_only",
                     [[], ["lightgbm"], ["ridge", "svm", "lightgbm", "catboost"], list(NAMES)]),
    "token_dropout": ("nets", "train.nets.token_dropout", [0.0, 0.25, 0.5, 0.75]),
    "epochs": ("nets", "train.nets.epochs", [15, 30, 60]),
    "patience": ("nets", "train.nets.patience", [3, 6, 12]),
    "dim": ("nets", "train.kadn.dim", [8, 16, 32]),  # the K-ADN pair's own (params.yaml train.kadn)
    "hint_weight": ("nets", "train.kadn.hint_weight", [0.0, 0.03, 0.1, 0.3, 1.0]),  # eq. 6's lambda
    # The pair's training settings, chosen before only on random folds (docs/models.md): the student's own.
    "loss": ("nets", "train.kadn.regression_loss", ["mse", "l1", "huber"]),
    "head": ("nets", "train.kadn.head", ["regression", "soft"]),
    "dropout": ("nets", "train.kadn.dropout", [0.1, 0.3, 0.5]),
    "lr": ("nets", "train.kadn.lr", [0.0003, 0.001, 0.003]),
    "batch": ("nets", "train.kadn.batch", [16, 32, 64]),
    "weight_decay": ("nets", "train.kadn.weight_decay", [0.0, 1e-5, 1e-4]),
    "adaptive_l2": ("nets", "train.kadn.adaptive_l2", [0.0, 0.001, 0.01]),  # eq. 3
    "block_gradient": ("nets", "train.kadn.block_gradient", [True, False]),
    "dense_width": ("nets", "train.kadn.dense_width", [16, 32, 64]),
    "attention_hidden": ("nets", "train.kadn.attention_hidden", [8, 16, 36]),
    "linear": ("nets", "train.kadn.linear", [False, True]),  # a first-order (wide) term beside the MLP
    "student": ("nets", "train.nets.student", [[128, 32], [256, 64], [512, 128]]),
    "teacher": ("nets", "train.nets.teacher", [[512, 256, 128], [1024, 512, 256], [2048, 1024, 512]]),
    "blend_loss": ("blend", "blend.loss", ["squared", "absolute"]),
    "blend_members": ("blend", "blend.members", []),
    # The forward weights' intercept from the latest 1-3 fitted years (the level a forecast misses by drifts).
    "blend_intercept_years": ("blend", "blend.intercept_years", [None, 1, 2, 3]),
}
MIN_MARGIN = 0.005


def get(params: dict, dotted: str):
    """The value at a dotted key; a net's own key it does not set (train.kadn.X) is train.nets' value."""
    node = params
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if part not in node and parts[: i - 1] == ["train"] and parts[i - 1] in NETS:
            return get(params, ".".join(["train", "nets", *parts[i:]]))
        node = node[part]
    return node


def changed(params: dict, dotted: str, value) -> dict:
    out = copy.deepcopy(params)
    *path, key = dotted.split(".")
    node = out
    for part in path:
        node = node[part]
    node[key] = value
    return out


def lever_values(name: str, params: dict) -> list:
    group, key, values = LEVERS[name]
    default = get(params, key)
    if name == "blend_members":
        values = [default] + [[m for m in default if m != d] for d in default]
        values += [default + [m] for m in EXTRA_MEMBERS if m not in default]
    return values if default in values else [default, *values]


def origins(enc: Encoded, params: Params, count: int) -> list[int]:
    """The last `count` years before the first reported one with `min_films` films and MIN_TRAIN earlier."""
    first = plan_years(enc, params.backtest).reported[0]
    released = enc.release // 10000
    years = []
    for year in range(int(released[enc.release > 0].min()), first):
        train, scored = year_rows(enc, year)
        if len(scored) >= params.backtest.min_films and len(train) >= MIN_TRAIN:
            years.append(year)
    return years[-count:]


class Log:
    def __init__(self, path: Path | None):
        self.fh = path.open("a", encoding="utf-8") if path else None
        self.started = time.perf_counter()

    def __call__(self, text: str) -> None:
        line = f"[{time.perf_counter() - self.started:7.0f} s] {text}"
        print(line, file=sys.stderr, flush=True)
        if self.fh:
            self.fh.write(line + "\n")
            self.fh.flush()


def run_set(label: str, encoded: Path, base: dict, levers: list[str], count: int, replicates: int, workers: int,
            log: Log) -> dict:
    """{"origins", "fitted", "levers": {lever: {value (JSON): {row: {"origins": {year: MAE}, "mean": MAE}}}},
    "replicates": the default's figures per replicate}. Figures are means over the replicates: the nets are
    fitted once per replicate seed (train.common.seed + r), the baselines once (they barely move with it)."""
    enc = load_encoded(encoded)
    params = parse(base)
    years_out = origins(enc, params, count)
    probe = params.backtest.model_copy(update={"years": years_out})
    fitted = plan_years(enc, probe).years
    log(f"{label}: origins {years_out}, fitted years {fitted}")
    y = {year: enc.rating[year_rows(enc, year)[1]].astype(np.float64) for year in fitted}
    # What to fit: the default's every model any row needs, then each non-default value's group models.
    default_models = sorted({m for g in GROUPS.values() for m in g["fit"]} | set(EXTRA_MEMBERS)
                            | {REPORTED[m][0] for m in params.blend.members})
    jobs: list[tuple[str, str, object, tuple]] = [("default", "", None, tuple(default_models))]
    for name in levers:
        group, key, _ = LEVERS[name]
        jobs += [(name, key, value, GROUPS[group]["fit"]) for value in lever_values(name, base)
                 if value != get(base, key) and GROUPS[group]["fit"]]
    seed = params.train.common.seed
    tasks = {}
    with runtime(seed=seed, threads=params.train.common.threads, workers=workers, shared=enc) as pool:
        for name, key, value, models in jobs:
            changes = base if name == "default" else changed(base, key, value)
            for model in models:
                for r in range(replicates if model in NETS else 1):
                    p = parse(changed(changes, "train.common.seed", seed + r))
                    for year in fitted:
                        tasks[(name, json.dumps(value), model, r, year)] = run_task(pool, enc, backtest_fit, p,
                                                                                      year, model)
        forward = {}
        for done, (key, task) in enumerate(tasks.items(), 1):
            forward[key] = task.result()
            log(f"{label}: fit {done}/{len(tasks)} {key[0]}={key[1]} {key[2]} seed+{key[3]} {key[4]}")

    def rows_of(name: str, value: str, r: int) -> dict:
        """{row: {year: forward predictions}} of replicate r: the lever's refits over the default's fits."""
        rows: dict = {}
        for source in (("default", "null"), (name, value)):
            for (lever, v, model, rep, year), result in forward.items():
                if (lever, v) == source and rep == (r if model in NETS else 0):
                    for row, pred in result.items():
                        rows.setdefault(row, {})[year] = pred
        return rows

    def value_figures(name: str, value, rows_wanted) -> tuple[dict, list]:
        p = parse(changed(base, LEVERS[name][1], value)) if name != "default" else params
        per_rep = []
        for r in range(replicates):
            rows = rows_of(name, json.dumps(value), r)
            known = {row: rows["known"] for row in rows}
            rows["blend"] = blended(rows, known, y, p.blend)[0]
            per_rep.append({row: figures(rows[row], y, years_out) for row in rows_wanted})
        mean = {row: {part: {k: round(float(np.mean([f[row][part][k] for f in per_rep])), 4)
                             for k in per_rep[0][row][part]} for part in ("origins", "bias")}
                for row in rows_wanted}
        for row in rows_wanted:
            mean[row]["mean"] = round(float(np.mean([f[row]["mean"] for f in per_rep])), 4)
        return mean, per_rep

    all_rows = sorted({row for g in GROUPS.values() for row in g["rows"]})
    results = {"origins": years_out, "fitted": fitted, "replicates": value_figures("default", None, all_rows)[1],
               "levers": {}}
    for name in levers:
        group, key, _ = LEVERS[name]
        results["levers"][name] = {json.dumps(value): value_figures(name, value, GROUPS[group]["rows"])[0]
                                   for value in lever_values(name, base)}
    return results


def figures(pred: dict, y: dict, years: list[int]) -> dict:
    """MAE per origin, their mean, and the mean bias (predicted minus actual) per origin."""
    per = {year: float(np.abs(pred[year] - y[year]).mean()) for year in years if year in pred}
    bias = {str(year): round(float(np.mean(pred[year] - y[year])), 4) for year in per}
    return {"origins": {str(k): round(v, 4) for k, v in per.items()}, "mean": round(float(np.mean(list(per.values()))), 4),
            "bias": bias}


def score(per_value: dict, value: str, group: str) -> float:
    return float(np.mean([per_value[value][row]["mean"] for row in GROUPS[group]["decide"]]))


def margins(result: dict) -> dict[str, float]:
    """Per group, max(MIN_MARGIN, twice the standard error of its score: the sd over the default's
    replicates over the square root of their number)."""
    reps = result["replicates"]
    out = {}
    for group, spec in GROUPS.items():
        scores = [np.mean([rep[row]["mean"] for row in spec["decide"]]) for rep in reps]
        se = float(np.std(scores, ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else 0.0
        out[group] = max(MIN_MARGIN, 2 * se)
    return out


def decide(results: dict, base: dict) -> dict:
    """{lever: {"default", "candidate", "chosen", "why"}} by the rule of the module docstring."""
    snap, second = results["snapshot"], results.get("second")
    m_snap, m_second = margins(snap), (margins(second) if second else None)
    out = {}
    for name, per_value in snap["levers"].items():
        group, key, _ = LEVERS[name]
        default = json.dumps(get(base, key))
        candidate = min(per_value, key=lambda v: score(per_value, v, group))
        gain = score(per_value, default, group) - score(per_value, candidate, group)
        chosen, why = default, "the default is best on the snapshot origins"
        if candidate != default:
            if gain < m_snap[group]:
                why = f"{candidate} gains {gain:.4f} < margin {m_snap[group]:.4f} on the snapshot"
            elif second is None:
                why = f"{candidate} gains {gain:.4f} on the snapshot; the second set was not run"
            else:
                other = second["levers"][name]
                loss = score(other, candidate, group) - score(other, default, group)
                if loss > m_second[group]:
                    why = (f"{candidate} gains {gain:.4f} on the snapshot but is {loss:+.4f} on the second set "
                           f"(margin {m_second[group]:.4f})")
                else:
                    chosen = candidate
                    why = f"{candidate} gains {gain:.4f} on the snapshot, {-loss:+.4f} on the second set"
        out[name] = {"default": default, "candidate": candidate, "chosen": chosen, "why": why}
    return out


def report(results: dict, decisions: dict) -> str:
    lines = []
    sets = [s for s in ("snapshot", "second") if s in results]
    for s in sets:
        m = margins(results[s])
        lines.append(f"{s}: origins {results[s]['origins']}; margins " +
                     ", ".join(f"{g} {v:.4f}" for g, v in m.items()))
    for name in results["snapshot"]["levers"]:
        group = LEVERS[name][0]
        rows = GROUPS[group]["rows"]
        lines.append(f"\n{name} ({LEVERS[name][1]}): " + decisions[name]["why"])
        lines.append("| value | " + " | ".join(f"{s} {r}" for s in sets for r in rows) + " | "
                     + " | ".join(f"{s} score" for s in sets) + " |")
        lines.append("|---" * (1 + len(sets) * (len(rows) + 1)) + "|")
        for value in results["snapshot"]["levers"][name]:
            cells = [f"{results[s]['levers'][name][value][r]['mean']:.4f}" for s in sets for r in rows]
            cells += [f"{score(results[s]['levers'][name], value, group):.4f}" for s in sets]
            lines.append(f"| {value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=["snapshot", "second"], choices=["snapshot", "second"])
    ap.add_argument("--second", default=str(SECOND), help="the second set, a file `kadn import` reads")
    ap.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    ap.add_argument("--origins", type=int, default=4, help="origin years per set (fewer where fewer exist)")
    ap.add_argument("--replicates", type=int, default=3,
                    help="seeds each net is fitted for (one seed per fit; their MAEs averaged)")
    ap.add_argument("--workers", type=int, default=2, help="processes fitting side by side")
    ap.add_argument("--log", type=Path, help="progress lines appended here too")
    ap.add_argument("--json", type=Path, help="every figure and decision written here")
    ap.add_argument("--base", nargs="+", default=[], metavar="KEY=VALUE",
                    help="changes to params.yaml every value is measured around (YAML values), e.g. to check "
                         "levers again around new defaults")
    args = ap.parse_args()
    log = Log(args.log)
    base = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    # One seed per net fit (the shipped backtest fits each net's seeds); --replicates averages over seeds.
    base = changed(base, "backtest.seeds", 1)
    for change in args.base:
        key, _, value = change.partition("=")
        try:
            base = changed(base, key, yaml.safe_load(value))
        except (KeyError, TypeError, yaml.YAMLError):
            ap.error(f"--base {change}: expected KEY=VALUE with KEY a params.yaml key, e.g. train.nets.dim=32")
    try:
        parse(base)
    except KadnError as exc:
        ap.error(f"--base: {exc}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="kadn-levers-") as tmp:
        scratch = Path(tmp)
        for s in args.sets:
            if s == "snapshot":
                env = {**os.environ, "DATABASE_URL": f"sqlite:///{ROOT / 'data' / 'douban.sqlite'}"}
            else:
                if not Path(args.second).exists():
                    log(f"second set skipped: {args.second} is absent")
                    continue
                env = {**os.environ, "DATABASE_URL": f"sqlite:///{scratch / 'second.sqlite'}"}
                subprocess.run([str(KADN), "import", args.second], env=env, check=True, stdout=subprocess.DEVNULL)
            encoded = encode_store(scratch / s, base, env)
            results[s] = run_set(s, encoded, base, args.levers, args.origins, args.replicates, args.workers, log)
    decisions = decide(results, base) if "snapshot" in results else {}
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    log(f"done: {cpu / 60:.1f} min CPU in all")
    print(report(results, decisions))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "decisions": decisions, "cpu_min": round(cpu / 60, 1)},
                                        indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
