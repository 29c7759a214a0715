"""Wall time of a full `dvc repro`, stage by stage, on mock stores of growing size and on the shipped store.

Each run copies the working tree (tracked and untracked-but-not-ignored files, so uncommitted code counts)
into a temporary folder, makes it a git repository, and runs `dvc repro --force` there with `DATABASE_URL`
pointing at a fresh SQLite store of the mock site's catalogue (written straight into the store, no crawl),
or at the shipped store for `shipped`. A stage's time runs from dvc's "Running stage" line to the next one
(the last to dvc's exit), so it includes dvc's own hashing and caching of the stage's outputs.

    .venv/bin/python bench/repro_scaling.py                       # 1k, 4k and 10k mock films + shipped
    .venv/bin/python bench/repro_scaling.py --sizes 1000 shipped   # a quicker look
    .venv/bin/python bench/repro_scaling.py --out times.json       # the figures as JSON too

Targets: under 12 minutes at 10k films and under 3 minutes on the shipped store, on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crawler.mocksite.catalogue import generate_catalogue, store_catalogue

ROOT = Path(__file__).resolve().parents[1]

STAGE = re.compile(r"Running stage '([^']+)'")


def copy_tree(dest: Path) -> None:
    """The working tree's files (not the ignored outputs, the venv or the DVC cache) into `dest`, committed."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=bench", "-c", "user.email=bench@localhost",
                                                 "commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)


def timed_repro(clone: Path, env: dict) -> tuple[dict[str, float], float, str]:
    """({stage: seconds}, total seconds, dvc's output) of `dvc repro --force` in `clone`."""
    stages: dict[str, float] = {}
    lines: list[str] = []
    start = time.perf_counter()
    current, since = None, start
    proc = subprocess.Popen([str(Path(sys.executable).parent / "dvc"), "repro", "--force"], cwd=clone, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        lines.append(line)
        match = STAGE.search(line)
        if match:
            now = time.perf_counter()
            if current is not None:
                stages[current] = now - since
            current, since = match.group(1), now
    proc.wait()
    end = time.perf_counter()
    if current is not None:
        stages[current] = end - since
    if proc.returncode != 0:
        raise SystemExit(f"dvc repro failed in {clone}:\n{''.join(lines[-40:])}")
    return stages, end - start, "".join(lines)


def run(size: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="repro-scaling-") as tmp:
        clone = Path(tmp) / "repo"
        copy_tree(clone)
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        stored = None
        if size != "shipped":
            url = f"sqlite:///{Path(tmp) / 'mock.sqlite'}"
            stored = store_catalogue(generate_catalogue(int(size), seed=seed), url)
            env["DATABASE_URL"] = url
        else:
            env.pop("DATABASE_URL", None)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        stages, total, _ = timed_repro(clone, env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        kept = json.loads((clone / "data/clean/report.json").read_text(encoding="utf-8"))["kept"]
        # CPU seconds of dvc and every process under it: on a shared machine the wall time grows with the
        # load, the CPU time hardly (2 cores: a quiet machine's wall time is about cpu_s / 2 at best).
        return {"size": size, "stored": stored, "kept": kept, "total_s": round(total, 1), "cpu_s": round(cpu, 1),
                "stages_s": {k: round(v, 1) for k, v in stages.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1000", "4000", "10000", "shipped"],
                        help="mock catalogue sizes (entries generated), or `shipped` for the shipped store")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", help="also write the figures here (JSON)")
    args = parser.parse_args()
    results = []
    for size in args.sizes:
        if size != "shipped" and not size.isdigit():
            parser.error(f"--sizes: {size[:20]!r} is neither a number nor `shipped`")
        result = run(size, args.seed)
        results.append(result)
        print(f"{size}: {result['kept']} films kept, dvc repro {result['total_s']:.0f} s "
              f"({result['cpu_s']:.0f} CPU s)", flush=True)
        for stage, seconds in result["stages_s"].items():
            print(f"  {stage:28s} {seconds:7.1f} s", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
