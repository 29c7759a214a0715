"""`kadn forecast --model blend`: the stacked blend saved by `kadn blend` scores films as its intercept plus the
weighted sum of its members' forecasts, with intervals from its own residuals and reasons in its own score
points; a member retrained since the blend was fitted is refused; `--model auto` picks the blend when it is the
row best forward."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from crawler.mocksite.catalogue import generate_catalogue, store_catalogue
from models.serving.forecast import best_forward, forecast, select_films
from models.serving.saved_blend import NAME, load_blend
from models.stages.blend import run_blend
from models.stages.train import run_train
from models.training import conformal
from pipeline.cli import main
from pipeline.errors import KadnError
from pipeline.film import store
from tests.model_support import encoded_catalogue, fast, fast_params, rehash
from tests.test_forecast import film, known_people, read_jsonl, strangers

MEMBERS = ["ridge", "kadn"]


def blend_params() -> dict:
    params = fast_params()
    # A student good enough to earn a weight beside ridge, so each sum below has two terms.
    params["train"]["nets"].update(epochs=8, dim=8, student=[16])
    # Weights on the out-of-fold predictions: these tests need no backtest (tests/test_blend.py fits the
    # forward ones).
    params["blend"].update(members=MEMBERS, loss="absolute", weights="out_of_fold")
    return params


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """ridge and the K-ADN student trained on the small catalogue, their blend fitted and saved beside them;
    the catalogue in a store (its unrated films are the forecast's) and the params file."""
    folder = tmp_path_factory.mktemp("blend_forecast")
    enc = encoded_catalogue(folder)
    for name in MEMBERS:
        run_train(name, fast(blend_params()), enc, folder / "models")
    run_blend(fast(blend_params()), enc, {"pre_release": folder / "models"}, folder / "blend.json")
    store_catalogue(generate_catalogue(260, 5), f"sqlite:///{folder / 'store.sqlite'}")
    (folder / "params.yaml").write_text(yaml.safe_dump(blend_params(), allow_unicode=True), encoding="utf-8")
    return folder


def args_for(folder: Path, models: Path | None = None) -> list[str]:
    return ["--database-url", f"sqlite:///{folder / 'store.sqlite'}", "--models", str(models or folder / "models"),
            "--params", str(folder / "params.yaml")]


def test_the_saved_blend_holds_the_reported_weights_and_its_members_digests(trained, tmp_path):
    row = json.loads((trained / "blend.json").read_text())["models"]["blend"]
    folder = trained / "models" / NAME
    meta = json.loads((folder / "meta.json").read_text())
    assert [m["name"] for m in meta["members"]] == row["members"] == MEMBERS
    assert [round(m["weight"], 3) for m in meta["members"]] == row["weights"] and min(row["weights"]) > 0
    assert round(meta["intercept"], 3) == row["intercept"]
    for m in meta["members"]:
        assert m["checksums_sha256"] == hashlib.sha256((trained / "models" / m["name"] / "checksums.json")
                                                       .read_bytes()).hexdigest()
    sums = json.loads((folder / "checksums.json").read_text())["sha256"]
    assert set(sums) == {"model.json", "meta.json", conformal.FILE}
    # Its out-of-fold file is its members' layout: every in-range film, a cross-fitted prediction each.
    own, first = conformal.load(folder), conformal.load(trained / "models" / MEMBERS[0])
    assert np.array_equal(own["douban_id"], first["douban_id"]) and np.isfinite(own["pred_out"]).all()
    assert not np.array_equal(own["pred_out"], first["pred_out"])
    # Fitted again on the same inputs: the same bytes, file for file.
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    copy = tmp_path / "models"
    shutil.copytree(trained / "models", copy)
    run_blend(fast(blend_params()), trained / "enc", {"pre_release": copy}, tmp_path / "blend.json")
    assert {p.name: p.read_bytes() for p in (copy / NAME).iterdir()} == before


def test_forecast_with_the_blend_is_its_members_weighted_sum_end_to_end(trained, tmp_path, capsys):
    shutil.copyfile(trained / "store.sqlite", tmp_path / "store.sqlite")  # its ledger gets this test's rows
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    out = tmp_path / "out.jsonl"
    argv = ["forecast", "--database-url", url, *args_for(trained)[2:], "--model", "blend", "-o", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert "-> " in capsys.readouterr().err
    rows = read_jsonl(out)
    films = select_films(fast(blend_params()), None, None, url)[0]
    assert [r["douban_id"] for r in rows] == [f["douban_id"] for f in films] and len(rows) > 5
    blend = load_blend(trained / "models")
    alone = {m.name: forecast(films, m.name, trained / "models", fast(), with_reasons=False) for m in blend.members}
    calibration = conformal.for_model(conformal.load(trained / "models" / NAME), "out", fast().forecast)
    for i, row in enumerate(rows):
        by_hand = blend.intercept + sum(m.weight * alone[m.name][i]["predicted"] for m in blend.members)
        assert row["predicted"] == pytest.approx(by_hand, abs=2e-3)
        assert {n: m["score"] for n, m in row["members"].items()} == {n: alone[n][i]["predicted"] for n in alone}
        # No forward predictions beside the models: the interval is its cross-fitted out-of-fold residuals'.
        half = calibration.half_width(np.array([row["known_share"]]))[0]
        assert row["high"] == pytest.approx(min(10.0, row["predicted"] + half), abs=2e-3)
        assert row["low"] <= row["predicted"] <= row["high"] and "unknown_text" in row
    assert len({r["predicted"] for r in rows}) > 1
    ledger = store.load_forecasts(store.connect(url, create=False))
    assert {r["model"] for r in ledger} == {"blend"} and len(ledger) == len(rows)
    # The terminal table names each member's score and weight under the film.
    capsys.readouterr()
    assert main(["forecast", *args_for(trained), "--model", "blend", "--no-record", "--explain"]) == 0
    shown = capsys.readouterr()
    assert "    members: ridge " in shown.out and "intercept" in shown.out and "calibrated out of fold" in shown.err


def test_the_blends_intervals_come_from_its_own_forward_residuals(trained, tmp_path):
    films = select_films(fast(), None, None, f"sqlite:///{trained / 'store.sqlite'}")[0][:5]
    n = 200  # forward residuals of 1.5 for the blend and 0 for ridge
    np.savez(tmp_path / "forward.npz", model=np.array(["blend"] * n + ["ridge"] * n), year=np.full(2 * n, 2019),
             douban_id=np.arange(2 * n), known=np.tile(np.linspace(0, 1, n), 2), pred=np.full(2 * n, 7.0),
             y=np.r_[np.full(n, 5.5), np.full(n, 7.0)])
    rows = forecast(films, "blend", trained / "models", fast(), with_reasons=False, forward=tmp_path / "forward.npz")
    for row in rows:
        assert row["low"] == pytest.approx(max(0.0, row["predicted"] - 1.5), abs=2e-3)
        assert row["high"] == pytest.approx(min(10.0, row["predicted"] + 1.5), abs=2e-3)


def test_a_blend_sum_past_the_top_of_the_scale_is_forecast_as_ten(trained, tmp_path):
    films = select_films(fast(), None, None, f"sqlite:///{trained / 'store.sqlite'}")[0][:5]
    models = tmp_path / "models"
    shutil.copytree(trained / "models", models)
    meta = json.loads((models / NAME / "meta.json").read_text())
    meta["intercept"] += 20.0  # every film's weighted sum far above 10
    (models / NAME / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    rehash(models / NAME)
    rows = forecast(films, "blend", models, fast(), with_reasons=False)
    raw = [load_blend(models).intercept + sum(m["weight"] * m["score"] for m in r["members"].values()) for r in rows]
    assert min(raw) > 20
    assert all(r["predicted"] == r["high"] == 10.0 and 0 <= r["low"] < 10.0 for r in rows)


def test_the_blends_effects_are_its_forecast_minus_its_forecast_with_the_value_unknown(trained):
    people = known_people(trained)
    (row,) = forecast([film(1, **people)], "blend", trained / "models", fast())
    without = forecast([film(1, **strangers(people, "actors"))], "blend", trained / "models", fast())[0]
    assert row["effects"]["actors"] == pytest.approx(row["predicted"] - without["predicted"], abs=2e-3)
    assert row["effects"]["actors"] != 0
    lead = people["actors"][0]
    no_lead = {**people, "actors": ["陌生人"] + people["actors"][1:], "actor_ids": [None] + people["actor_ids"][1:]}
    without_lead = forecast([film(1, **no_lead)], "blend", trained / "models", fast())[0]
    (shown,) = [p for p in row["people"]["actors"] if p["name"] == lead]
    assert shown["effect"] == pytest.approx(row["predicted"] - without_lead["predicted"], abs=2e-3)
    assert all("weight" not in p for p in row["people"]["actors"])  # attention weights are one member's alone
    stranger = forecast([film(2)], "blend", trained / "models", fast())[0]
    assert "3 of 3 actors unknown to the model" in stranger["unknown_text"]


def test_a_member_retrained_after_the_blend_was_fitted_is_refused_until_the_blend_is_refitted(trained, tmp_path,
                                                                                             capsys):
    models = tmp_path / "models"
    shutil.copytree(trained / "models", models)
    changed = blend_params()
    changed["train"]["ridge"]["grid"] = {"alpha": [0.05]}  # another ridge: other predictions, other files
    run_train("ridge", fast(changed), trained / "enc", models)
    out = tmp_path / "out.csv"
    code = main(["forecast", *args_for(trained, models), "--model", "blend", "--no-record", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and not out.exists() and len(err.strip().splitlines()) == 1
    assert f"{models / NAME}: member ridge ({models / 'ridge'}) changed since the blend was fitted" in err
    assert "re-fit it with `kadn blend`" in err
    run_blend(fast(blend_params()), trained / "enc", {"pre_release": models}, tmp_path / "blend.json")
    assert main(["forecast", *args_for(trained, models), "--model", "blend", "--no-record", "-o", str(out)]) == 0


def _weight_edited(folder: Path) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta["members"][0]["weight"] = 5.0
    (folder / "meta.json").write_text(json.dumps(meta))


def _unknown_member(folder: Path) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta["members"][0]["name"] = "../ridge"
    (folder / "meta.json").write_text(json.dumps(meta))
    rehash(folder)


@pytest.mark.parametrize(("damage", "says"), [
    (_weight_edited, "damaged model files (meta.json does not match its sha256 in checksums.json); re-fit it"),
    (_unknown_member, "meta.json: expected members (known names, weights >= 0, digests) and an intercept"),
    (lambda folder: shutil.rmtree(folder), "no saved blend; fit it with `kadn blend`"),
])
def test_a_damaged_or_missing_blend_folder_gets_one_line(trained, tmp_path, damage, says):
    models = tmp_path / "models"
    shutil.copytree(trained / "models", models)
    damage(models / NAME)
    with pytest.raises(KadnError) as caught:
        forecast([film(1)], "blend", models, fast())
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_auto_picks_the_blend_when_it_is_the_row_best_forward(trained, tmp_path, capsys):
    models = tmp_path / "models"
    shutil.copytree(trained / "models", models)
    backtest = tmp_path / "metrics" / "backtest.json"  # where `kadn backtest` writes it, beside the models
    backtest.parent.mkdir()
    figures = {"ridge": {"mean": {"mae": 0.70}}, "kadn": {"mean": {"mae": 0.69}}, "blend": {"mean": {"mae": 0.68}}}
    backtest.write_text(json.dumps({"backtest": figures}), encoding="utf-8")
    name, why = best_forward(models)
    assert name == "blend" and "0.680" in why
    assert main(["forecast", *args_for(trained, models), "--no-record", "-o", str(tmp_path / "out.jsonl")]) == 0
    assert "model blend: best forward-backtest MAE" in capsys.readouterr().err
    assert all("members" in r for r in read_jsonl(tmp_path / "out.jsonl"))
    figures["blend"]["mean"]["mae"] = 0.71  # a single model better forward: that one
    backtest.write_text(json.dumps({"backtest": figures}), encoding="utf-8")
    assert best_forward(models)[0] == "kadn"
    figures["blend"]["mean"]["mae"] = 0.5  # best, but no blend saved: never chosen
    backtest.write_text(json.dumps({"backtest": figures}), encoding="utf-8")
    shutil.rmtree(models / NAME)
    assert best_forward(models)[0] == "kadn"


def test_a_feature_set_not_trained_leaves_a_blend_folder_saying_so(trained, tmp_path):
    models, popular = tmp_path / "models", tmp_path / "popular"
    shutil.copytree(trained / "models", models)
    for name in MEMBERS:
        (popular / name).mkdir(parents=True)
        (popular / name / "skipped.json").write_text('{"skipped": "no popularity counts in the data"}')
    shutil.copytree(trained / "models" / NAME, popular / NAME)  # a blend of an earlier run, now out of date
    fragment = run_blend(fast(blend_params()), trained / "enc", {"pre_release": models, "with_popularity": popular},
                         tmp_path / "blend.json")
    assert set(fragment) == {"models"} and (models / NAME / "model.json").exists()
    assert [p.name for p in (popular / NAME).iterdir()] == ["skipped.json"]
    with pytest.raises(KadnError, match=r"no blend \(its members were not trained on this feature set\)"):
        forecast([film(1)], "blend", popular, fast())
