"""metrics.json holds only what data, params and code determine: the same bytes whatever the thread count;
wall-clock timings go to their own file; the student's cost is counted in multiply-adds."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from torch import nn

from models.stages.evaluate import multiply_adds
from models.stages.train import run_train
from pipeline.cli import main
from tests.model_support import ROOT, encoded_catalogue, fast, fast_params

TIMINGS = {"infer_s", "infer_10k_s", "train_s", "speedup"}


def keys(tree) -> set[str]:
    if not isinstance(tree, dict):
        return set()
    return set(tree) | {k for v in tree.values() for k in keys(v)}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("determined")
    enc = encoded_catalogue(folder)
    params = fast_params()
    params["models"] = {"baselines": ["mean", "ridge"], "nets": ["kadn"]}
    for name in ("mean", "ridge", "kadn"):
        run_train(name, fast(params), enc, folder / "models")
    report = {"stored": 300, "kept": 260, "examples": {},
              "removed": dict.fromkeys(("out_of_range", "rerelease", "non_film", "missing_labels", "few_raters",
                                        "unreadable"), 0)}
    (folder / "report.json").write_text(json.dumps(report), encoding="utf-8")
    return folder, enc, params


def test_evaluate_and_metrics_give_the_same_bytes_with_one_or_two_threads(built, capsys):
    folder, enc, params = built
    written = {}
    for n in (1, 2):
        params["train"]["common"]["threads"] = n
        (folder / f"params{n}.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
        out = folder / f"run{n}"
        assert main(["evaluate", "--params", str(folder / f"params{n}.yaml"), "--encoded", str(enc),
                     "--models", str(folder / "models"), "--models-popularity", "",
                     "--out", str(out / "evaluate.json"), "--plots", str(out / "plots"),
                     "--timings", str(out / "timings.json")]) == 0
        assert main(["metrics", "--report", str(folder / "report.json"), "--encoded-meta",
                     str(enc / "meta.json"), "--fragments", str(out / "evaluate.json"),
                     "--out", str(out / "metrics.json")]) == 0
        written[n] = out
    one, two = (written[n] / "metrics.json" for n in (1, 2))
    assert one.read_bytes() == two.read_bytes()
    # Every stage output, figures included, is bytes the inputs determine: no timing reaches them.
    plots = sorted(p.name for p in (written[1] / "plots").iterdir())
    assert "table2.png" in plots
    for name in plots:
        assert (written[1] / "plots" / name).read_bytes() == (written[2] / "plots" / name).read_bytes(), name
    for path in (folder / "models").rglob("*.json"):
        assert not keys(json.loads(path.read_text(encoding="utf-8"))) & TIMINGS, path
    metrics = json.loads(one.read_text(encoding="utf-8"))
    assert not keys(metrics) & TIMINGS
    d = metrics["distillation"]
    for side in ("teacher", "student"):
        assert d[side]["multiply_adds_per_film"] > 0 and d[side]["params"] > 0
    assert 0 < d["multiply_add_reduction"] < 1
    # Errors at the 3 decimals their CV spread justifies.
    for entry in metrics["models"].values():
        for key in ("mae", "rmse", "cv_mae_mean", "cv_mae_std"):
            assert round(entry[key], 3) == entry[key]
    timings = json.loads((written[2] / "timings.json").read_text(encoding="utf-8"))["distillation"]
    assert keys(timings) >= TIMINGS and timings["threads"] == 2 and timings["student"]["infer_s"] > 0


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 1))

    def forward(self, x):
        return self.mlp(x["dense"])


def test_multiply_adds_are_counted_per_layer_and_film():
    x = {"dense": torch.zeros(5, 6)}
    assert multiply_adds([TwoLayers()], x) == 5 * (6 * 4 + 4 * 1)
    assert multiply_adds([TwoLayers(), TwoLayers()], x) == 2 * 5 * (6 * 4 + 4 * 1)


def test_dvc_keeps_timings_out_of_the_compared_metrics():
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    # Wall-clock figures are no stage's output: they would change dvc.lock on every run.
    outs = [next(iter(o)) if isinstance(o, dict) else o for s in spec["stages"].values() for o in s.get("outs", [])]
    assert "timings.json" not in outs
    assert "--fragments artifacts/metrics/evaluate.json" in spec["stages"]["metrics"]["cmd"]
    declared = [next(iter(m)) if isinstance(m, dict) else m for s in spec["stages"].values() for m in s.get("metrics", [])]
    assert declared == ["metrics.json"]
