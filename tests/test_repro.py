"""End to end: `dvc repro` in a copy of the repository, on a tiny database written with pipeline.film.store and
a fast params override; then a param change shows in `dvc metrics diff`, a rerun reproduces metrics, the films
of any DATABASE_URL reach the pipeline exactly when they change, `dvc plots show` embeds the PNG figures, and
`dvc exp run -S ...` runs a variant that `dvc exp show` and `dvc metrics diff` compare."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import yaml

from crawler.mocksite.catalogue import films, generate_catalogue
from pipeline.film import store
from tests.model_support import ROOT, fast_params

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
PNGS = ("cv_mae.png", "cv_rmse.png", "predicted_vs_actual.png", "learning_curves.png", "table2.png")


def run(cmd: list[str], cwd: Path, database_url: str | None = None, ok=(0,)) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode in ok, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
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


def out_of_date(repo: Path) -> dict:
    """`dvc status` without the snapshot stage, which DVC reports as always changed by design."""
    status = json.loads(run(["dvc", "status", "--json"], repo).stdout)
    assert status.pop("snapshot", ["always changed"]) == ["always changed"]
    return status


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
        assert {"params", "size_kb", "multiply_adds_per_film", "params_shared", "params_private",
                "multiply_adds_shared_per_film", "multiply_adds_private_per_film"} == set(d[net])
    timings = json.loads((repo / "timings.json").read_text(encoding="utf-8"))["distillation"]
    assert {"infer_s", "infer_10k_s", "train_s"} <= set(timings["student"])
    assert d["student"]["params"] < d["teacher"]["params"]
    assert d["param_reduction"] == pytest.approx(1 - d["student"]["params"] / d["teacher"]["params"], abs=1e-4)
    for plot in ("predicted_vs_actual.csv", "learning_curves.csv", "model_errors.csv"):
        assert len((repo / "plots" / plot).read_text().splitlines()) > 2
    assert (repo / "artifacts" / "models" / "kadn" / "model.pt").exists()
    shown = json.loads(run(["dvc", "plots", "show", "--json"], repo).stdout)["data"]
    assert set(shown) == {"K-ADN predicted against actual (test split)", "K-ADN loss per half-epoch",
                          "K-ADN validation MAE per half-epoch", "MAE per model (CV mean, best first)",
                          "RMSE per model (CV mean)", *(f"plots/{name}" for name in PNGS)}
    assert (repo / "timings.json").exists() and "timings.json" not in run(["git", "check-ignore", "-v", "--no-index",
                                                                           "timings.json"], repo, ok=(0, 1)).stdout


def test_plots_show_writes_a_page_embedding_every_figure_without_a_script(repo):
    run(["dvc", "plots", "show"], repo)
    page = (repo / "dvc_plots" / "index.html").read_text(encoding="utf-8")
    # The Vega scatter of predicted against actual carries the y = x line (a layer plotting actual on both axes).
    diagonal = page.index("y = x: a perfect prediction")
    assert re.search(r'"x": \{"field": "actual"[^}]*\}, "y": \{"field": "actual"', page[diagonal:diagonal + 400])
    sources = re.findall(r'<img[^>]*src="([^"]+)"', page)
    for name in PNGS:
        found = [src for src in sources if src.endswith(name.replace("/", "_")) or src.endswith(name)]
        assert found, f"{name} not embedded in dvc_plots/index.html"
        assert not found[0].startswith(("http:", "https:", "//"))
        if not found[0].startswith("data:"):
            assert (repo / "dvc_plots" / found[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


BROWSER = next((b for b in ("chromium-headless-shell", "chromium", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium on PATH (apt-get install chromium-headless-shell)")
def test_the_plots_page_shows_the_figures_in_a_headless_browser_offline(repo, tmp_path):
    """What a person sees: the page rendered by a real browser with no network shows the figures, not
    broken-image icons on a white page."""
    run(["dvc", "repro"], repo)  # a no-op after the first test; this one also runs alone
    run(["dvc", "plots", "show", "-o", str(tmp_path / "page")], repo)
    shot = tmp_path / "shot.png"
    subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
                    f"--screenshot={shot}", "--window-size=1200,2400", "--virtual-time-budget=3000",
                    (tmp_path / "page" / "index.html").as_uri()], capture_output=True, timeout=120, check=True)
    pixels = matplotlib.image.imread(shot)[..., :3]
    inked = (pixels.mean(axis=2) < 0.9).mean()
    coloured = (pixels.max(axis=2) - pixels.min(axis=2) > 0.2).mean()
    # Drawn figures ink a good share of the page and carry colour (bars, points); a page of broken images
    # is almost all white and grey.
    assert inked > 0.05 and coloured > 0.01, (inked, coloured)


def test_films_reach_the_pipeline_from_any_database_exactly_when_they_change(repo, tmp_path):
    out = run(["dvc", "repro"], repo).stdout
    assert "Running stage 'snapshot'" in out and "Running stage 'clean'" not in out
    # The same films in another database: the snapshot runs, nothing after it does.
    same = tmp_path / "same.sqlite"
    shutil.copy2(repo / "data" / "douban.sqlite", same)
    out = run(["dvc", "repro"], repo, database_url=f"sqlite:///{same}").stdout
    assert "Running stage 'snapshot'" in out and "Running stage 'clean'" not in out
    # One film's score changed there: clean (and so everything after it) is out of date.
    engine = store.connect(f"sqlite:///{same}")
    first = store.load_records(engine)[0]
    store.upsert_records(engine, [{**first, "rating": 1.5 if first["rating"] != 1.5 else 9.5}], source="test")
    engine.dispose()
    run(["dvc", "repro", "-s", "snapshot"], repo, database_url=f"sqlite:///{same}")
    assert "clean" in out_of_date(repo)
    run(["dvc", "repro", "-s", "snapshot"], repo)
    assert out_of_date(repo) == {}


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
    run(["dvc", "repro", "-s", "blend"], repo)  # it stacks the retrained model's out-of-fold predictions
    run(["dvc", "repro", "-s", "metrics"], repo)
    assert (repo / "metrics.json").read_bytes() == before


def test_an_experiment_runs_a_variant_that_exp_show_and_metrics_diff_compare(repo):
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "baseline"], repo)
    assert out_of_date(repo) == {}
    run(["dvc", "exp", "run", "-S", "train.nets.head=soft", "-n", "soft-head"], repo)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    exps = [e for rev in shown for e in (rev.get("experiments") or []) if e.get("name") == "soft-head"]
    assert exps, "the experiment is not in `dvc exp show`"
    data = exps[0]["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["nets"]["head"] == "soft"
    assert "kadn" in data["metrics"]["metrics.json"]["data"]["models"]
    # The workspace now holds the experiment's results: `dvc metrics diff` shows what the variant changed.
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo).stdout)["metrics.json"]
    assert diff["models.kadn.head"]["old"] == "regression" and diff["models.kadn.head"]["new"] == "soft"
    assert any(k.startswith("models.kadn.") and k != "models.kadn.head" for k in diff)
    assert not any(k.startswith(("models.ridge.", "models.svm.")) for k in diff)
    # Only real changes: no wall-clock figure moves in the compared metrics.
    assert not any(k.endswith(("_s", "speedup")) for k in diff), sorted(diff)
