"""params.yaml is checked once, when a command starts: every section refuses a misspelt key by name, with the
closest known key and the file, and values of the wrong type; the stages get typed settings."""

import contextlib
import io

import pytest
import yaml

from pipeline.cli import main
from pipeline.errors import KadnError
from pipeline.io import load_params
from pipeline.params import NetConfig, Params, RidgeConfig, load, parse
from tests.model_support import ROOT

# (path to a section, a misspelt key, the key it should have been)
MISSPELT = [
    (["clean"], "min_votess", "min_votes"),
    (["clean", "non_film"], "keyword", "keywords"),
    (["encode"], "max_lens", "max_len"),
    (["encode", "max_len"], "actor", "actors"),
    (["encode", "split"], "sed", "seed"),
    (["models"], "baseline", "baselines"),
    (["train"], "comon", "common"),
    (["train", "common"], "min_cout", "min_count"),
    (["train", "common", "cv"], "fold", "folds"),
    (["train", "common", "tune"], "vall", "val"),
    (["train", "common", "track_records"], "enable", "enabled"),
    (["train", "ridge"], "alpah", "alpha"),
    (["train", "svm"], "epsilom", "epsilon"),
    (["train", "lightgbm"], "num_leave", "num_leaves"),
    (["train", "nets"], "dropuot", "dropout"),
    (["train", "fm"], "dim_", "dim"),
    (["train", "deepfm"], "deepfm_hiden", "deepfm_hidden"),
    (["train", "at"], "attention_hiden", "attention_hidden"),
    (["train", "kd"], "hint_weigth", "hint_weight"),
    (["train", "kadn"], "lrr", "lr"),
    (["train", "presets", "paper"], "epoch", "epochs"),
    (["evaluate"], "timing_repeat", "timing_repeats"),
    ([], "evalute", "evaluate"),
]


def test_a_section_without_settings_says_so():
    with pytest.raises(KadnError, match=r"unknown key train.mean.alpha; this section takes no keys"):
        parse(with_key(["train", "mean"], "alpha"))


def with_key(section: list[str], key: str, value=1) -> dict:
    raw = load_params(ROOT / "params.yaml")
    node = raw
    for part in section:
        node = node[part] if node.get(part) is not None else node.setdefault(part, {})
        if node is None:
            raise AssertionError(part)
    node[key] = value
    return raw


@pytest.mark.parametrize("section, key, meant", MISSPELT, ids=[".".join(s + [k]) for s, k, _ in MISSPELT])
def test_each_section_refuses_a_misspelt_key_in_one_line(tmp_path, section, key, meant):
    path = tmp_path / "my-params.yaml"
    path.write_text(yaml.safe_dump(with_key(section, key), allow_unicode=True, sort_keys=False), encoding="utf-8")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["encode", "--params", str(path), "--table", str(tmp_path / "none.parquet")])
    assert code == 1
    line = err.getvalue()
    assert line.count("\n") == 1
    assert f"{path}: unknown key {'.'.join(section + [key])}; did you mean {meant!r}?" in line


@pytest.mark.parametrize("section, key, value, message", [
    (["clean"], "min_votes", -1, "clean.min_votes: Input should be greater than or equal to 0, not -1"),
    (["clean"], "min_votes", 2.5, "clean.min_votes: Input should be a valid integer, not 2.5"),
    (["clean"], "min_votes", True, "clean.min_votes: Input should be a valid integer, not True"),
    (["clean", "non_film"], "keywords", [1], "clean.non_film.keywords.0: Input should be a valid string, not 1"),
    (["encode"], "runtime_edges", [0, 90, 80], "encode.runtime_edges: must increase strictly"),
    (["train", "common", "cv"], "folds", 1, "train.common.cv.folds: Input should be greater than or equal to 2"),
    (["train", "nets"], "head", "softmax", "train.nets.head: Input should be 'classification', 'soft' or "
                                           "'regression', not 'softmax'"),
    (["train", "nets"], "preset", "fastest", "train: nets.preset 'fastest' is not one of tuned, paper"),
    (["train", "ridge"], "grid", {"alph": [1.0]}, "train.ridge: grid key 'alph' is not a setting of this model; "
                                                  "did you mean 'alpha'?"),
    (["train", "kadn"], "lr", None, "train: kadn with its preset: lr: Input should be a valid number"),
    (["models"], "nets", ["kadn", "gpt"], "models.nets.1: Input should be 'fm', 'deepfm', 'at', 'kd' or 'kadn'"),
    (["clean"], "required", "x" * 500, "clean.required: Input should be a valid list, not 'xxxxxxxx"),
])
def test_wrong_values_are_refused_naming_key_and_file(section, key, value, message):
    with pytest.raises(KadnError) as info:
        parse(with_key(section, key, value), "my-params.yaml")
    assert str(info.value).startswith(f"my-params.yaml: {message}")
    assert len(str(info.value)) < 240


def test_the_shipped_params_are_typed_and_resolve_each_net():
    params = load(ROOT / "params.yaml")
    assert isinstance(params, Params) and isinstance(params.train.ridge, RidgeConfig)
    kadn = params.train.net("kadn")
    assert isinstance(kadn, NetConfig) and kadn.seeds == params.train.nets.seeds and kadn.preset == "tuned"
    raw = load_params(ROOT / "params.yaml")
    # Written back, a section reads as the plain dict it came from (encode's and the models' meta.json).
    assert params.encode.model_dump() == raw["encode"]
    assert list(params.train.svm.model_dump()) == list(raw["train"]["svm"])


def test_a_models_own_keys_and_the_preset_override_the_nets_section():
    raw = with_key(["train", "kadn"], "dim", 4)
    raw["train"]["fm"] = {"preset": "paper"}
    train = parse(raw).train
    assert train.net("kadn").dim == 4 and train.net("at").dim == raw["train"]["nets"]["dim"]
    assert train.net("fm").lr == raw["train"]["presets"]["paper"]["lr"] and train.net("fm").preset == "paper"
    assert train.net("kadn").lr == raw["train"]["nets"]["lr"]


def test_train_checks_params_before_reading_anything(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(with_key(["train", "nets"], "dropuot", 0.1), allow_unicode=True), encoding="utf-8")
    assert main(["train", "kadn", "--params", str(path), "--encoded", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key train.nets.dropuot; did you mean 'dropout'?" in err
    assert not (tmp_path / "artifacts").exists()
