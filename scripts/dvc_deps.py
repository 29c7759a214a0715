"""The code deps of every dvc.yaml stage: exactly the project modules its command imports.

A stage runs `kadn COMMAND`; the modules it can execute are those reachable from `pipeline.cli` and the
command's module through any import statement (lazy and relative ones included), plus the modules a command
loads by name: those the model registry names (a `train` stage's own model's kind and builders only, so an
edit to a net re-runs no baseline's stage), and any listed in `STAGE_MODULES`. Listing them file by file, rather than
whole package folders, means an edit re-runs only the stages that import what changed.

The stacked blend's stage reads its members' folders alone (`MODEL_DEPS`), listed from params.yaml: it writes
its own folder beside theirs, so it cannot depend on the whole models directory.

    python scripts/dvc_deps.py           # rewrite the code deps in dvc.yaml (comments and data deps kept)
    python scripts/dvc_deps.py --check   # exit 1, naming the stages, if dvc.yaml is out of date

tests/test_dvc_deps.py runs the check, so the lists cannot go stale.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import sys
from pathlib import Path

import yaml
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "models", "crawler")
# Modules a stage's command imports by name (importlib), which the import walk cannot see, beyond those the
# model registry names (`registry_modules`): none today.
STAGE_MODULES: dict[str, list[str]] = {}
# Stages whose deps are the saved folders of the models a params.yaml list names (under each root), not the
# whole directory, which holds the stage's own output.
MODEL_DEPS: dict[str, str] = {"blend": "blend.members"}
MODEL_ROOTS = ("artifacts/models", "artifacts/models_with_popularity")


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


def is_code(dep: str) -> bool:
    return dep.endswith(".py") or dep.rstrip("/") in PACKAGES


def is_generated(dep: str) -> bool:
    """A dep this script writes: a module file, or a model folder of `MODEL_DEPS`."""
    return is_code(dep) or dep.startswith(tuple(f"{r}/" for r in MODEL_ROOTS))


def model_deps(stage_name: str, params: dict, root: Path = ROOT) -> list[str]:
    """The model folders the stage reads (`MODEL_DEPS`): each listed model's folder under every root."""
    if stage_name not in MODEL_DEPS:
        return []
    names = params
    for key in MODEL_DEPS[stage_name].split("."):
        names = names[key]
    reported = _registry(root).REPORTED
    folders = list(dict.fromkeys(reported[name][0] for name in names))  # kadn and kadn_teacher share one
    return [f"{r}/{folder}" for r in MODEL_ROOTS for folder in folders]


def stage_items(stage: dict, params: dict) -> list[str | None]:
    """The items a `foreach` stage expands over (from params.yaml), or [None] for a plain stage."""
    if "foreach" not in stage:
        return [None]
    items = params
    for key in re.fullmatch(r"\$\{(.+)\}", stage["foreach"]).group(1).split("."):
        items = items[key]
    return list(items)


def code_deps(stage_name: str, stage: dict, params: dict, commands: dict, root: Path = ROOT) -> list[str]:
    """Sorted module files every item of the stage's command imports."""
    body = stage.get("do", stage)
    files: set[str] = set()
    for item in stage_items(stage, params):
        cmd = body["cmd"].replace("${item}", str(item)).split()
        if cmd[0] != "kadn":
            raise ValueError(f"{stage_name}: a stage runs `kadn COMMAND`, not {cmd[0]!r}")
        module = commands[cmd[1]][0]
        start = ["pipeline.cli", module, *STAGE_MODULES.get(f"{stage_name}@{item}", [])]
        found = imported_modules(start, root)
        found |= imported_modules(registry_modules(found, item, root), root)
        files |= {module_file(m, root).relative_to(root).as_posix() for m in found}
    return sorted(files)


def registry_modules(found: set[str], item, root: Path = ROOT) -> list[str]:
    """The modules the model registry (`pipeline/registry.py`) has a command import by name: when the command
    imports one of its dispatchers (`models.training.fit`, `models.serving.artifacts`), the kind modules and builders of the
    stage's model (a `foreach` item naming a model), or of every model."""
    registry = _registry(root)
    name = item if item in registry.MODELS else None
    return registry.stage_modules(found, name)


def _registry(root: Path):
    """pipeline/registry.py of `root`, loaded as a file (it imports nothing from the project)."""
    spec = importlib.util.spec_from_file_location("_dvc_deps_registry", root / "pipeline" / "registry.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def expected(root: Path = ROOT) -> dict[str, list[str]]:
    sys.path.insert(0, str(root))
    from pipeline.cli import COMMANDS

    spec = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    return {name: model_deps(name, params, root) + code_deps(name, stage, params, COMMANDS, root)
            for name, stage in spec["stages"].items()}


def current(root: Path = ROOT) -> dict[str, list[str]]:
    spec = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    out = {}
    for name, stage in spec["stages"].items():
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("do", stage).get("deps", [])]
        out[name] = [d for d in deps if is_generated(d)]
    return out


def stale(root: Path = ROOT) -> dict[str, tuple[list[str], list[str]]]:
    """{stage: (listed, wanted)} for every stage whose code deps differ from what its command imports (or
    whose model folders from the params it reads)."""
    want, have = expected(root), current(root)
    return {name: (have[name], want[name]) for name in want if have[name] != want[name]}


def rewrite(root: Path = ROOT) -> list[str]:
    """Rewrite the code deps of dvc.yaml in place (data deps first, as written; then the model folders and
    the modules)."""
    want = expected(root)
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=4, offset=2)
    path = root / "dvc.yaml"
    doc = rt.load(path.read_text(encoding="utf-8"))
    changed = []
    for name, stage in doc["stages"].items():
        body = stage.get("do", stage)
        deps = body["deps"]
        data = [d for d in deps if not is_generated(d if isinstance(d, str) else next(iter(d)))]
        if [d for d in deps if d not in data] != want[name]:
            changed.append(name)
        deps.clear()
        deps.extend(data + want[name])
    with path.open("w", encoding="utf-8") as out:
        rt.dump(doc, out)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale stages instead of rewriting")
    args = parser.parse_args(argv)
    if args.check:
        gaps = stale()
        for name, (have, want) in gaps.items():
            print(f"{name}: missing {sorted(set(want) - set(have))}, extra {sorted(set(have) - set(want))}")
        return 1 if gaps else 0
    changed = rewrite()
    print(f"dvc.yaml: code deps rewritten for {len(changed)} stage(s): {', '.join(changed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
