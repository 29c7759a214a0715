"""The benchmarks stay runnable as docs/benchmarks.md says (`.venv/bin/python bench/NAME.py`): each one
starts, from any working directory, and no product or benchmark module imports the tests or edits sys.path."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "bench").glob("*.py"))
MODULES = [p for folder in ("pipeline", "models", "crawler", "bench")
           for p in sorted((ROOT / folder).rglob("*.py"))]


def test_every_bench_script_starts(tmp_path):
    assert len(SCRIPTS) >= 9
    # Started side by side: each imports its libraries first (torch for some), seconds apiece.
    procs = {p.name: subprocess.Popen([sys.executable, str(p), "--help"], cwd=tmp_path, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for p in SCRIPTS}
    failed = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        if proc.returncode != 0 or "usage:" not in out:
            failed[name] = (err or out).strip().splitlines()[-1:]
    assert not failed


def _offences(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "tests"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "tests":
            found.append(node.module)
        elif isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
            found.append("sys.path")
    return found


def test_no_product_or_bench_module_imports_the_tests_or_touches_sys_path():
    offences = {str(p.relative_to(ROOT)): o for p in MODULES if (o := _offences(p))}
    assert not offences


def test_the_check_sees_both_offences(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nsys.path.insert(0, '.')\nfrom tests.services import REDIS_URL\n", encoding="utf-8")
    assert sorted(_offences(bad)) == ["sys.path", "tests.services"]


def _forward_npz(path: Path, rows: dict[str, float], shift_ids: str | None = None) -> None:
    """A forward.npz of three years x 20 films: row `r` scores every film off by rows[r]."""
    rng = np.random.default_rng(0)
    parts = {k: [] for k in ("model", "year", "douban_id", "known", "pred", "y")}
    for year in (2016, 2017, 2018):
        ids = np.arange(20) + year * 100
        y = rng.uniform(4, 9, 20)
        for row, off in rows.items():
            parts["model"].append(np.full(20, row))
            parts["year"].append(np.full(20, year, dtype=np.int32))
            parts["douban_id"].append(ids + (1 if row == shift_ids and year == 2018 else 0))
            parts["known"].append(np.full(20, 0.5))
            parts["pred"].append(y + off * np.where(np.arange(20) % 2, 1, -1))
            parts["y"].append(y)
    np.savez(path, **{k: np.concatenate(v) for k, v in parts.items()})


def test_forward_paired_reports_the_paired_difference_and_refuses_unpaired_rows(tmp_path):
    script = ROOT / "bench" / "forward_paired.py"
    npz = tmp_path / "forward.npz"
    _forward_npz(npz, {"kadn": 0.5, "svm": 0.6, "at": 0.4})
    run = subprocess.run([sys.executable, str(script), "--forward", str(npz), "--years", "2017", "2018"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = {line.split()[0]: line.split() for line in run.stdout.splitlines()[2:]}
    # Every film of svm is 0.1 further off than the student's, every film of at 0.1 closer: no spread at all.
    assert lines["svm"][1:5] == ["0.6000", "+0.1000", "[+0.1000,", "+0.1000]"]
    assert lines["at"][1:5] == ["0.4000", "-0.1000", "[-0.1000,", "-0.1000]"]
    assert lines["at"][-2:] == ["2/2", "years"]
    _forward_npz(npz, {"kadn": 0.5, "svm": 0.6}, shift_ids="svm")
    run = subprocess.run([sys.executable, str(script), "--forward", str(npz), "--years", "2017", "2018"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "year 2018" in run.stderr
