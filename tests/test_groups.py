"""The feature groups are one list of specs (pipeline.groups.SPECS): a group added to it alone is encoded, fed
to CatBoost's categorical table (and every other model input), checked and scored by `kadn forecast` and
explained; data made without a group of the list is refused naming it, never read without it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from pydantic import create_model

from crawler.mocksite.catalogue import films_in_years, generate_catalogue
from models.serving import explain, forecast
from models.serving.artifacts import load_model
from models.serving.predict import score_films
from models.stages.train import run_train
from models.training import conformal
from models.training.data import categorical_columns, drop_people, multi_hot, tensors, token_table
from pipeline import groups, params
from pipeline.errors import KadnError
from pipeline.features import encode
from pipeline.features.clean import apply_rules, to_frame
from pipeline.features.encode import OOV, PAD, load_encoded, record_tokens, run_encode
from pipeline.groups import GroupSpec
from tests.model_support import ROOT, encoded_catalogue, fast, fast_params, rehash, train_models

PARAMS = params.load(ROOT / "params.yaml")
# A throwaway people group on columns no film has today: film editors, by Douban person id when known.
EDITORS = GroupSpec("editors", "people", ("editors", "editor_ids"), "editors", slots=2, word="editor")


@pytest.fixture
def with_editors(monkeypatch):
    monkeypatch.setattr(groups, "SPECS", (*groups.SPECS, EDITORS))


def editors_of(film: dict) -> tuple[list[str], list[str | None]]:
    # Two editors per film; the first follows the score (so a model has a reason to read the group), ids for some.
    first = "剪辑高" if film["rating"] >= 6.5 else "剪辑低"
    second = f"剪辑{film['douban_id'] % 5}"
    return [first, second], ["900001" if first == "剪辑高" else None, None]


def encode_config(max_len: dict) -> params.EncodeConfig:
    """The encode section as pipeline.params makes it, once the group's max_len key is in the list."""
    max_len_model = create_model("MaxLen", __base__=params.Section,
                                 **{k: (params.Positive, ...) for k in groups.max_len_keys()})
    config = create_model("EncodeConfig", __base__=params.EncodeConfig, max_len=(max_len_model, ...))
    return config.model_validate({**PARAMS.encode.model_dump(), "max_len": max_len})


def test_params_max_len_keys_are_the_specs():
    assert tuple(params.MaxLen.model_fields) == groups.max_len_keys() == groups.names("people", "list")
    assert set(encode.TOKENISERS) == set(groups.KINDS)


def test_a_group_added_to_the_list_alone_is_encoded_fed_to_catboost_scored_and_explained(tmp_path, with_editors):
    kept, _ = apply_rules(films_in_years(generate_catalogue(260, 5)), PARAMS.clean)
    kept = sorted(kept, key=lambda r: r["douban_id"])
    for film in kept:
        film["editors"], film["editor_ids"] = editors_of(film)
    frame = to_frame(kept)
    frame["editors"] = [f["editors"] for f in kept]
    frame["editor_ids"] = [f["editor_ids"] for f in kept]
    frame.to_parquet(tmp_path / "movies.parquet")
    cfg = encode_config({**PARAMS.encode.max_len.model_dump(), "editors": 2})

    # Encoded: its arrays, vocabulary and meta.json, tokens as for any people group.
    meta = run_encode(tmp_path / "movies.parquet", cfg, tmp_path / "enc")
    assert meta["groups"]["editors"] == {"tokens": 7, "width": 2}
    enc = load_encoded(tmp_path / "enc")
    first = [enc.vocab["editors"][i - 2] for i in enc.x["editors"][:, 0]]
    assert set(first) == {"id:900001", "name:剪辑低"}

    # Every model input reads it: the nets' tensors (and people dropout), the multi-hot matrix, CatBoost's table.
    restricted = enc.restrict(enc.index("train"), 1)
    x = restricted.x
    assert "editors" in tensors(x)
    dropped = drop_people(tensors(x), 1.0, torch.Generator().manual_seed(0))
    assert (dropped["editors"][tensors(x)["editors"] > OOV] == OOV).all()
    sizes = restricted.sizes()
    assert multi_hot(x, sizes, None, "count").shape[1] == sum(sizes.values())
    table = token_table(x)
    assert categorical_columns()[-2:] == ["editors0", "editors1"] == list(table.columns[-2:])
    assert np.array_equal(table["editors1"], x["editors"][:, 1])
    # The intervals' known-people share counts editors: a film whose every editor is unknown knows less.
    no_editors = {**x, "editors": np.where(x["editors"] > PAD, OOV, PAD).astype(np.int32)}
    assert (conformal.known_share(no_editors) < conformal.known_share(x)).any()

    # CatBoost trained through its stage takes the group's slots as categorical columns.
    run_train("catboost", fast(), tmp_path / "enc", tmp_path / "models")
    loaded = load_model(tmp_path / "models", "catboost")
    assert loaded.estimator.feature_names_[: len(categorical_columns())] == categorical_columns()
    assert "editors" in loaded.vocab["groups"] and loaded.vocab["encode_params"]["max_len"]["editors"] == 2

    # Forecast: records get the group's tokens through the one tokenising path; unknown editors are counted.
    films = [kept[0], {**kept[0], "douban_id": None, "editors": ["新剪辑"], "editor_ids": [None]}]
    assert record_tokens(films, loaded.vocab["encode_params"])[1]["editors"] == ["name:新剪辑"]
    scored = score_films(films, loaded, "out")
    assert scored.x["editors"].shape == (2, 2) and scored.unknown[1]["editors"] == 1
    assert "editors" not in scored.unknown[0]
    # --swap names it, and the swap changes the film's editor and id.
    group, old, new, pid = forecast.parse_swap("editors:剪辑高=新剪辑#123")
    high = next(f for f in kept if f["editors"][0] == "剪辑高")
    swapped = forecast.swapped(high, [(group, old, new, pid)])
    assert swapped["editors"][0] == "新剪辑" and swapped["editor_ids"][0] == "123"

    # Explained: its effect and its people's effects in score points, what the model did not know of it.
    reasons = explain.explain(scored, loaded, "out")
    assert all("editors" in r["effects"] and [p["name"] for p in r["people"]["editors"]] for r in reasons)
    assert any(r["effects"]["editors"] != 0 for r in reasons)
    # Track records are kept for their own roles only: editors show none, directors do.
    assert all("films" not in p for r in reasons for p in r["people"]["editors"])
    assert all("films" in p for r in reasons for p in r["people"]["directors"])
    assert "1 of 1 editor unknown to the model: 新剪辑" in reasons[1]["unknown_text"]


@pytest.fixture(scope="module")
def made_without_editors(tmp_path_factory):
    """An encoded catalogue and a trained ridge, made while the list had no editors group."""
    folder = tmp_path_factory.mktemp("before")
    return encoded_catalogue(folder), train_models(folder, ("ridge",))


def test_data_made_without_a_group_of_the_list_is_refused_naming_it(made_without_editors, tmp_path, monkeypatch):
    enc_dir, models = made_without_editors
    assert load_encoded(enc_dir).x and load_model(models, "ridge").vocab  # read as they are, before
    monkeypatch.setattr(groups, "SPECS", (*groups.SPECS, EDITORS))
    with pytest.raises(KadnError, match=r"arrays.npz: no feature group editors; re-run `kadn encode`"):
        load_encoded(enc_dir)
    with pytest.raises(KadnError, match=r"vocab.json: no feature group editors; retrain with `kadn train ridge`"):
        load_model(models, "ridge")
    # Encode params without the group's max_len key (a model's vocab.json from before): one line, not a KeyError.
    with pytest.raises(KadnError, match=r"max_len has no key 'editors' for feature group editors"):
        record_tokens([{"douban_id": 1}], PARAMS.encode.model_dump())
    # A model folder whose vocab lost a group of today's list is refused too (not scored without it).
    monkeypatch.undo()
    shutil.copytree(models / "ridge", tmp_path / "ridge")
    vocab = json.loads((tmp_path / "ridge" / "vocab.json").read_text(encoding="utf-8"))
    del vocab["groups"]["month"]
    (tmp_path / "ridge" / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    rehash(tmp_path / "ridge")
    with pytest.raises(KadnError, match="no feature group month"):
        load_model(tmp_path, "ridge")


@pytest.mark.parametrize("fields, problem", [
    ({"kind": "dense"}, "kind 'dense' is not one of people, list, scalar"),
    ({"columns": ("editors",)}, "a people group reads 2 column"),
    ({"max_len": None}, "people and lists need an encode.max_len key"),
    ({"slots": 0}, "slots must be at least 1"),
    ({"name": "dense"}, "'dense' is reserved"),
    ({"kind": "scalar", "max_len": None}, "a scalar group needs its columns and a token function"),
])
def test_a_spec_a_consumer_could_not_read_is_refused_when_made(fields, problem):
    spec = {"name": "editors", "kind": "people", "columns": ("editors", "editor_ids"), "max_len": "editors",
            "slots": 2, "word": "editor", **fields}
    with pytest.raises(ValueError, match=problem):
        GroupSpec(**spec)


def test_names_and_max_len_keys_are_given_once():
    with pytest.raises(ValueError, match="name given twice: actors"):
        groups.check((*groups.SPECS, groups.spec("actors")))
    with pytest.raises(KeyError, match="no feature group 'editors'"):
        groups.spec("editors")
    assert fast_params()["encode"]["max_len"].keys() == set(groups.max_len_keys())
