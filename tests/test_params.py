"""params.yaml is checked once, when a command starts: every section refuses a misspelt key by name, with the
closest known key and the file, and values of the wrong type; the stages get typed settings."""

import contextlib
import copy
import io
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from models.stages import backtest
from pipeline.cli import main
from pipeline.errors import KadnError
from pipeline.features.encode import load_encoded
from pipeline.io import load_params
from pipeline.params import NetConfig, NetOverrides, Params, RidgeConfig, load, parse, read_yaml
from tests.model_support import ROOT, encoded_catalogue, fast_params

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
    (["train", "common"], "tune", {"val": 0.2, "seed": 11, "folds": 3, "split": "latest"},
     "train.common.tune: split latest holds back one share of the latest films: set folds to null"),
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


MISSING = object()


def config_fields(model: type[BaseModel], raw, path: str = ""):
    """(dotted key, pydantic field, params.yaml's value or MISSING) of every field of `model` and of every
    section nested in it. A net's own keys and the presets (NetOverrides) are overrides, unset meaning "as in
    train.nets", so their insides are not settings of their own."""
    for key, field in model.model_fields.items():
        where = f"{path}.{key}" if path else key
        value = raw.get(key, MISSING) if isinstance(raw, dict) else MISSING
        yield where, field, value
        inner = field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel) and inner is not NetOverrides:
            yield from config_fields(inner, value, where)


def test_every_setting_has_one_value_written_in_params_yaml():
    raw = load_params(ROOT / "params.yaml")
    found = list(config_fields(Params, raw))
    # The walk reaches the nested sections and every model's settings class.
    keys = {where for where, _, _ in found}
    assert {"clean.non_film.genre", "train.common.track_records.enabled", "train.common.tune.folds",
            "train.svm.gamma", "train.catboost.inputs", "train.nets.bins.width", "train.nets.dense_width",
            "train.kadn", "train.presets", "forecast.level", "backtest.models", "blend.loss"} <= keys
    assert len(found) > 120
    # A default the file also sets is a second value (wrong the day the file changes): none may exist.
    shadowed = [f"{where}: {field.get_default(call_default_factory=True)!r} in the code, {value!r} in "
                "params.yaml" for where, field, value in found if not field.is_required() and value is not MISSING]
    assert shadowed == []
    # And every key is written in the file, so a reader of params.yaml sees every value a run uses.
    assert [where for where, field, value in found if value is MISSING] == []


@pytest.mark.parametrize("where", ["clean", "train.common", "train.common.track_records", "train.svm",
                                   "train.catboost", "train.nets", "backtest", "blend", "forecast"])
def test_every_setting_is_required(where):
    raw = load_params(ROOT / "params.yaml")
    node = raw
    for part in where.split("."):
        node = node[part]
    for key in list(node):
        params = copy.deepcopy(raw)
        section = params
        for part in where.split("."):
            section = section[part]
        del section[key]
        with pytest.raises(KadnError, match=re.escape(f"my-params.yaml: missing key {where}.{key}") + "$"):
            parse(params, "my-params.yaml")


@pytest.mark.parametrize("where", ["clean", "clean.non_film", "encode.split", "train.common", "train.common.cv",
                                   "train.common.tune", "train.common.track_records", "train.mean", "train.ridge",
                                   "train.svm", "train.lightgbm", "train.catboost", "train.nets", "evaluate",
                                   "forecast", "backtest", "blend"])
def test_a_settings_class_refuses_a_keyword_it_does_not_take(where):
    # Built in code (as tests and notebooks do) as from the file: an unknown key is an error naming it.
    node = load(ROOT / "params.yaml")
    for part in where.split("."):
        node = getattr(node, part)
    with pytest.raises(ValidationError, match="bogus_key"):
        type(node).model_validate({**node.model_dump(), "bogus_key": 1})
    with pytest.raises(ValidationError, match="bogus_key"):
        type(node)(**node.model_dump(), bogus_key=1)


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


def write(tmp_path, text: str):
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, line, key, first", [
    ("clean:\n  min_votes: 1\n  min_votes: 2\n", 3, "min_votes", 2),
    ("train:\n  common:\n    cv:\n      folds: 5\n      seed: 1\n      folds: 3\n", 6, "folds", 4),
    ("evaluate: {timing_repeats: 1, timing_repeats: 2}\n", 1, "timing_repeats", 1),
    ("clean: {}\nencode: {}\nclean: {}\n", 3, "clean", 1),
])
def test_a_key_given_twice_is_refused_naming_it_and_both_lines(tmp_path, capsys, text, line, key, first):
    path = write(tmp_path, text)
    assert main(["train", "kadn", "--params", str(path), "--encoded", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{path}:{line}: key {key!r} given twice (lines {first} and {line})" in err


BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcd", "bcde"))


@pytest.mark.parametrize("text, line", [
    (BOMB, 1),
    ("clean:\n  non_film: &x {genre: a, keywords: []}\n", 2),
    ("clean:\n  non_film: {genre: a}\nencode:\n  x: *x\n", 4),  # an alias without its anchor: refused alike
])
def test_anchors_and_aliases_are_refused_before_expansion(tmp_path, text, line):
    path = write(tmp_path, text)
    with pytest.raises(KadnError) as info:
        load(path)
    assert str(info.value) == (f"{path}:{line}: YAML anchors and aliases (& and *) are not allowed in params; "
                               "write each value out")


@pytest.mark.parametrize("text, message", [
    ("a: 1\n<<: {b: 2}\n", ":2: YAML merge keys (<<) are not allowed"),
    ("a: [1, 2\n", ":2: not valid YAML (expected ',' or ']'"),
    ("? [1]\n: 2\n", ":1: not valid YAML (found unhashable key)"),
    ("[" * 5000, ": nested too deeply to read"),
])
def test_other_unreadable_params_are_one_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(KadnError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}{message}") and "\n" not in str(info.value)


KEYS = st.text("abcxyz_", min_size=1, max_size=4)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6)
TREES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
                     max_leaves=12)
MAPPINGS = st.dictionaries(KEYS, TREES, min_size=1, max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(MAPPINGS)
def test_params_without_repeats_read_as_yaml_reads_them(tmp_path, data):
    # PyYAML is the reference (it folds a NEL in a scalar to a space, so the data itself is not).
    path = write(tmp_path, yaml.safe_dump(data, allow_unicode=True))
    assert read_yaml(path) == yaml.safe_load(path.read_text(encoding="utf-8"))


def mappings(node):
    if isinstance(node, yaml.MappingNode):
        yield node
    for child in node.value if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) else ():
        yield from mappings(child[1] if isinstance(child, tuple) else child)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(MAPPINGS, st.data())
def test_a_key_repeated_in_any_mapping_is_refused(tmp_path, data, draw):
    """Any mapping, at any depth, given one of its keys again (which yaml.safe_load would let win silently)."""
    root = yaml.compose(yaml.safe_dump(data))
    candidates = [m for m in mappings(root) if m.value]
    target = draw.draw(st.sampled_from(candidates))
    key_node, value_node = copy.deepcopy(draw.draw(st.sampled_from(target.value)))
    target.value.append((key_node, value_node))
    path = write(tmp_path, yaml.serialize(root))
    with pytest.raises(KadnError, match="given twice") as info:
        read_yaml(path)
    assert f"key {key_node.value!r} given twice" in str(info.value)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    return encoded_catalogue(tmp_path_factory.mktemp("folds"))


def train_with(tmp_path, encoded, change) -> tuple[int, str]:
    params = fast_params()
    change(params["train"]["common"])
    path = write(tmp_path, yaml.safe_dump(params, allow_unicode=True))
    code = main(["train", "ridge", "--params", str(path), "--encoded", str(encoded), "--quiet",
                 "--out", str(tmp_path / "models"), "--out-popularity", str(tmp_path / "pop")])
    return code, path


def test_more_cv_folds_than_films_is_refused_before_any_fit(tmp_path, capsys, encoded):
    films = int(load_encoded(encoded).in_range.sum())
    code, _ = train_with(tmp_path, encoded, lambda common: common["cv"].update(folds=films + 1))
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert f"train.common.cv.folds is {films + 1}, but there are only {films} films to fold" in err
    assert not (tmp_path / "models").exists() and not (tmp_path / "pop").exists()


def test_more_tuning_folds_than_a_fits_films_is_refused_before_any_fit(tmp_path, capsys, encoded):
    films = int(load_encoded(encoded).in_range.sum())
    code, path = train_with(tmp_path, encoded, lambda common: common["tune"].update(folds=films))
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    named = re.search(rf"train.common.tune.folds is {films}, but the smallest fit has only (\d+) films", err)
    assert named and 0 < int(named.group(1)) < films
    assert not (tmp_path / "models").exists()
    # As many tuning folds as the smallest fit has films is accepted by the check.
    common = load(path).train.common
    common.model_copy(update={"tune": common.tune.model_copy(update={"folds": int(named.group(1))})}).check_folds(
        films, int(named.group(1)))


def test_backtest_with_more_tuning_folds_than_a_years_films_is_refused_before_any_fit(tmp_path, capsys, encoded,
                                                                                       monkeypatch):
    params = fast_params()
    params["train"]["common"]["tune"]["folds"] = 100_000
    params["backtest"].update(years=[2019], models=["ridge"], seeds=1)
    path = write(tmp_path, yaml.safe_dump(params, allow_unicode=True))
    out = tmp_path / "backtest.json"
    fitted = []
    monkeypatch.setattr(backtest, "fit_all", lambda *args, **kw: fitted.append(args))
    assert main(["backtest", "--params", str(path), "--encoded", str(encoded), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.common.tune.folds is 100000, but the smallest fit has only" in err
    assert not out.exists() and not fitted


def test_a_missing_or_binary_params_file_is_one_line(tmp_path):
    with pytest.raises(KadnError, match=r"p.yaml: no such file \(run from the repository root or pass --params\)"):
        load(tmp_path / "p.yaml")
    (tmp_path / "p.yaml").write_bytes(b"clean: \xff\n")
    with pytest.raises(KadnError, match=r"p.yaml: not UTF-8 text$"):
        load(tmp_path / "p.yaml")
