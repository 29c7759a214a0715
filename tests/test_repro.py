"""End to end: `dvc repro` in a copy of the repository, on a tiny database written with pipeline.store and
a fast params override; then a param change shows in `dvc metrics diff`, and a rerun reproduces metrics."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crawler.mock_catalogue import films, generate_catalogue
from pipeline import store
from tests.model_support import ROOT, fast_params

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DATABASE_URL", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("repo")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    for rel in listed:
        src = ROOT / rel
        if rel in ("data/douban.sqlite", "dvc.lock", "metrics.json") or not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    engine = store.connect(f"sqlite:///{dest / 'data' / 'douban.sqlite'}")
    store.upsert_records(engine, films(generate_catalogue(320, seed=11)), source="test")
    engine.dispose()
    params = fast_params()
    (dest / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


def metrics(repo: Path) -> dict:
    return json.loads((repo / "metrics.json").read_text(encoding="utf-8"))


def test_dvc_repro_builds_every_model_and_metrics(repo):
    run(["dvc", "repro"], repo)
    m = metrics(repo)
    assert m["data"]["kept"] > 0 and sum(m["data"]["split"].values()) == m["data"]["kept"]
    for name in ("mean", "ridge", "svm", "lightgbm", "fm", "deepfm", "at", "kd", "kadn", "kadn_teacher"):
        entry = m["models"][name]
        for key in ("mae", "rmse", "cv_mae_mean", "cv_mae_std", "cv_rmse_mean", "cv_rmse_std"):
            assert isinstance(entry[key], float) and entry[key] >= 0, (name, key)
        assert entry["cv_folds"] == 2
        # The second feature set (the mock catalogue has every count) is evaluated by the same repro.
        popular = m["models_with_popularity"][name]
        assert {"mae", "rmse", "cv_mae_mean", "cv_mae_std"} <= set(popular) and popular["cv_folds"] == 2
    assert m["models"]["kadn"]["head"] == "regression"
    d = m["distillation"]
    for net in ("teacher", "student"):
        assert {"params", "size_kb", "multiply_adds_per_film"} == set(d[net])
    timings = json.loads((repo / "timings.json").read_text(encoding="utf-8"))["distillation"]
    assert {"infer_s", "infer_10k_s", "train_s"} <= set(timings["student"])
    assert d["student"]["params"] < d["teacher"]["params"]
    assert d["param_reduction"] == pytest.approx(1 - d["student"]["params"] / d["teacher"]["params"], abs=1e-4)
    for plot in ("predicted_vs_actual.csv", "learning_curves.csv", "model_errors.csv"):
        assert len((repo / "plots" / plot).read_text().splitlines()) > 2
    assert (repo / "artifacts" / "models" / "kadn" / "model.pt").exists()
    shown = json.loads(run(["dvc", "plots", "show", "--json"], repo).stdout)["data"]
    assert set(shown) == {"K-ADN predicted against actual (test split)", "K-ADN learning curves (per half-epoch)",
                          "MAE per model (CV mean)", "RMSE per model (CV mean)"}


def test_a_param_change_reruns_only_its_model_and_shows_in_metrics_diff(repo):
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "built"], repo)
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params["train"]["ridge"]["grid"] = {"alpha": [0.05]}  # ridge's grid: one setting, far from the defaults
    (repo / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    out = run(["dvc", "repro"], repo).stdout
    assert "Running stage 'train_baseline@ridge'" in out
    assert "Running stage 'train_net@kadn'" not in out and "Running stage 'train_baseline@svm'" not in out
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo).stdout)
    changed = diff["metrics.json"]
    assert "models.ridge.mae" in changed or "models.ridge.cv_mae_mean" in changed


def test_rerunning_training_reproduces_the_metrics(repo):
    before = (repo / "metrics.json").read_bytes()
    run(["dvc", "repro", "-f", "-s", "train_net@kadn"], repo)
    run(["dvc", "repro", "-s", "evaluate"], repo)
    run(["dvc", "repro", "-s", "metrics"], repo)
    assert (repo / "metrics.json").read_bytes() == before
