"""Model folders: saved in formats that cannot run code when read, scoring exactly as the fitted model, and
refused with one line naming the file when they come from an older version or are damaged."""

import hashlib
import json
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import skops.io as sio
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.preprocessing import FunctionTransformer

from models.serving.artifacts import _checked, load_curve, load_model, save_model, vocab_payload
from models.serving.predict import predict
from models.serving.saved_baseline import baseline_files
from models.serving.saved_net import net_files
from models.training import track_records
from models.training.config import model_config
from models.training.data import FitData, features_from
from models.training.fit import fit_model
from models.training.runtime import runtime
from pipeline.cli import main
from pipeline.errors import KadnError
from pipeline.features.encode import load_encoded
from tests.model_support import encoded_catalogue, fast, nan_weights, rehash

MODELS = ("mean", "ridge", "svm", "lightgbm", "catboost", "fm", "kadn")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each model fitted in memory, saved, and the (fitted model, its features, the folder root)."""
    folder = tmp_path_factory.mktemp("artifacts")
    enc = load_encoded(encoded_catalogue(folder))
    train = fast().train
    common = train.common
    y = enc.rating.astype(np.float32)
    train_rows, val_rows = enc.index("train"), enc.index("val")
    restricted = enc.restrict(train_rows, common.min_count)
    track_cfg = common.track_records
    build = features_from(enc, restricted.x, "pre_release", track_cfg)
    x, dense = build(train_rows)
    fitted = {}

    def fit_and_files(name):
        """A fresh fit of `name` on the same rows with the same seed, and the files it is saved as."""
        cfg = model_config(train, name)
        with runtime(seed=0, threads=1):
            trained = fit_model(name, cfg, common, FitData(x, restricted.freq, y, train_rows, val_rows), 0,
                                features=build)
        if trained.estimator is not None:
            return trained, baseline_files(name, trained.estimator)
        return trained, net_files(name, cfg.model_dump(), restricted.sizes(), trained.fits[0].head,
                                  [f.model.state_dict() for f in trained.fits], x["dense"].shape[1])

    for name in MODELS:
        cfg = model_config(train, name)
        trained, files = fit_and_files(name)
        vocab = vocab_payload(enc, restricted, "digest", dense, "pre_release",
                              track_records.payload(enc, train_rows, track_cfg))
        meta = {"kind": name, "config": cfg.model_dump(), "cv": {}, "oov": common.oov,  # as `kadn train` saves it
                "inputs": trained.inputs}
        save_model(folder / "models" / name, files, vocab, meta, [])
        fitted[name] = trained
    return fitted, x, enc.index("test"), folder / "models", fit_and_files


@pytest.mark.parametrize("name", MODELS)
def test_a_saved_model_scores_exactly_as_the_fitted_one(saved, name):
    fitted, x, test, root, _ = saved
    loaded = load_model(root, name)
    expected = fitted[name].scores(test)
    for output, scores in expected.items():
        got = loaded.score({k: v[test] for k, v in x.items()}, output)
        np.testing.assert_array_equal(got, scores)
    assert not list((root / name).glob("*.pkl"))


def copy_of(saved, name, tmp_path):
    shutil.copytree(saved[3] / name, tmp_path / name)
    return tmp_path / name


class Trap:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_pickled_model_from_an_older_version_is_refused_unread(saved, tmp_path):
    folder = copy_of(saved, "ridge", tmp_path)
    (folder / "model.json").unlink()
    (folder / "model.skops").unlink()
    marker = tmp_path / "ran"
    (folder / "model.pkl").write_bytes(pickle.dumps(Trap(marker)))
    with pytest.raises(KadnError, match="older version.*retrain with `kadn train ridge`"):
        load_model(tmp_path, "ridge")
    assert not marker.exists()


def test_code_in_net_weights_never_runs(saved, tmp_path):
    folder = copy_of(saved, "kadn", tmp_path)
    marker = tmp_path / "ran"
    torch.save([{"w": Trap(marker)}], folder / "model.pt")
    rehash(folder)  # weights_only=True guards even a folder whose checksums were made to match
    with pytest.raises(KadnError, match="damaged model files.*retrain"):
        load_model(tmp_path, "kadn")
    assert not marker.exists()


def test_a_skops_file_with_foreign_types_is_refused(saved, tmp_path):
    folder = copy_of(saved, "svm", tmp_path)
    (folder / "model.skops").write_bytes(sio.dumps(FunctionTransformer(func=print)))
    rehash(folder)
    with pytest.raises(KadnError, match=r"model.skops: holds types no baseline uses \(builtins.print\)"):
        load_model(tmp_path, "svm")


@pytest.mark.parametrize("name, file", [("kadn", "model.pt"), ("svm", "model.skops"),
                                        ("lightgbm", "model.txt"), ("catboost", "model.cbm"),
                                        ("kadn", "model.json")])
def test_a_truncated_model_file_gives_one_line_naming_the_folder(saved, tmp_path, capsys, name, file):
    folder = copy_of(saved, name, tmp_path)
    data = (folder / file).read_bytes()
    (folder / file).write_bytes(data[: len(data) // 2])
    films = tmp_path / "films.json"
    films.write_text(json.dumps([{"title": "新片", "directors": None, "writers": None, "actors": None, "genres": None,
                                  "countries": None, "languages": None, "runtime_min": None,
                                  "release_date": None}]), encoding="utf-8")
    assert main(["predict", str(films), "--model", name, "--models", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(folder) in err and "damaged" in err and f"kadn train {name}" in err


def test_a_vocab_missing_keys_is_named(saved, tmp_path):
    folder = copy_of(saved, "ridge", tmp_path)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    del vocab["encode_params"]
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    rehash(folder)
    with pytest.raises(KadnError, match=r"vocab.json: missing key\(s\) encode_params; retrain"):
        load_model(tmp_path, "ridge")
    del vocab["groups"]["actors"]
    vocab["encode_params"] = {}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    rehash(folder)
    with pytest.raises(KadnError, match="vocab.json: no feature group actors; retrain"):
        load_model(tmp_path, "ridge")


def test_a_folder_saved_without_a_setting_is_refused_naming_it(saved, tmp_path):
    # Settings have no defaults to fill a gap with: a folder whose saved settings lack a key (another version's)
    # is refused in one line, never scored with a value it was not trained with.
    folder = copy_of(saved, "kadn", tmp_path)
    spec = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    del spec["config"]["dense_width"]
    (folder / "model.json").write_text(json.dumps(spec), encoding="utf-8")
    rehash(folder)
    with pytest.raises(KadnError) as info:
        load_model(tmp_path, "kadn")
    assert str(info.value) == (f"{folder / 'model.json'}: config.dense_width: field required (saved by another "
                               "version of kadn); retrain with `kadn train kadn`")
    folder = copy_of(saved, "ridge", tmp_path)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    del vocab["track"]["settings"]["earlier"]
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    rehash(folder)
    with pytest.raises(KadnError, match="vocab.json: unreadable track-record settings; retrain"):
        load_model(tmp_path, "ridge")


FILES = [(name, file) for name in MODELS for file in ("model.json", "vocab.json", "meta.json")] + [
    ("mean", "model.skops"), ("ridge", "model.skops"), ("svm", "model.skops"), ("lightgbm", "model.txt"),
    ("catboost", "model.cbm"), ("fm", "model.pt"), ("kadn", "model.pt")]


@pytest.mark.parametrize("name, file", FILES)
def test_a_changed_byte_in_any_file_read_is_refused_naming_folder_and_file(saved, tmp_path, name, file):
    folder = copy_of(saved, name, tmp_path)
    data = bytearray((folder / file).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, length kept: no reader's own check need notice it
    (folder / file).write_bytes(bytes(data))
    with pytest.raises(KadnError) as info:
        load_model(tmp_path, name)
    assert str(info.value) == (f"{folder}: damaged model files ({file} does not match its sha256 in checksums.json); "
                               f"retrain with `kadn train {name}`")


def test_a_damaged_lightgbm_text_never_reaches_lightgbm(saved, tmp_path):
    """LightGBM aborts the process (SIGABRT) on some damaged texts: its folder is checked first, in a child
    process here so that a regression fails this test instead of killing the run."""
    folder = copy_of(saved, "lightgbm", tmp_path)
    text = (folder / "model.txt").read_text(encoding="utf-8")
    (folder / "model.txt").write_text(text.replace("num_leaves=", "num_leaves=9999", 1), encoding="utf-8")
    films = tmp_path / "films.json"
    films.write_text(json.dumps({"title": "新片"}), encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "pipeline.cli", "predict", str(films), "--model", "lightgbm",
                          "--models", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and f"{folder}: damaged model files (model.txt does not match" in run.stderr


def test_a_cut_lightgbm_text_is_refused_even_with_matching_checksums(saved, tmp_path):
    folder = copy_of(saved, "lightgbm", tmp_path)
    text = (folder / "model.txt").read_text(encoding="utf-8")
    (folder / "model.txt").write_text(text[: text.index("end of trees")], encoding="utf-8")
    rehash(folder)
    with pytest.raises(KadnError, match="model.txt: damaged model files \\(an incomplete LightGBM model\\)"):
        load_model(tmp_path, "lightgbm")


def test_a_folder_without_checksums_is_from_an_older_version(saved, tmp_path):
    folder = copy_of(saved, "kadn", tmp_path)
    (folder / "checksums.json").unlink()
    with pytest.raises(KadnError) as info:
        load_model(tmp_path, "kadn")
    assert str(info.value) == (f"{folder}: no checksums.json (saved by an older version of kadn, or not "
                               "completely); retrain with `kadn train kadn`")


def test_a_folder_of_the_previous_format_gets_one_line_to_retrain(saved, tmp_path, capsys):
    """Format 2 kept the learning curve in history.json: its folders are refused by their format, by
    load_model and by the commands reading them, in one line."""
    folder = copy_of(saved, "kadn", tmp_path)
    (folder / "learning_curve.json").rename(folder / "history.json")
    spec = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    (folder / "model.json").write_text(json.dumps({**spec, "format": 2}), encoding="utf-8")
    rehash(folder)
    with pytest.raises(KadnError) as info:
        load_model(tmp_path, "kadn")
    assert str(info.value) == (f"{folder / 'model.json'}: model format '2', this version reads 3; "
                               "retrain with `kadn train kadn`")
    films = tmp_path / "films.json"
    films.write_text(json.dumps({"title": "新片"}), encoding="utf-8")
    assert main(["predict", str(films), "--model", "kadn", "--models", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model format '2'" in err and "retrain with `kadn train kadn`" in err


def test_the_learning_curve_reads_back_checked(saved, tmp_path):
    curve = [{"epoch": 0.5, "val_mae_student": 0.8}, {"epoch": 1.0, "val_mae_student": 0.7}]
    save_model(tmp_path / "m", {"model.json": b"{}"}, {}, {}, curve)
    assert load_curve(tmp_path, "m") == curve
    (tmp_path / "m" / "learning_curve.json").unlink()
    with pytest.raises(KadnError) as info:
        load_curve(tmp_path, "m")
    assert str(info.value) == f"{tmp_path / 'm'}: learning_curve.json missing; retrain with `kadn train m`"


@pytest.mark.parametrize("file", ["../outside/model.skops", "/abs/model.skops", "sub/model.skops", "..", ".",
                                  "sub\\model.skops", ".hidden", "model.skops\x00", "", 7, None])
def test_model_json_may_name_only_a_file_inside_its_folder(saved, tmp_path, file):
    folder = copy_of(saved, "ridge", tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(folder / "model.skops", outside / "model.skops")  # a real model, with its real checksum
    spec = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    (folder / "model.json").write_text(json.dumps({**spec, "file": file}), encoding="utf-8")
    rehash(folder)
    sums = json.loads((folder / "checksums.json").read_text(encoding="utf-8"))
    if isinstance(file, str):
        sums["sha256"][file] = sums["sha256"]["model.skops"]
        (folder / "checksums.json").write_text(json.dumps(sums), encoding="utf-8")
    with pytest.raises(KadnError) as info:
        load_model(tmp_path, "ridge")
    assert str(info.value).startswith(f"{folder}: model.json names {file!r}"[:60])
    assert "not a file name inside the folder" in str(info.value)


def test_a_link_leaving_the_folder_is_refused_and_one_inside_is_read(saved, tmp_path):
    folder = copy_of(saved, "ridge", tmp_path)
    (folder / "model.skops").rename(tmp_path / "elsewhere.skops")
    (folder / "model.skops").symlink_to(tmp_path / "elsewhere.skops")
    with pytest.raises(KadnError, match=f"{folder}: model.skops is a link leaving the folder"):
        load_model(tmp_path, "ridge")
    (tmp_path / "elsewhere.skops").rename(folder / "real.skops")
    (folder / "model.skops").unlink()
    (folder / "model.skops").symlink_to("real.skops")
    assert load_model(tmp_path, "ridge").estimator is not None


def test_nan_weights_are_refused_naming_the_film_not_printed(saved, tmp_path):
    nan_weights(copy_of(saved, "kadn", tmp_path))  # damaged before its checksums were taken
    films = tmp_path / "films.jsonl"
    films.write_text(json.dumps({"title": "新片", "douban_id": 42}) + "\n", encoding="utf-8")
    # The scorer every command uses refuses it (forecast's own refusal, with intervals: tests/test_forecast.py).
    with pytest.raises(KadnError, match=r"model kadn scores film 1 \(douban_id 42\) as nan; retrain with"):
        predict(films, "kadn", tmp_path)


@pytest.mark.parametrize("name", MODELS)
def test_equal_fits_save_equal_bytes(saved, tmp_path, name):
    """Model folders are DVC outputs: a second fit on the same rows with the same seed (another process's
    memory addresses, a later clock) gives the same files and the same checksums."""
    trained, files = saved[4](name)
    for name_, payload in files.items():
        assert payload == (saved[3] / name / name_).read_bytes(), name_
    if trained.estimator is not None:  # a fit made in a worker process comes back unpickled
        assert baseline_files(name, pickle.loads(pickle.dumps(trained.estimator))) == files
    for run in ("a", "b"):
        save_model(tmp_path / run, files, {"v": 1}, {"m": 1}, [])
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == \
        {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    sums = json.loads((tmp_path / "a" / "checksums.json").read_text(encoding="utf-8"))["sha256"]
    assert list(sums) == sorted(files.keys() | {"vocab.json", "meta.json", "learning_curve.json"})


PARTS = st.sampled_from(["..", ".", "/", "\\", "model.skops", "outside", "sub", "~", "\x00", " ", "C:", "é"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(PARTS, min_size=1, max_size=5).map("".join) | st.text(max_size=20))
def test_no_file_name_reads_outside_the_folder(tmp_path, name):
    folder = tmp_path / "m"
    for place in (folder, folder / "sub", tmp_path):  # a readable file of that name inside, below and above
        place.mkdir(exist_ok=True)
        (place / "model.skops").write_bytes(b"x")
        (place / "outside").write_bytes(b"x")
    try:
        path = _checked(folder, name, {name: hashlib.sha256(b"x").hexdigest()}, "retrain")
    except KadnError as exc:
        assert "\n" not in str(exc)
        return
    assert path.parent == folder and path.resolve().parent == folder.resolve() and path.name == name
