"""Model folders: saved in formats that cannot run code when read, scoring exactly as the fitted model, and
refused with one line naming the file when they come from an older version or are damaged."""

import json
import pickle
import shutil

import numpy as np
import pytest
import skops.io as sio
import torch
from sklearn.preprocessing import FunctionTransformer

from models import track_records
from models.artifacts import baseline_files, load_model, net_files, save_model, vocab_payload
from models.config import model_config
from models.data import FitData, features_from
from models.fit import fit_model, set_determinism
from pipeline.cli import main
from pipeline.encode import load_encoded
from pipeline.errors import KadnError
from tests.model_support import encoded_catalogue, fast

MODELS = ("mean", "ridge", "svm", "lightgbm", "catboost", "fm", "kadn")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each model fitted in memory, saved, and the (fitted model, its features, the folder root)."""
    folder = tmp_path_factory.mktemp("artifacts")
    enc = load_encoded(encoded_catalogue(folder))
    train = fast().train
    common = train.common
    threads = torch.get_num_threads()
    set_determinism(1)
    y = enc.rating.astype(np.float32)
    train_rows, val_rows = enc.index("train"), enc.index("val")
    restricted = enc.restrict(train_rows, common.min_count)
    track_cfg = common.track_records
    build = features_from(enc, restricted.x, "pre_release", track_cfg)
    x, dense = build(train_rows)
    fitted = {}
    for name in MODELS:
        cfg = model_config(train, name)
        trained = fit_model(name, cfg, common, FitData(x, restricted.freq, y, train_rows, val_rows), 0, features=build)
        if trained.estimator is not None:
            files = baseline_files(name, trained.estimator)
        else:
            files = net_files(name, cfg.model_dump(), restricted.sizes(), trained.fits[0].head,
                              [f.model.state_dict() for f in trained.fits], x["dense"].shape[1])
        vocab = vocab_payload(enc, restricted, "digest", dense, "pre_release",
                              track_records.payload(enc, train_rows, track_cfg))
        meta = {"kind": name, "config": cfg.model_dump(), "cv": {}, "oov": common.oov,  # as `kadn train` saves it
                "inputs": trained.inputs}
        save_model(folder / "models" / name, files, vocab, meta, [])
        fitted[name] = trained
    torch.set_num_threads(threads)
    return fitted, x, enc.index("test"), folder / "models"


@pytest.mark.parametrize("name", MODELS)
def test_a_saved_model_scores_exactly_as_the_fitted_one(saved, name):
    fitted, x, test, root = saved
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
    with pytest.raises(KadnError, match="damaged model files.*retrain"):
        load_model(tmp_path, "kadn")
    assert not marker.exists()


def test_a_skops_file_with_foreign_types_is_refused(saved, tmp_path):
    folder = copy_of(saved, "svm", tmp_path)
    (folder / "model.skops").write_bytes(sio.dumps(FunctionTransformer(func=print)))
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
    films.write_text(json.dumps([{"directors": None, "writers": None, "actors": None, "genres": None,
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
    with pytest.raises(KadnError, match=r"vocab.json: missing key\(s\) encode_params; retrain"):
        load_model(tmp_path, "ridge")
    del vocab["groups"]["actors"]
    vocab["encode_params"] = {}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(KadnError, match="vocab.json: 'groups' lacks"):
        load_model(tmp_path, "ridge")
