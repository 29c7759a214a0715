"""The evaluate stage's PNG figures: written on every run, declared as DVC image plots, and drawn so they read
at a glance (sorted bars with spread, the mean baseline marked, y = x, labelled axes)."""

from __future__ import annotations

import csv
import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
import yaml
from matplotlib.container import ErrorbarContainer

from models.serving import figures
from models.stages.evaluate import run_evaluate
from models.stages.train import run_train
from tests.model_support import ROOT, encoded_catalogue, fast, fast_params

PNGS = ("cv_mae.png", "cv_rmse.png", "predicted_vs_actual.png", "learning_curves.png", "table2.png")


@pytest.fixture
def drawn(monkeypatch):
    """The figures a call draws, kept open for inspection instead of saved."""
    kept = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path: kept.__setitem__(path.name, fig))
    yield kept
    plt.close("all")


def entry(mae: float, std: float) -> dict:
    return {"mae": mae, "rmse": mae + 0.2, "cv_mae_mean": mae, "cv_mae_std": std, "cv_rmse_mean": mae + 0.2,
            "cv_rmse_std": std, "cv_folds": 5}


def test_model_errors_are_sorted_with_spread_and_the_mean_baseline_marked_off_scale(drawn, tmp_path):
    sets = {"models": {"mean": entry(1.013, 0.07), "ridge": entry(0.658, 0.031), "svm": entry(0.645, 0.036),
                       "kadn": entry(0.659, 0.037), "fm": entry(0.696, 0.04)},
            "models_with_popularity": {"mean": entry(1.013, 0.07), "ridge": entry(0.541, 0.017),
                                       "svm": entry(0.514, 0.03), "kadn": entry(0.506, 0.023), "note": "text"}}
    figures.model_errors(sets, tmp_path / "cv_mae.png")
    fig = drawn["cv_mae.png"]
    left, right = fig.axes
    assert [ax.get_title() for ax in (left, right)] == ["pre-release features", "with popularity counts"]
    # Best at the top: bottom-to-top labels run from the worst to the best, and the mean is no bar.
    assert [t.get_text() for t in left.get_yticklabels()] == ["fm", "kadn", "ridge", "svm"]
    assert [t.get_text() for t in right.get_yticklabels()] == ["ridge", "svm", "kadn"]
    lo, hi = left.get_xlim()
    assert right.get_xlim() == (lo, hi)  # one scale: the feature sets compare directly
    assert hi < 1.0 and lo > 0.4 and hi >= 0.696 + 0.04
    assert all(any(isinstance(c, ErrorbarContainer) for c in ax.containers) for ax in (left, right))
    marked = [t.get_text() for ax in (left, right) for t in ax.texts]
    assert sum("mean baseline 1.013" in t for t in marked) == 2
    assert "MAE" in left.get_xlabel()


def test_predicted_vs_actual_draws_y_equals_x_and_labels_axes(drawn, tmp_path):
    actual = np.array([6.0, 7.0, 8.5])
    figures.predicted_vs_actual(actual, {"K-ADN student": actual + 0.1, "svm": actual - 0.3}, tmp_path / "p.png")
    axes = drawn["p.png"].axes
    assert len(axes) == 2
    for ax in axes:
        diagonal = [line for line in ax.get_lines() if np.array_equal(line.get_xdata(), line.get_ydata())]
        assert diagonal and ax.get_xlabel() == "actual Douban score" and ax.get_ylabel() == "predicted score"
    assert "test MAE 0.100" in axes[0].get_title()


def test_learning_curves_show_validation_mae_with_labelled_axes(drawn, tmp_path):
    curve = [{"epoch": e / 2, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_mae_student": 0.7 + abs(e - 3) / 50,
              "val_mae_teacher": 0.72} for e in range(1, 7)]
    figures.learning_curves(curve, tmp_path / "l.png")
    loss_ax, mae_ax = drawn["l.png"].axes
    assert loss_ax.get_xlabel() == mae_ax.get_xlabel() == "epoch"
    assert mae_ax.get_ylabel() == "validation MAE"
    assert [line.get_ydata()[2] for line in mae_ax.get_lines()[:1]] == [0.7]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("figures")
    enc = encoded_catalogue(folder)
    raw = fast_params()
    raw["models"] = {"baselines": ["mean", "ridge", "svm"], "nets": ["kadn"]}
    params = fast(raw)
    for name in ("mean", "ridge", "svm", "kadn"):
        run_train(name, params, enc, folder / "pre")
        run_train(name, params, enc, folder / "pop", feature_set="with_popularity")
    fragment = run_evaluate(params, enc, folder / "pre", folder / "e.json", folder / "plots", folder / "pop",
                            folder / "timings.json")
    return folder, fragment


def test_each_evaluate_run_writes_every_figure(evaluated):
    folder, fragment = evaluated
    for name in PNGS:
        data = (folder / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    with (folder / "plots" / "model_errors.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # The Vega data: both feature sets, best first, without the mean baseline that would set the scale.
    assert [float(r["cv_mae"]) for r in rows] == sorted(float(r["cv_mae"]) for r in rows)
    assert {r["model"] for r in rows} == {"ridge", "svm", "kadn", "kadn_teacher", "ridge +popularity",
                                          "svm +popularity", "kadn +popularity", "kadn_teacher +popularity"}
    assert all(float(r["cv_mae_std"]) > 0 for r in rows)
    assert json.loads((folder / "e.json").read_text(encoding="utf-8")) == fragment


def test_the_figures_are_declared_as_dvc_image_plots_of_evaluate():
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    outs = [o if isinstance(o, str) else next(iter(o)) for o in spec["stages"]["evaluate"]["outs"]]
    plots = [p if isinstance(p, str) else next(iter(p)) for p in spec["plots"]]
    for name in PNGS:
        assert f"plots/{name}" in outs and f"plots/{name}" in plots
    titled = {next(iter(p)): next(iter(p.values())) for p in spec["plots"] if isinstance(p, dict)}
    for title, plot in titled.items():
        assert plot.get("x_label") and plot.get("y_label"), f"{title}: axis titles"
        if plot.get("template", "").startswith("bar"):
            assert plot["template"] == "bar_horizontal_sorted", title
