"""The stacked blend: non-negative weights on out-of-fold predictions, never fitted on the rows it scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.stages.backtest import run_backtest
from models.stages.blend import cross_fitted, fit_weights, load_oof, run_blend
from models.stages.train import run_train
from models.training import conformal
from models.training.data import kfold
from models.training.stacking import fit_forward
from pipeline.errors import KadnError
from pipeline.features.encode import load_encoded
from tests.model_support import encoded_catalogue, fast, fast_params


def test_weights_are_non_negative_and_follow_the_better_model():
    rng = np.random.default_rng(0)
    y = rng.normal(7, 1, 400)
    good, anti = y + rng.normal(0, 0.2, 400), 14 - y  # `anti` is perfectly anti-correlated with the score
    model = fit_weights(np.stack([good, anti], 1), y, "squared")
    assert model.coef_[1] == 0 and model.coef_[0] > 0.9


def test_absolute_loss_weights_minimise_the_mae_and_stay_non_negative():
    rng = np.random.default_rng(3)
    y = rng.normal(7, 1, 300)
    y[:30] -= 3  # a few films far below every model's score, as the worst-rated films are
    good, noisy, anti = y + rng.normal(0, 0.2, 300), y + rng.normal(0, 0.8, 300), 14 - y
    good[:30] += 3
    preds = np.stack([good, noisy, anti], 1)
    absolute, squared = fit_weights(preds, y, "absolute"), fit_weights(preds, y, "squared")
    assert (absolute.coef_ >= 0).all() and absolute.coef_[2] == pytest.approx(0, abs=1e-9)
    mae = {k: np.abs(m.predict(preds) - y).mean() for k, m in (("absolute", absolute), ("squared", squared))}
    assert mae["absolute"] < mae["squared"] - 0.01  # least squares chases the outliers, LAD does not


@pytest.mark.parametrize("loss", ["absolute", "squared"])
def test_intercept_years_recentre_the_level_on_the_latest_years_and_keep_the_weights(loss):
    rng = np.random.default_rng(4)
    years = [2014, 2015, 2016, 2017]
    y = {t: rng.normal(7, 1, 80) for t in years}
    # Two members that miss each year by a level that drifts: +0.6 in 2014 down to 0 in 2017.
    shift = {2014: 0.6, 2015: 0.4, 2016: 0.2, 2017: 0.0}
    forward = {"a": {t: y[t] + shift[t] + rng.normal(0, 0.3, 80) for t in years},
               "b": {t: y[t] + shift[t] + rng.normal(0, 0.6, 80) for t in years}}
    blend = fast().blend.model_copy(update={"members": ["a", "b"], "loss": loss})
    every = fit_forward(forward, y, years, blend)
    latest = fit_forward(forward, y, years, blend.model_copy(update={"intercept_years": 1}))
    np.testing.assert_array_equal(latest.coef_, every.coef_)  # the weights still see every year
    centre = np.median if loss == "absolute" else np.mean
    stack = np.stack([forward["a"][2017], forward["b"][2017]], -1)
    assert abs(centre(latest.predict(stack) - y[2017])) < 1e-9  # the latest year's residuals centre on 0
    assert centre(every.predict(stack) - y[2017]) < -0.1  # fitted on every year, the level lags the drift
    assert latest.intercept_ > every.intercept_


def test_blend_loss_is_checked():
    with pytest.raises(ValueError, match="squared or absolute"):
        fit_weights(np.ones((3, 2)), np.ones(3), "huber")


def test_each_fold_is_scored_with_weights_fitted_on_the_other_folds(monkeypatch):
    import models.stages.blend as blend

    n = 60
    y = np.arange(n, dtype=np.float64)  # distinct scores: a score seen by a fit names its film
    rng = np.random.default_rng(1)
    oof = {"a": (y + rng.normal(0, 1, n))[None], "b": (y + rng.normal(0, 3, n))[None]}
    folds = kfold(n, 4, 1, seed=2)
    fitted_on = []
    real = blend.fit_weights

    def spy(preds, target, loss):
        fitted_on.append(set(target.tolist()))
        return real(preds, target, loss)

    monkeypatch.setattr(blend, "fit_weights", spy)
    cv = cross_fitted(oof, ["a", "b"], y, folds, 4, "squared")
    assert len(cv["mae"]) == 4
    for seen, (train, _) in zip(fitted_on, folds):
        assert seen == set(y[train].tolist())  # every other fold's film, none of the held-out ones


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("blend")
    enc_dir = encoded_catalogue(folder)
    params = fast_params()
    params["train"]["common"]["track_records"]["enabled"] = False
    params["blend"]["members"] = ["ridge", "kadn"]
    params["blend"]["weights"] = "out_of_fold"  # the tests of the forward weights below switch it
    for name in ("ridge", "kadn"):
        run_train(name, fast(params), enc_dir, folder / "pre")
    return params, enc_dir, folder


@pytest.fixture(scope="module")
def forward_file(trained):
    """The backtest's forward predictions of the blend's members on the same catalogue."""
    params, enc_dir, folder = trained
    run_backtest(fast(params), enc_dir, folder / "backtest.json", forward_out=folder / "forward.npz")
    return folder / "forward.npz"


def test_blend_row_reports_test_and_cross_fitted_cv_errors(trained, tmp_path):
    params, enc_dir, folder = trained
    enc = load_encoded(enc_dir)
    saved = conformal.load(folder / "pre" / "kadn")
    row_of = {int(d): i for i, d in enumerate(enc.douban_id)}
    for output in ("student", "teacher"):
        oof = load_oof(folder / "pre" / "kadn", output, enc, 1)
        assert oof.shape == (1, len(enc)) and np.isfinite(oof).all()  # every film held out once in a repeat
        rows = [row_of[int(d)] for d in saved["douban_id"]]  # each prediction lands on its own film's row
        assert np.array_equal(oof[saved["repeat"], rows], saved[f"pred_{output}"])
    fragment = run_blend(fast(params), enc_dir, {"pre_release": folder / "pre"}, tmp_path / "blend.json")
    assert json.loads((tmp_path / "blend.json").read_text()) == fragment
    row = fragment["models"]["blend"]
    assert row["members"] == ["ridge", "kadn"] and len(row["weights"]) == 2 and min(row["weights"]) >= 0
    assert row["cv_folds"] == 2 and {"mae", "rmse", "cv_mae_mean", "cv_mae_std"} <= set(row)


def _no_file(folder):
    (folder / "ridge" / conformal.FILE).unlink()


def _older_layout(folder):
    np.savez(folder / "ridge" / conformal.FILE, out=np.zeros((1, 5)))  # [repeats, films], no ids


def _film_missing(folder):
    data = conformal.load(folder / "ridge")
    keep = data["douban_id"] != data["douban_id"][0]  # as if trained before this film was stored
    np.savez(folder / "ridge" / conformal.FILE, **{k: v[keep] for k, v in data.items()})


@pytest.mark.parametrize(("damage", "says"), [
    (_no_file, r"ridge/oof.npz: missing .*retrain with `kadn train ridge`"),
    (_older_layout, r"ridge/oof.npz: no out predictions .*retrain with `kadn train ridge`"),
    (_film_missing, r"ridge/oof.npz: no out predictions for these \d+ films"),
])
def test_blend_refuses_out_of_fold_predictions_it_cannot_use(trained, tmp_path, damage, says):
    import shutil

    params, enc_dir, folder = trained
    shutil.copytree(folder / "pre", tmp_path / "pre")
    damage(tmp_path / "pre")
    with pytest.raises(KadnError, match=says):
        run_blend(fast(params), enc_dir, {"pre_release": tmp_path / "pre"}, tmp_path / "blend.json")
    assert not (tmp_path / "blend.json").exists()


def test_blend_fits_its_weights_with_the_configured_loss(trained, tmp_path, monkeypatch):
    import models.stages.blend as blend

    params, enc_dir, folder = trained
    # Not the shipped loss, so a loss fixed in code would show.
    params = {**params, "blend": {**params["blend"], "loss": "squared"}}
    losses = []
    real = blend.fit_weights

    def spy(preds, target, loss):
        losses.append(loss)
        return real(preds, target, loss)

    monkeypatch.setattr(blend, "fit_weights", spy)
    row = run_blend(fast(params), enc_dir, {"pre_release": folder / "pre"}, tmp_path / "blend.json")["models"]["blend"]
    assert losses == ["squared"] * 3  # each of the 2 CV folds' weights and the shipped ones
    assert min(row["weights"]) >= 0


def test_saved_weights_are_fitted_on_the_forward_predictions_of_films_outside_the_test_split(
        trained, forward_file, tmp_path):
    import shutil

    params, enc_dir, folder = trained
    by_source = {}
    for weights in ("out_of_fold", "forward"):
        out = tmp_path / weights
        shutil.copytree(folder / "pre", out)
        changed = {**params, "blend": {**params["blend"], "weights": weights}}
        row = run_blend(fast(changed), enc_dir, {"pre_release": out}, tmp_path / f"{weights}.json",
                        forward_file)["models"]["blend"]
        by_source[weights] = row, json.loads((out / "blend" / "meta.json").read_text())
    # The same weights fitted here straight from the file: each member's forward rows, test films left out.
    enc = load_encoded(enc_dir)
    with np.load(forward_file) as npz:
        data = {k: npz[k] for k in npz.files}
    kept = ~np.isin(data["douban_id"], enc.douban_id[enc.index("test")])
    assert kept[data["model"] == "ridge"].sum() < (data["model"] == "ridge").sum()  # the test split reaches them
    preds = np.stack([data["pred"][(data["model"] == m) & kept] for m in ("ridge", "kadn")], -1)
    target = data["y"][(data["model"] == "ridge") & kept]
    expected = fit_weights(preds, target, params["blend"]["loss"])
    row, meta = by_source["forward"]
    assert [m["weight"] for m in meta["members"]] == pytest.approx(expected.coef_.tolist(), abs=1e-9)
    assert meta["intercept"] == pytest.approx(expected.intercept_, abs=1e-9)
    assert meta["fitted_on"].startswith(f"forward predictions of the {len(target)} films of backtest years")
    # The metrics row keeps the random-split protocol either way: only the saved weights follow blend.weights.
    oof_row, oof_meta = by_source["out_of_fold"]
    assert row == oof_row
    assert [m["weight"] for m in oof_meta["members"]] == pytest.approx(row["weights"], abs=5e-4)
    assert [m["weight"] for m in meta["members"]] != [m["weight"] for m in oof_meta["members"]]


def _forward_without_kadn(path, data):
    keep = data["model"] != "kadn"
    np.savez(path, **{k: v[keep] for k, v in data.items()})


def _forward_of_other_scores(path, data):
    np.savez(path, **{**data, "y": data["y"] + 0.5})  # as if the films were re-scored since the backtest


@pytest.mark.parametrize(("damage", "says"), [
    (None, r"forward.npz: missing .*`kadn backtest`.*blend.weights: out_of_fold"),
    (_forward_without_kadn, r"forward.npz: no forward predictions of kadn .*kadn in backtest.models"),
    (_forward_of_other_scores, r"forward.npz: from another encoding .*re-run `kadn backtest`"),
])
def test_blend_refuses_forward_predictions_it_cannot_use(trained, forward_file, tmp_path, damage, says):
    import shutil

    params, enc_dir, folder = trained
    params = {**params, "blend": {**params["blend"], "weights": "forward"}}
    shutil.copytree(folder / "pre", tmp_path / "pre")
    path = tmp_path / "forward.npz"
    if damage is not None:
        with np.load(forward_file) as npz:
            damage(path, {k: npz[k] for k in npz.files})
    before = sorted(p.name for p in (tmp_path / "pre").iterdir())
    with pytest.raises(KadnError, match=says):
        run_blend(fast(params), enc_dir, {"pre_release": tmp_path / "pre"}, tmp_path / "blend.json", path)
    assert not (tmp_path / "blend.json").exists()
    assert sorted(p.name for p in (tmp_path / "pre").iterdir()) == before  # no blend folder half-written
