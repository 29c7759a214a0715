"""Two `kadn import` processes into one SQLite file at once: both succeed, nothing is lost, counts are exact."""

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from pipeline.film import store

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"imported (\d+) records from (\S+) \(kadn format\): (\d+) new, (\d+) updated; (\d+) movies stored")


def write_films(path: Path, ids: range, tag: str) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in ids:
            out.write(json.dumps({"douban_id": i, "title": f"{tag}{i}", "actors": [f"演员{i % 40}"],
                                  "release_date": "2012-03-04", "votes": i}, ensure_ascii=False) + "\n")


def test_two_imports_at_once_both_succeed_with_exact_counts(tmp_path):
    db = tmp_path / "shared.sqlite"
    url = f"sqlite:///{db}"
    seed = tmp_path / "seed.jsonl"
    write_films(seed, range(1, 101), "seed")
    files = {"a": (tmp_path / "a.jsonl", range(1, 1501)), "b": (tmp_path / "b.jsonl", range(1001, 2501))}
    for tag, (path, ids) in files.items():
        write_films(path, ids, tag)
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "pipeline.cli", "import", str(seed)], env=env, cwd=ROOT, check=True,
                   capture_output=True, timeout=120)

    # Hold the write lock while both start, for longer than SQLite's default 5 s wait: both must queue
    # behind it and behind each other rather than fail with "database is locked".
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    procs = {tag: subprocess.Popen([sys.executable, "-m", "pipeline.cli", "import", str(path)], env=env, cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tag, (path, _) in files.items()}
    time.sleep(6)
    holder.execute("COMMIT")
    holder.close()
    results = {}
    for tag, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        (match,) = [SUMMARY.search(line) for line in err.splitlines() if SUMMARY.search(line)]
        results[tag] = tuple(int(match.group(k)) for k in (1, 3, 4, 5))

    # records, new, updated, stored: exact for whichever import took the lock first.
    first, second = sorted(results, key=lambda t: results[t][3])
    expected = {("a", "b"): {"a": (1500, 1400, 100, 1500), "b": (1500, 1000, 500, 2500)},
                ("b", "a"): {"b": (1500, 1500, 0, 1600), "a": (1500, 900, 600, 2500)}}[first, second]
    assert results == expected

    titles = {r["douban_id"]: r["title"] for r in store.load_records(store.connect(url))}
    assert sorted(titles) == list(range(1, 2501))
    overlap = set(files["a"][1]) & set(files["b"][1])
    assert all(titles[i] == f"{second}{i}" for i in overlap)
    assert all(titles[i] == f"{tag}{i}" for tag, (_, ids) in files.items() for i in set(ids) - overlap)
