"""`kadn backtest`: each year's films scored by models trained on earlier films only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from models.backtest import run_backtest, year_rows
from pipeline.cli import main
from pipeline.encode import load_encoded
from pipeline.errors import KadnError
from tests.model_support import ROOT, encoded_catalogue, fast, fast_params


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return encoded_catalogue(tmp_path_factory.mktemp("backtest"), n=300)


def _params(years, models=("mean", "ridge", "kadn"), workers=1):
    params = fast_params()
    params["train"]["common"]["track_records"]["enabled"] = False
    params["train"]["common"]["workers"] = workers  # 1: the fits run here, where a test can watch them
    params["backtest"] = {"years": list(years), "models": list(models), "seeds": 1}
    return params


def test_each_year_trains_on_earlier_films_and_scores_its_own(catalogue, tmp_path, monkeypatch):
    import models.backtest as backtest

    enc = load_encoded(catalogue)
    years = enc.release // 10000
    seen = []
    real = backtest.fit_model

    def spy(name, cfg, common, data, seed, progress=False, features=None):
        seen.append((name, np.concatenate([data.train_rows, data.val_rows])))
        return real(name, cfg, common, data, seed, progress, features)

    monkeypatch.setattr(backtest, "fit_model", spy)
    fragment = run_backtest(fast(_params([2016, 2018])), catalogue, tmp_path / "bt.json")
    assert json.loads((tmp_path / "bt.json").read_text()) == fragment
    figures = fragment["backtest"]
    assert set(figures) == {"mean", "ridge", "kadn", "kadn_teacher"}
    for year, fits in ((2016, seen[:3]), (2018, seen[3:])):
        for _, rows in fits:
            assert (years[rows] < year).all() and len(rows) == (years < year).sum()
        scored = (years == year).sum()
        assert all(figures[m][str(year)]["films"] == scored for m in figures)
    # The mean model predicts each year with its training films' mean: its MAE is checkable by hand.
    train, scored = year_rows(enc, 2016)
    expected = np.abs(enc.rating[scored] - enc.rating[train].astype(np.float32).mean()).mean()
    assert figures["mean"]["2016"]["mae"] == pytest.approx(expected, abs=1e-3)
    for m in figures:
        assert figures[m]["mean"] == pytest.approx(np.mean([figures[m][y]["mae"] for y in ("2016", "2018")]), abs=1e-3)


def test_worker_processes_give_the_figures_of_one_process(catalogue, tmp_path):
    """Each (year, model) fit is seeded on its own: spread over worker processes, latest year first, the
    fragment is the one a single process writes fitting them in order."""
    serial = run_backtest(fast(_params([2016, 2018], ("ridge", "svm", "kadn"))), catalogue, tmp_path / "a.json")
    parallel = run_backtest(fast(_params([2016, 2018], ("ridge", "svm", "kadn"), workers=2)), catalogue,
                            tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert list(parallel["backtest"]["svm"]) == ["2016", "2018", "mean"] and parallel == serial


def test_a_year_without_films_is_refused_without_output(catalogue, tmp_path, capsys):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(_params([2016, 2031], ["mean"]), allow_unicode=True), encoding="utf-8")
    out = tmp_path / "bt.json"
    assert main(["backtest", "--params", str(params_file), "--encoded", str(catalogue), "--out", str(out),
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "backtest year 2031 has" in err and "backtest.years" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    with pytest.raises(KadnError, match="backtest.years: must increase strictly"):
        fast(_params([2018, 2016]))
    with pytest.raises(KadnError, match="backtest.models"):
        fast(_params([2018], ["svr"]))


def test_dvc_runs_the_backtest_and_merges_its_figures():
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    assert spec["stages"]["backtest"]["outs"] == ["artifacts/metrics/backtest.json"]
    assert "artifacts/metrics/backtest.json" in spec["stages"]["metrics"]["cmd"]
