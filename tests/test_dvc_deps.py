"""dvc.yaml's code deps are exactly the project modules each stage's command imports: no stage is called up
to date after an edit to code it runs, and no stage re-runs for code it does not run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("dvc_deps", ROOT / "scripts" / "dvc_deps.py")
dvc_deps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dvc_deps)


def test_every_stage_lists_exactly_the_modules_its_command_imports():
    gaps = dvc_deps.stale()
    assert not gaps, f"dvc.yaml's code deps are stale; run `python scripts/dvc_deps.py`: {gaps}"
    want = dvc_deps.expected()
    assert "pipeline/features/clean.py" in want["clean"] and not any(f.startswith("models/") for f in want["clean"])
    assert "models/nets/nets.py" in want["train_net"]


def test_the_blend_depends_on_its_members_folders_not_on_the_folder_it_writes_into():
    params = {"blend": {"members": ["svm", "kadn_teacher", "kadn"]}}
    assert dvc_deps.model_deps("blend", params) == [
        "artifacts/models/svm", "artifacts/models/kadn",  # the teacher is saved in the student's folder
        "artifacts/models_with_popularity/svm", "artifacts/models_with_popularity/kadn"]
    assert dvc_deps.model_deps("evaluate", params) == []
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["blend"]
    assert {"artifacts/models/blend", "artifacts/models_with_popularity/blend"} <= set(stage["outs"])
    assert not {"artifacts/models", "artifacts/models_with_popularity"} & set(stage["deps"])


def test_the_import_walk_sees_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "models"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from models import b\n    return b\n")
    (pkg / "b.py").write_text("from . import c\n")
    (pkg / "c.py").write_text("")
    (pkg / "unused.py").write_text("")
    assert dvc_deps.imported_modules(["models.a"], tmp_path) == {"models", "models.a", "models.b", "models.c"}
    assert "pipeline.film.records" in dvc_deps.imported_modules(["pipeline.features.clean"])


def test_a_stale_list_is_found_and_rewritten(tmp_path):
    for name in ("pipeline", "models", "crawler", "scripts"):
        src = ROOT / name
        if src.is_dir():
            for path in src.rglob("*.py"):
                dest = tmp_path / path.relative_to(ROOT)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(path.read_bytes())
    (tmp_path / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    text = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    # Drop one module from clean's deps and add one it does not import.
    broken = text.replace("      - pipeline/features/clean.py\n", "      - pipeline/exchange/export.py\n", 1)
    assert broken != text
    (tmp_path / "dvc.yaml").write_text(broken, encoding="utf-8")
    gaps = dvc_deps.stale(tmp_path)
    assert set(gaps) == {"clean"}
    listed, wanted = gaps["clean"]
    assert "pipeline/exchange/export.py" in listed and "pipeline/features/clean.py" in wanted
    assert dvc_deps.rewrite(tmp_path) == ["clean"]
    assert dvc_deps.stale(tmp_path) == {}
    assert (tmp_path / "dvc.yaml").read_text(encoding="utf-8") == text  # comments and layout kept
