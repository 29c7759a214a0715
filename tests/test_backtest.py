"""`kadn backtest`: each year's films scored by models trained on earlier films only (the forward backtest)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

import models.stages.backtest as backtest
import models.training.stacking as stacking
from models.stages.backtest import plan_years, run_backtest, year_rows
from models.training.data import fold_split, rows_for
from pipeline.cli import main
from pipeline.errors import KadnError
from pipeline.features.encode import load_encoded
from tests.model_support import ROOT, encoded_catalogue, fast, fast_params
from tests.params_support import shipped


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return encoded_catalogue(tmp_path_factory.mktemp("backtest"), n=300)


def _params(years, models=("mean", "ridge", "kadn"), workers=1, **backtest_keys):
    params = fast_params()
    params["train"]["common"]["track_records"]["enabled"] = False
    params["train"]["common"]["workers"] = workers  # 1: the fits run here, where a test can watch them
    params["backtest"].update(years=years if years == "auto" else list(years), models=list(models), seeds=1,
                              min_films=10, calibration_years=2, **backtest_keys)
    return params


def _fitted_years(enc, seen):
    years = enc.release // 10000
    return [int(years[rows].max()) + 1 for _, rows in seen]


def test_each_year_trains_on_earlier_films_and_scores_its_own(catalogue, tmp_path, monkeypatch):
    enc = load_encoded(catalogue)
    years = enc.release // 10000
    seen = []
    real = backtest.fit_model

    def spy(name, cfg, common, data, seed, progress=False, features=None):
        seen.append((name, np.concatenate([data.train_rows, data.val_rows])))
        return real(name, cfg, common, data, seed, progress, features)

    monkeypatch.setattr(backtest, "fit_model", spy)
    raw = _params([2016, 2018])
    # The mean model then predicts its fit rows' plain mean.
    raw["train"]["common"].update(trend_years=None, recency_half_life=None)
    raw["blend"]["members"] = ["svm", "kadn"]  # svm is not fitted here, so no blend row
    params = fast(raw)
    plan = plan_years(enc, params.backtest)
    assert plan.reported == [2016, 2018] and len(plan.calibration) == 2 and max(plan.calibration) < 2016
    fragment = run_backtest(params, catalogue, tmp_path / "bt.json")
    assert json.loads((tmp_path / "bt.json").read_text()) == fragment
    figures = fragment["backtest"]
    assert set(figures) == {"mean", "ridge", "kadn", "kadn_teacher"}  # no blend: its members were not fitted
    assert len(seen) == 3 * len(plan.years)
    for k, year in enumerate(plan.years):  # the calibration years too, each on its own earlier films
        for _, rows in seen[3 * k: 3 * k + 3]:
            assert (years[rows] < year).all() and len(rows) == (years < year).sum()
    for year in (2016, 2018):
        scored = (years == year).sum()
        assert all(figures[m][str(year)]["films"] == scored for m in figures)
    assert set(figures["mean"]) == {"2016", "2018", "mean", "pooled"}
    # The mean model predicts each year with its training films' mean: its errors are checkable by hand.
    train, scored = year_rows(enc, 2016)
    # ...its fit rows as the backtest draws them (train.common.baseline_rows: a baseline's may be all of them).
    fit_rows = rows_for("mean", *fold_split(train, params.train.common.cv.val, params.train.common.cv.seed + 2016,
                                            enc.in_range), params.train.common)[0]
    err = enc.rating[fit_rows].astype(np.float64).mean() - enc.rating[scored]
    assert figures["mean"]["2016"]["mae"] == pytest.approx(np.abs(err).mean(), abs=1e-3)
    assert figures["mean"]["2016"]["bias"] == pytest.approx(err.mean(), abs=1e-3)
    for m in figures:
        per_year = [figures[m][y] for y in ("2016", "2018")]
        assert figures[m]["mean"]["mae"] == pytest.approx(np.mean([f["mae"] for f in per_year]), abs=1e-3)
        pooled = sum(f["mae"] * f["films"] for f in per_year) / sum(f["films"] for f in per_year)
        assert figures[m]["pooled"]["mae"] == pytest.approx(pooled, abs=2e-3)
        assert figures[m]["pooled"]["films"] == sum(f["films"] for f in per_year)


def test_intervals_are_calibrated_on_earlier_forward_years_only(catalogue, tmp_path, monkeypatch):
    enc = load_encoded(catalogue)
    calls = []
    real = backtest.calibrate

    def spy(residuals, known, cfg):
        calls.append(len(residuals))
        return real(residuals, known, cfg)

    monkeypatch.setattr(backtest, "calibrate", spy)
    params = fast(_params([2017, 2018, 2019], ("mean",)))
    plan = plan_years(enc, params.backtest)
    figures = run_backtest(params, catalogue, tmp_path / "bt.json",
                           forward_out=tmp_path / "forward.npz")["backtest"]["mean"]
    films = {y: len(year_rows(enc, y)[1]) for y in plan.years}
    # Year Y's interval: the residuals of every fitted year before Y (calibration years, then reported ones).
    assert calls == [sum(n for y, n in films.items() if y < year) for year in plan.reported]
    for year in plan.reported:
        assert 0.0 <= figures[str(year)]["coverage"] <= 1.0 and figures[str(year)]["mean_width"] > 0
    assert 0.0 <= figures["pooled"]["coverage"] <= 1.0
    with np.load(tmp_path / "forward.npz", allow_pickle=False) as npz:
        saved = {k: npz[k] for k in npz.files}
    assert set(saved["model"]) == {"mean"} and sorted(set(saved["year"].tolist())) == plan.years
    assert len(saved["pred"]) == sum(films.values()) and ((saved["known"] >= 0) & (saved["known"] <= 1)).all()


def test_the_blend_is_weighted_on_earlier_years_forward_predictions(catalogue, tmp_path, monkeypatch):
    enc = load_encoded(catalogue)
    fitted = []
    real = stacking.fit_weights

    def spy(preds, y, loss):
        fitted.append(len(y))
        return real(preds, y, loss)

    monkeypatch.setattr(stacking, "fit_weights", spy)
    params = _params([2018, 2019], ("mean", "ridge"))
    params["blend"]["members"] = ["mean", "ridge"]
    params = fast(params)
    figures = run_backtest(params, catalogue, tmp_path / "bt.json")["backtest"]
    years = plan_years(enc, params.backtest).years
    films = [len(year_rows(enc, y)[1]) for y in years]
    # Each year after the first: weights fitted on the forward predictions of the years before it alone.
    assert fitted == [sum(films[:k]) for k in range(1, len(years))]
    assert set(figures["blend"]) == {"2018", "2019", "mean", "pooled"}
    assert figures["blend"]["2018"]["films"] == figures["ridge"]["2018"]["films"]
    assert "coverage" in figures["blend"]["2018"]


def test_auto_years_are_the_last_full_years_after_the_calibration_years(catalogue):
    enc = load_encoded(catalogue)
    counts = {int(y): int(n) for y, n in zip(*np.unique(enc.release[enc.in_range] // 10000, return_counts=True))}
    plan = plan_years(enc, shipped("backtest", years="auto", last=3, min_films=10, calibration_years=2))
    full = [y for y, n in sorted(counts.items()) if n >= 10]
    assert plan.reported == full[-3:] and plan.calibration == full[-5:-3] and not plan.skipped
    # A threshold only the fullest years reach: thinner years are neither reported nor calibration years.
    cut = sorted(counts.values())[-4]
    plan = plan_years(enc, shipped("backtest", years="auto", last=13, min_films=cut, calibration_years=1))
    full = [y for y, n in sorted(counts.items()) if n >= cut]
    assert plan.calibration == full[:1] and plan.reported == full[1:]
    with pytest.raises(KadnError, match="backtest.min_films"):
        plan_years(enc, shipped("backtest", years="auto", min_films=10_000))


def test_a_store_of_2007_2015_films_runs_the_shipped_backtest(tmp_path, capsys):
    """The shipped backtest section (`auto`, its min_films) on a store ending in 2015 picks that store's own
    last years; a listed year without films is skipped with one line on stderr."""
    enc_dir = encoded_catalogue(tmp_path, n=700)
    arrays = dict(np.load(enc_dir / "arrays.npz"))
    early = arrays["release"] // 10000 <= 2015
    small = tmp_path / "early"
    shutil.copytree(enc_dir, small)
    np.savez_compressed(small / "arrays.npz", **{k: v[early] for k, v in arrays.items()})
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["backtest"]
    assert shipped["years"] == "auto"
    params = fast_params()
    params["train"]["common"]["workers"] = 1
    params["backtest"] = {**shipped, "models": ["mean", "ridge"]}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "bt.json"
    argv = ["backtest", "--params", str(params_file), "--encoded", str(small), "--out", str(out), "--quiet",
            "--forward", str(tmp_path / "fw.npz")]
    assert main(argv) == 0
    figures = json.loads(out.read_text())["backtest"]["ridge"]
    years = sorted(k for k in figures if k.isdigit())
    assert years[-1] == "2015" and 1 <= len(years) <= shipped["last"]
    params["backtest"]["years"] = [2014, 2015, 2016, 2017]
    params_file.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    capsys.readouterr()
    assert main(argv) == 0
    assert "skipped 2016 (0 films of its own" in capsys.readouterr().err
    assert set(json.loads(out.read_text())["backtest"]["ridge"]) == {"2014", "2015", "mean", "pooled"}


def test_no_year_with_films_is_refused_without_output(catalogue, tmp_path, capsys):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(_params([2016, 2031], ["mean"]), allow_unicode=True), encoding="utf-8")
    out = tmp_path / "bt.json"
    argv = ["backtest", "--params", str(params_file), "--encoded", str(catalogue), "--out", str(out), "--quiet",
            "--forward", str(tmp_path / "fw.npz")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "skipped 2031 (0 films of its own" in err and len([x for x in err.splitlines() if "skipped" in x]) == 1
    out.unlink()
    params_file.write_text(yaml.safe_dump(_params([2031], ["mean"]), allow_unicode=True), encoding="utf-8")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "backtest.years" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    with pytest.raises(KadnError, match="backtest.years: must increase strictly"):
        fast(_params([2018, 2016]))
    with pytest.raises(KadnError, match="backtest.models"):
        fast(_params([2018], ["svr"]))


def test_worker_processes_give_the_figures_of_one_process(catalogue, tmp_path):
    """Each (year, model) fit is seeded on its own: spread over worker processes, latest year first, the
    fragment is the one a single process writes fitting them in order."""
    serial = run_backtest(fast(_params([2016, 2018], ("ridge", "svm", "kadn"))), catalogue, tmp_path / "a.json")
    parallel = run_backtest(fast(_params([2016, 2018], ("ridge", "svm", "kadn"), workers=2)), catalogue,
                            tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert list(parallel["backtest"]["svm"]) == ["2016", "2018", "mean", "pooled"] and parallel == serial


def test_dvc_runs_the_backtest_and_merges_its_figures():
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    assert spec["stages"]["backtest"]["outs"] == ["artifacts/metrics/backtest.json", "artifacts/backtest/forward.npz"]
    assert "artifacts/metrics/backtest.json" in spec["stages"]["metrics"]["cmd"]


@pytest.mark.parametrize(("backtest_seeds", "fitted"), [(None, 2), (1, 1)])
def test_nets_are_backtested_with_their_shipped_seeds_unless_backtest_seeds_says(catalogue, backtest_seeds,
                                                                                 fitted, monkeypatch):
    seen = []
    real = backtest.fit_model

    def spy(name, cfg, common, data, seed, progress=False, features=None):
        seen.append((name, getattr(cfg, "seeds", None)))
        return real(name, cfg, common, data, seed, progress, features)

    monkeypatch.setattr(backtest, "fit_model", spy)
    raw = _params([2019], ("ridge", "kadn"))
    raw["train"]["nets"]["seeds"] = 2  # the shipped nets' count, which the backtest takes by default
    raw["backtest"]["seeds"] = backtest_seeds
    enc = load_encoded(catalogue)
    backtest.fit_year(enc, fast(raw), 2019, "kadn")
    backtest.fit_year(enc, fast(raw), 2019, "ridge")
    assert seen == [("kadn", fitted), ("ridge", None)]
