"""`train.common.workers`: the fits of `kadn train` (the fixed split's and every CV fold's) run in worker
processes, and every fit is seeded on its own, so the saved model and the CV figures are the same bytes as
one process fitting them in order."""

import json
import zipfile

import numpy as np
import pytest
import yaml

from models.serving.artifacts import load_model
from models.serving.results import model_view
from models.stages.train import run_train
from models.training.config import model_config
from models.training.cv import cross_validate, cv_fold
from models.training.data import kfold
from pipeline.cli import main
from pipeline.features.encode import load_encoded
from tests.model_support import encoded_catalogue, fast, fast_params


def content(path):
    """A file's bytes; a zip archive's (torch.save) member names and bytes, not its members' write times."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return {n: archive.read(n) for n in archive.namelist()}
    return path.read_bytes()


def params_with(workers: int) -> dict:
    params = fast_params()
    params["train"]["common"]["workers"] = workers
    params["train"]["common"]["cv"]["folds"] = 3
    params["train"]["nets"]["dropout"] = 0.3  # dropout draws from torch's global generator in every fit
    params["train"]["nets"]["seeds"] = 2
    return params


@pytest.fixture(scope="module")
def enc(tmp_path_factory):
    return encoded_catalogue(tmp_path_factory.mktemp("parallel"))


@pytest.mark.parametrize("name", ["kadn", "svm"])
def test_workers_give_the_same_model_and_figures(enc, tmp_path, name):
    data = load_encoded(enc)
    serial = {fs: run_train(name, fast(params_with(1)), enc, tmp_path / fs / "serial", feature_set=fs)
              for fs in ("pre_release", "with_popularity")}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params_with(2), allow_unicode=True), encoding="utf-8")
    assert main(["train", name, "--params", str(params_file), "--encoded", str(enc), "--quiet",
                 "--out", str(tmp_path / "pre_release" / "parallel"),
                 "--out-popularity", str(tmp_path / "with_popularity" / "parallel")]) == 0
    for fs, meta in serial.items():
        folder = tmp_path / fs
        parallel = json.loads((folder / "parallel" / name / "meta.json").read_text(encoding="utf-8"))
        assert parallel["cv"] == meta["cv"]
        assert len(next(iter(meta["cv"].values()))["mae"]) == 3
        assert parallel.get("cv_chosen") == meta.get("cv_chosen")
        for file in sorted(p.name for p in (folder / "serial" / name).iterdir()):
            # meta holds the wall-clock training time (and checksums.json its digest); the rest is the same bytes
            if file not in ("meta.json", "checksums.json"):
                assert content(folder / "parallel" / name / file) == content(folder / "serial" / name / file), file
        scored = [load_model(folder / run, name) for run in ("serial", "parallel")]
        for out in meta["cv"]:
            serial_scores, parallel_scores = (m.score(model_view(data, m), out) for m in scored)
            assert np.array_equal(serial_scores, parallel_scores)


def test_a_fold_alone_scores_as_it_does_in_sequence(enc):
    """A fold's figures depend on its own seeds only: run last and alone, it gives what it gave in order."""
    params = fast(params_with(1))
    common, cfg = params.train.common, model_config(params.train, "kadn")
    data = load_encoded(enc)
    in_order = cross_validate("kadn", data, cfg, common)
    folds = kfold(len(data.rating), common.cv.folds, common.cv.repeats, common.cv.seed)
    for k in reversed(range(len(folds))):
        scores, *_ = cv_fold(data, "kadn", cfg, common, "pre_release", k, *folds[k])
        for out, (mae, rmse) in scores.items():
            assert round(mae, 6) == in_order[out]["mae"][k]
            assert round(rmse, 6) == in_order[out]["rmse"][k]
