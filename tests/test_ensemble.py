"""Seed ensembles (`train.nets.seeds`): the saved model scores with every member and averages, `kadn predict`
does the same, and Table 2 (`distillation` in metrics.json) counts and times every member on both sides."""

import json

import numpy as np
import pytest
import torch

import models.nets.nets as nets
from models.nets.nets import count_params, predict_scores
from models.serving.artifacts import load_model
from models.serving.predict import encode_films, film_dense, predict
from models.serving.results import model_view
from models.stages.evaluate import branch_figures, run_evaluate
from models.stages.train import run_train
from models.training.data import DENSE, tensors
from models.training.trend import saved_offset
from pipeline.features.encode import load_encoded, release_int
from pipeline.params import EvaluateConfig
from tests.model_support import encoded_catalogue, fast, fast_params


def params_with(seeds: int) -> dict:
    params = fast_params()
    params["models"] = {"baselines": [], "nets": ["kadn"]}
    params["train"]["nets"]["seeds"] = seeds
    return params


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """K-ADN trained and evaluated with one seed and with two (the first member of both is seed 0)."""
    folder = tmp_path_factory.mktemp("ensemble")
    enc = encoded_catalogue(folder)
    out = {"enc": enc}
    for seeds in (1, 2):
        models = folder / f"seeds{seeds}"
        run_train("kadn", fast(params_with(seeds)), enc, models)
        timings = folder / f"t{seeds}.json"
        frag = run_evaluate(fast(params_with(seeds)), enc, models, folder / f"e{seeds}.json", folder / f"plots{seeds}",
                            timings_out=timings)
        out[seeds] = (models, {**frag["distillation"], "timed": json.loads(timings.read_text())["distillation"]})
    return out


@pytest.mark.parametrize("output", ["student", "teacher"])
def test_the_ensemble_scores_the_mean_of_its_members(trained, output):
    models, _ = trained[2]
    loaded = load_model(models, "kadn")
    assert len(loaded.nets) == 2
    x = model_view(load_encoded(trained["enc"]), loaded)
    members = [predict_scores(net, loaded.head, tensors(x))[output].numpy() for net in loaded.nets]
    ensemble = loaded.score(x, output)
    np.testing.assert_allclose(ensemble, np.mean(members, 0), atol=1e-6)
    # Two seeds give two different nets, so the mean is not either member's score.
    assert np.abs(members[0] - members[1]).max() > 1e-3
    assert np.abs(ensemble - members[0]).max() > 1e-4
    # The first member is the one-seed model itself.
    single = load_model(trained[1][0], "kadn")
    np.testing.assert_array_equal(single.score(x, output), members[0].astype(np.float64))


def test_a_members_branch_scores_exactly_as_the_whole_pair(trained):
    loaded = load_model(trained[2][0], "kadn")
    x = tensors(model_view(load_encoded(trained["enc"]), loaded))
    for net in loaded.nets:
        pair = predict_scores(net, loaded.head, x)
        for output in ("teacher", "student"):
            assert torch.equal(predict_scores(net.branch(output), loaded.head, x)[output], pair[output])


def test_predict_averages_every_member(trained, tmp_path):
    models, _ = trained[2]
    loaded = load_model(models, "kadn")
    films = [{"douban_id": i, "title": f"新片{i}", "directors": ["无名导演"], "writers": [], "actors": actors,
              "genres": ["剧情", "喜剧"][: i % 2 + 1], "countries": ["中国大陆"], "languages": ["汉语普通话"],
              "runtime_min": 90 + 10 * i, "release_date": f"201{i}-03-08"}
             for i, actors in enumerate([["无名演员"], list(loaded.vocab["groups"]["actors"])[:3]], 1)]  # ids start at 1
    path = tmp_path / "films.json"
    path.write_text(json.dumps(films, ensure_ascii=False), encoding="utf-8")
    rows = predict(path, "kadn", models)
    x = encode_films(films, loaded.vocab)[0]
    if loaded.vocab.get("dense"):  # track records (on by default) give every net dense inputs
        x[DENSE] = film_dense(films, loaded.vocab)
    x = tensors(x)
    # Every score carries the saved target trend's offset for its release (models.trend).
    offset = saved_offset(loaded.vocab, np.array([release_int(f["release_date"]) for f in films]))
    members = [predict_scores(net, loaded.head, x)["student"].numpy() + offset for net in loaded.nets]
    assert [r["predicted"] for r in rows] == pytest.approx(np.mean(members, 0), abs=5e-4)
    assert any(abs(r["predicted"] - m) > 1e-3 for r, m in zip(rows, members[0]))


def test_table2_counts_every_member_on_both_sides(trained):
    one, two = trained[1][1], trained[2][1]
    assert one["seeds"] == 1 and two["seeds"] == 2
    assert set(one) == set(two) == {"teacher", "student", "param_reduction", "size_reduction",
                                    "multiply_add_reduction", "param_reduction_private",
                                    "multiply_add_reduction_private", "test_films", "seeds", "timed"}
    single = load_model(trained[1][0], "kadn").nets[0]
    for side in ("teacher", "student"):
        branch = single.branch(side)
        # One seed: exactly the figures of one branch, as before ensembles.
        assert one[side]["params"] == count_params(branch)
        assert two[side]["params"] == 2 * one[side]["params"]
        assert two[side]["size_kb"] == pytest.approx(2 * one[side]["size_kb"], abs=0.2)
        assert two[side]["multiply_adds_per_film"] == pytest.approx(2 * one[side]["multiply_adds_per_film"], abs=1)
        for figures in (one, two):
            assert {"params", "size_kb", "multiply_adds_per_film", "params_shared", "params_private",
                    "multiply_adds_shared_per_film", "multiply_adds_private_per_film"} == set(figures[side])
            assert {"infer_s", "infer_10k_s", "train_s"} == set(figures["timed"][side])
            assert all(figures["timed"][side][k] > 0 for k in ("infer_s", "infer_10k_s", "train_s"))
    # Both sides grow alike, so the reductions are the same figures.
    assert two["param_reduction"] == one["param_reduction"]
    assert two["multiply_add_reduction"] == one["multiply_add_reduction"]
    # (sizes of these tiny nets are a few KB, rounded to 0.1 KB: the size reduction moves a little)
    assert two["size_reduction"] == pytest.approx(one["size_reduction"], abs=0.02)


def test_table2_times_every_member(trained, monkeypatch):
    models, _ = trained[2]
    loaded = load_model(models, "kadn")
    enc = load_encoded(trained["enc"])
    scored = []
    real = nets.predict_scores

    def counting(model, head, x, batch=4096):
        scored.append(model.mlp)
        return real(model, head, x, batch)

    monkeypatch.setattr(nets, "predict_scores", counting)
    branch_figures(loaded, model_view(enc, loaded), enc.index("test"), enc.index("train"),
                   enc.rating.astype(np.float32), EvaluateConfig(timing_repeats=1, timing_films=50))
    mlps = {id(getattr(net, side)) for net in loaded.nets for side in ("teacher", "student")}
    assert {id(m) for m in scored} == mlps
