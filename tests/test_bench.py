"""The benchmarks stay runnable as docs/benchmarks.md says (`.venv/bin/python bench/NAME.py`): each one
starts, from any working directory, and no product or benchmark module imports the tests or edits sys.path."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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
