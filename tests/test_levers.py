"""The baselines' OOV encoding and the student's training levers (losses, learning-rate schedule)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.nets.heads import Head
from models.stages.train import run_train
from models.training.data import FitData, categorical_columns, drop_people, multi_hot, token_table
from models.training.fit_net import fit_net, make_head
from models.training.runtime import runtime
from pipeline.errors import KadnError
from pipeline.features.encode import load_encoded
from pipeline.groups import names
from tests.model_support import encoded_catalogue, fast, fast_params, shipped_head
from tests.params_support import shipped_net

GROUPS = names()


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return encoded_catalogue(tmp_path_factory.mktemp("levers"))


@pytest.fixture(autouse=True)
def _runtime():
    with runtime(seed=0, threads=1):  # as the stages fit: deterministic kernels, one thread
        yield


def _actors_only(actors: np.ndarray) -> tuple[dict, dict]:
    x = {g: np.zeros((len(actors), 1), np.int32) for g in GROUPS}
    x["actors"] = actors
    return x, dict.fromkeys(GROUPS, 4)


def test_oov_columns_are_a_count_an_indicator_or_a_scaled_count():
    # Film 0: known actor 2 and two unknown actors; film 1: known actor 3 only. Width 4 = the group's max_len.
    x, sizes = _actors_only(np.array([[2, 1, 1, 0], [3, 0, 0, 0]], np.int32))
    start = 4 * GROUPS.index("actors")

    def actors(oov):
        return multi_hot(x, sizes, None, oov).toarray()[:, start:start + 4].tolist()

    assert actors("count") == [[0, 2, 1, 0], [0, 0, 0, 1]]
    assert actors("indicator") == [[0, 1, 1, 0], [0, 0, 0, 1]]
    assert actors("scaled") == [[0, 0.5, 1, 0], [0, 0, 0, 1]]
    # Known tokens stay 0/1 whatever the mode, and rows can be picked as before.
    assert multi_hot(x, sizes, np.array([1]), oov="indicator").toarray()[0, start + 3] == 1
    with pytest.raises(ValueError, match="oov must be one of"):
        multi_hot(x, sizes, None, "clip")


def test_oov_mode_is_a_checked_param_and_reaches_the_saved_baseline(catalogue, tmp_path):
    params = fast_params()
    params["train"]["common"]["oov"] = "bogus"
    with pytest.raises(KadnError, match="train.common.oov"):
        fast(params)
    params["train"]["common"]["oov"] = "indicator"
    params["train"]["common"]["track_records"]["enabled"] = False
    params["train"]["ridge"]["grid"] = {}
    meta = run_train("ridge", fast(params), catalogue, tmp_path / "ind")
    assert meta["oov"] == "indicator"
    params["train"]["common"]["oov"] = "count"
    counted = run_train("ridge", fast(params), catalogue, tmp_path / "cnt")
    # The two encodings give the ridge different inputs, so different cross-validated errors.
    assert meta["cv"]["out"]["mae"] != counted["cv"]["out"]["mae"]
    from models.serving.artifacts import load_model
    from models.stages.evaluate import model_view

    enc = load_encoded(catalogue)
    loaded = load_model(tmp_path / "ind", "ridge")
    x = model_view(enc, loaded)
    expected = loaded.estimator.predict(multi_hot(x, loaded.vocab["sizes"], None, "indicator"))
    assert np.allclose(loaded.score(x), expected)
    assert not np.allclose(loaded.score(x), loaded.estimator.predict(multi_hot(x, loaded.vocab["sizes"], None, "count")))
    assert json.loads((tmp_path / "ind" / "ridge" / "meta.json").read_text())["oov"] == "indicator"


def test_l1_loss_is_the_mean_absolute_error_of_the_scores():
    head = shipped_head("regression", 7.0, regression_loss="l1")
    y = torch.tensor([7.0, 9.0, 6.0])
    assert head.loss(torch.zeros(3, 1), y).item() == pytest.approx(1.0)  # (0 + 2 + 1) / 3
    with pytest.raises(ValueError, match="regression loss must be one of"):
        Head("regression", 7.0, **{**_head_settings(), "loss": "l2"})


def _head_settings() -> dict:
    """Head's settings as training passes them, from the shipped train.nets."""
    cfg = shipped_net()
    return {"low": cfg.bins.low, "high": cfg.bins.high, "width": cfg.bins.width, "sigma": cfg.soft_sigma,
            "loss": cfg.regression_loss, "huber_delta": cfg.huber_delta}


def test_huber_delta_reaches_the_head_from_the_params():
    cfg = fast().train.nets.model_copy(update={"regression_loss": "huber", "huber_delta": 0.25})
    head = make_head("kadn", cfg, 7.0)
    # Far from the target the Huber loss is delta * (|e| - delta / 2): linear with slope delta.
    y = torch.tensor([9.0])
    assert head.loss(torch.zeros(1, 1), y).item() == pytest.approx(0.25 * (2.0 - 0.125))


def _short_runs(catalogue):
    """The catalogue's training data, and a two-epoch net config with no lever on."""
    enc = load_encoded(catalogue)
    tr, va = enc.index("train"), enc.index("val")
    r = enc.restrict(tr, 2)
    base = fast().train.nets.model_copy(update={"epochs": 2, "evals_per_epoch": 1, "token_dropout": 0.0})
    return FitData(r.x, r.freq, enc.rating, tr, va), base


def test_cosine_schedule_changes_training_and_stays_deterministic(catalogue):
    data, base = _short_runs(catalogue)
    cosine = base.model_copy(update={"lr_schedule": "cosine"})
    a, b, c = fit_net("kadn", data, cosine, seed=3), fit_net("kadn", data, cosine, seed=3), fit_net("kadn", data, base, seed=3)
    assert [h["val_mae_student"] for h in a.curve] == [h["val_mae_student"] for h in b.curve]
    assert [h["val_mae_student"] for h in a.curve] != [h["val_mae_student"] for h in c.curve]


def test_a_rotated_split_keeps_the_rows_and_validates_on_as_many_in_range_films():
    rows = np.arange(40)
    in_range = rows >= 10  # films 0-9 are from before the range: they only ever train
    val = np.arange(10, 14)
    data = FitData({}, {}, np.zeros(40), np.setdiff1d(rows, val), val, in_range)
    seen = set()
    for seed in range(5):
        split = data.rotated(seed)
        assert np.array_equal(np.union1d(split.train_rows, split.val_rows), rows)
        assert not np.intersect1d(split.train_rows, split.val_rows).size
        assert len(split.val_rows) == 4 and in_range[split.val_rows].all()
        seen.add(tuple(split.val_rows))
    assert len(seen) == 5  # each seed its own share


def test_rotate_val_gives_each_seed_after_the_first_its_own_validation_rows(catalogue, monkeypatch):
    import models.training.fit as fit

    enc = load_encoded(catalogue)
    tr, va = enc.index("train"), enc.index("val")
    r = enc.restrict(tr, 2)
    data = FitData(r.x, r.freq, enc.rating.astype(np.float32), tr, va, enc.in_range)
    splits = []
    monkeypatch.setattr("models.training.fit_net.fit_net", lambda kind, d, *a, **k: splits.append(tuple(d.val_rows)))
    train = fast().train
    for rotate in (False, True):
        cfg = train.net("kadn").model_copy(update={"seeds": 3, "rotate_val": rotate})
        fit.fit_model("kadn", cfg, train.common, data, seed=0)
    assert splits[:3] == [tuple(va)] * 3  # off: every seed validates on the same rows
    assert splits[3] == tuple(va) and len(set(splits[3:])) == 3  # on: the first as before, then new shares


def test_token_dropout_hides_only_known_people_at_the_given_share():
    gen = torch.Generator().manual_seed(0)
    people = torch.randint(2, 50, (400, 8))
    people[:, 6:] = 0  # padding
    people[:, 5] = 1   # already unknown
    xb = {g: torch.randint(2, 9, (400, 3)) for g in GROUPS}
    xb.update(directors=people.clone(), writers=people.clone(), actors=people.clone())
    out = drop_people(xb, 0.25, gen)
    for g in ("directors", "writers", "actors"):
        hidden = out[g] != xb[g]
        assert (out[g][hidden] == 1).all()  # a hidden person becomes OOV, never another person
        assert not hidden[:, 5:].any()      # padding and OOV stay as they are
        assert abs(hidden[:, :5].float().mean().item() - 0.25) < 0.03
    for g in ("genres", "countries", "languages", "runtime", "year", "month"):
        assert torch.equal(out[g], xb[g])
    assert torch.equal(drop_people(xb, 0.25, torch.Generator().manual_seed(0))["actors"], out["actors"])
    assert torch.equal(xb["actors"], people)  # the batch given is left untouched


def test_token_dropout_changes_training_and_stays_deterministic(catalogue):
    data, base = _short_runs(catalogue)
    dropped = base.model_copy(update={"token_dropout": 0.2})
    a, b, c = (fit_net("kadn", data, cfg, seed=3) for cfg in (dropped, dropped, base))
    assert [h["val_mae_student"] for h in a.curve] == [h["val_mae_student"] for h in b.curve]
    assert [h["val_mae_student"] for h in a.curve] != [h["val_mae_student"] for h in c.curve]
    # Off, no batch is touched: the same run as a net that never draws a dropout mask.
    import models.training.fit_net as fit

    untouched = fit.drop_people
    fit.drop_people = lambda *args: pytest.fail("token dropout drew a mask while off")
    try:
        d = fit_net("kadn", data, base, seed=3)
    finally:
        fit.drop_people = untouched
    assert [h["val_mae_student"] for h in d.curve] == [h["val_mae_student"] for h in c.curve]


def test_the_token_table_holds_each_group_s_first_ids_and_the_dense_inputs():
    x = {g: np.zeros((2, 1), np.int32) for g in GROUPS}
    x["actors"] = np.array([[5, 1, 7, 0, 0, 0, 0, 0], [3, 0, 0, 0, 0, 0, 0, 0]], np.int32)
    x["directors"] = np.array([[9], [4]], np.int32)  # one slot stored, two in the table: the second is PAD
    x["dense"] = np.array([[0.5, -1.0], [2.0, 0.0]], np.float32)
    table = token_table(x, np.array([1, 0]))
    assert list(table.columns) == categorical_columns() + ["dense0", "dense1"]
    assert table[["actors0", "actors1", "actors2", "actors4"]].values.tolist() == [[3, 0, 0, 0], [5, 1, 7, 0]]
    assert table[["directors0", "directors1"]].values.tolist() == [[4, 0], [9, 0]]
    assert table["dense0"].tolist() == [2.0, 0.5]
    assert (table[categorical_columns()].dtypes == np.int64).all()  # CatBoost takes ids as int categories


def test_catboost_reads_ids_as_categories_when_asked_and_says_so_in_its_meta(catalogue, tmp_path):
    params = fast_params()
    params["train"]["catboost"].update(inputs="bogus")
    with pytest.raises(KadnError, match="train.catboost.inputs"):
        fast(params)
    metas = {}
    for inputs in ("categorical", "multi_hot"):
        params["train"]["catboost"].update(inputs=inputs, max_ctr_complexity=1)
        metas[inputs] = run_train("catboost", fast(params), catalogue, tmp_path / inputs)
    assert metas["categorical"]["inputs"] == "categorical" and metas["multi_hot"]["inputs"] == "multi_hot"
    # Two different views of the same films: different cross-validated errors.
    assert metas["categorical"]["cv"]["out"]["mae"] != metas["multi_hot"]["cv"]["out"]["mae"]


def test_a_records_only_model_knows_nobody_but_their_records_while_the_others_keep_people(catalogue, tmp_path):
    from models.serving.artifacts import load_model
    from models.training.data import restricted_for
    from pipeline.features.encode import OOV, PAD

    enc = load_encoded(catalogue)
    params = fast_params()
    params["train"]["common"]["records_only"] = ["ridge"]
    common, rows = fast(params).train.common, np.arange(len(enc))
    x = restricted_for(enc, rows, common, "ridge").x
    for group in names("people"):
        assert set(np.unique(x[group]).tolist()) <= {PAD, OOV}
    assert (x["genres"] > OOV).any() and (x["year"] > OOV).any()  # only the people groups are dropped
    other = restricted_for(enc, rows, common, "svm").x  # a model not named keeps its people
    assert all((other[g] > OOV).any() for g in names("people"))
    params["train"]["ridge"]["grid"] = {}
    run_train("ridge", fast(params), catalogue, tmp_path / "records")
    saved = load_model(tmp_path / "records", "ridge").vocab
    assert all(saved["sizes"][g] == 2 for g in names("people"))  # PAD and OOV: the saved model knows nobody
    assert saved["track"]  # ...and reads people through their track records
    params["train"]["common"]["records_only"] = []
    run_train("ridge", fast(params), catalogue, tmp_path / "tokens")
    assert all(load_model(tmp_path / "tokens", "ridge").vocab["sizes"][g] > 2 for g in names("people"))


@pytest.mark.parametrize("value, message", [(["ridge", "ridge"], "twice"), (["forest"], "records_only")])
def test_records_only_refuses_a_name_twice_or_a_model_that_does_not_exist(value, message):
    params = fast_params()
    params["train"]["common"]["records_only"] = value
    with pytest.raises(KadnError, match=message):
        fast(params)


def test_baseline_rows_all_lets_a_baseline_learn_from_the_share_the_nets_stop_on(catalogue, tmp_path, monkeypatch):
    from models.stages import backtest
    from models.training.data import fold_split, rows_for

    enc = load_encoded(catalogue)
    params = fast_params()
    params["train"]["ridge"]["grid"] = {}
    params["train"]["common"]["baseline_rows"] = "fit"
    common = fast(params).train.common
    fit_rows, val_rows = fold_split(enc.index("train"), 0.2, 1, enc.in_range)
    ridge_rows, ridge_val = rows_for("ridge", fit_rows, val_rows, common)  # `fit`: as every model
    assert np.array_equal(ridge_rows, fit_rows) and np.array_equal(ridge_val, val_rows)
    params["train"]["common"]["baseline_rows"] = "all"
    common = fast(params).train.common
    ridge_rows, ridge_val = rows_for("ridge", fit_rows, val_rows, common)
    assert sorted(ridge_rows) == sorted(np.concatenate([fit_rows, val_rows])) and len(ridge_val) == 0
    kadn_rows, kadn_val = rows_for("kadn", fit_rows, val_rows, common)
    assert (kadn_rows == fit_rows).all() and (kadn_val == val_rows).all()  # a net still stops on its share
    # The fixed split: the saved ridge learned from the train and val films; it says so, and its fit differs.
    meta = run_train("ridge", fast(params), catalogue, tmp_path / "all")
    assert (meta["train_rows"], meta["val_rows"]) == (len(enc.index("train")) + len(enc.index("val")), 0)
    params["train"]["common"]["baseline_rows"] = "fit"
    before = run_train("ridge", fast(params), catalogue, tmp_path / "fit")
    assert before["train_rows"] == len(enc.index("train")) and before["cv"]["out"] != meta["cv"]["out"]
    # The backtest's fits take the same rows (each year's films before it).
    seen = []
    real = backtest.fit_model
    monkeypatch.setattr(backtest, "fit_model", lambda name, cfg, common, data, *a, **k: (
        seen.append((name, len(data.train_rows), len(data.val_rows))), real(name, cfg, common, data, *a, **k))[1])
    for value in ("fit", "all"):
        params["train"]["common"]["baseline_rows"] = value
        backtest.fit_year(enc, fast(params), 2019, "ridge")
    (_, fit_n, fit_val), (_, all_n, all_val) = seen
    assert all_n == fit_n + fit_val and all_val == 0 and fit_val > 0


def test_sources_all_reads_vocabularies_and_track_records_from_the_validation_share_too(catalogue, monkeypatch):
    from models.stages import backtest
    from models.training import data as fit_inputs_module
    from models.training.data import fold_split, sources_for

    enc = load_encoded(catalogue)
    params = fast_params()
    fit_rows, val_rows = fold_split(enc.index("train"), 0.2, 1, enc.in_range)
    for value, expected in (("fit", fit_rows), ("all", np.union1d(fit_rows, val_rows))):
        params["train"]["common"]["sources"] = value
        assert np.array_equal(sources_for(fit_rows, val_rows, fast(params).train.common), expected)
    # In a backtest year the net still learns from its fit rows and stops on its validation rows, while its
    # vocabularies are read from both with `all`.
    restricted_from, fitted = [], []
    real_restricted, real_fit = fit_inputs_module.restricted_for, backtest.fit_model
    monkeypatch.setattr(fit_inputs_module, "restricted_for", lambda enc_, rows, *a: (
        restricted_from.append(rows), real_restricted(enc_, rows, *a))[1])
    monkeypatch.setattr(backtest, "fit_model", lambda name, cfg, common, data, *a, **k: (
        fitted.append((data.train_rows, data.val_rows)), real_fit(name, cfg, common, data, *a, **k))[1])
    for value in ("fit", "all"):
        params["train"]["common"]["sources"] = value
        backtest.fit_year(enc, fast(params), 2019, "kadn")
    (fit_train, fit_val), (all_train, all_val) = fitted
    assert np.array_equal(fit_train, all_train) and np.array_equal(fit_val, all_val) and len(fit_val) > 0
    assert np.array_equal(restricted_from[0], fit_train)
    assert np.array_equal(restricted_from[1], np.union1d(fit_train, fit_val))
