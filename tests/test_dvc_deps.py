"""dvc.yaml cannot call a changed pipeline up to date: every project module a stage's command imports (at
module level or inside a function) is covered by that stage's deps."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from pipeline.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "models", "crawler")


def module_file(name: str, root: Path = ROOT) -> Path | None:
    base = root / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(start: list[str], root: Path = ROOT) -> set[str]:
    """Project modules reachable from `start` through any import statement, lazy ones included."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        path = module_file(name, root)
        if name in seen or path is None:
            continue
        seen.add(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                todo.append(base)
                todo += [f"{base}.{alias.name}" for alias in node.names]  # `from models import track`
        # A package's __init__ runs on import of any of its modules.
        if "." in name:
            todo.append(name.rpartition(".")[0])
    return {m for m in seen if m.split(".")[0] in PACKAGES}


def stages() -> dict[str, dict]:
    """Every stage of dvc.yaml, foreach stages expanded over their items (from params.yaml)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    out = {}
    for name, stage in spec["stages"].items():
        if "foreach" not in stage:
            out[name] = stage
            continue
        path = re.fullmatch(r"\$\{(.+)\}", stage["foreach"]).group(1).split(".")
        items = params
        for key in path:
            items = items[key]
        for item in items:
            text = yaml.safe_dump(stage["do"]).replace("${item}", str(item))
            out[f"{name}@{item}"] = yaml.safe_load(text)
    return out


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d.rstrip("/") or path.startswith(d.rstrip("/") + "/") for d in deps)


def test_every_stage_depends_on_every_module_its_command_imports():
    missing = {}
    found = stages()
    assert "evaluate" in found and "train_net@kadn" in found
    for name, stage in found.items():
        cmd = stage["cmd"].split()
        assert cmd[0] == "kadn", f"{name}: a stage runs `kadn COMMAND`, not {cmd[0]!r}"
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]
        module = COMMANDS[cmd[1]][0]
        files = {module_file(m).relative_to(ROOT).as_posix() for m in imported_modules(["pipeline.cli", module])}
        assert f"{module.replace('.', '/')}.py" in files
        gaps = sorted(f for f in files if not covered(f, deps))
        if gaps:
            missing[name] = gaps
    assert not missing, f"dvc.yaml deps miss modules the commands import: {missing}"


def test_the_import_walk_sees_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "models"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from models import b\n    return b\n")
    (pkg / "b.py").write_text("from . import c\n")
    (pkg / "c.py").write_text("")
    (pkg / "unused.py").write_text("")
    assert imported_modules(["models.a"], tmp_path) == {"models", "models.a", "models.b", "models.c"}
    assert "pipeline.records" in imported_modules(["pipeline.clean"])
