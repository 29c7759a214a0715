"""Crawl throughput against the local mock Douban site, politeness off, and parse cost per page.

    .venv/bin/python bench/crawl_throughput.py [--movies 3000] [--seed 1] [--concurrency 32] [--json OUT]
                                               [--real-page SAVED_SUBJECT.html]

Starts the mock site on 127.0.0.1 (in this process), runs a real `scrapy crawl douban` subprocess into a
temporary SQLite store, and reports pages per second (responses / Scrapy's elapsed time, and end to end
including process start), checks the store holds exactly the catalogue's films, then times
`crawler.parsing.parse_subject` on mock pages and, given `--real-page`, on a saved real subject page.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crawler.mocksite.harness import parse_stats
from crawler.mocksite.site import MockDouban, render_subject
from crawler.parsing import parse_subject
from pipeline.film import store

ROOT = Path(__file__).resolve().parents[1]


def parse_cost(html: str, url: str, repeat: int) -> float:
    """Median milliseconds per parse over `repeat` runs of 20 parses."""
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(20):
            parse_subject(html, url)
        runs.append((time.perf_counter() - t) / 20 * 1000)
    return statistics.median(runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--movies", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--real-page", type=Path, help="a saved movie.douban.com subject page to time the parser on")
    args = ap.parse_args()

    site = MockDouban(args.movies, args.seed)
    site.serve(0)
    expected = site.expected_films()
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{tmp}/bench.sqlite"
        cmd = [str(Path(sys.executable).with_name("scrapy")), "crawl", "douban",
               "-s", f"DOUBAN_BASE_URL={site.base_url}", "-s", "AUTOTHROTTLE_ENABLED=0", "-s", "DOWNLOAD_DELAY=0",
               "-s", f"CONCURRENT_REQUESTS={args.concurrency}",
               "-s", f"CONCURRENT_REQUESTS_PER_DOMAIN={args.concurrency}"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "DATABASE_URL": db_url}, capture_output=True,
                              text=True)
        wall = time.perf_counter() - t0
        stats = parse_stats(proc.stderr)
        got = store.load_records(store.connect(db_url))
    site.close()
    if proc.returncode != 0 or not stats:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    pages = stats["downloader/response_count"]
    real = args.real_page
    # The parser reads the subject id from the page's URL: taken from the file's name (subject_<id>.html).
    real_id = "".join(c for c in real.stem if c.isdigit()) if real is not None else ""
    real_ms = parse_cost(real.read_text(encoding="utf-8"), f"https://movie.douban.com/subject/{real_id or 1}/", 15) \
        if real is not None else None
    sample = [e for e in site.catalogue if e["kind"] == "film"][:200]
    mock_ms = statistics.median(parse_cost(render_subject(e), f"http://127.0.0.1/subject/{e['douban_id']}/", 1)
                                for e in sample[:50])
    out = {
        "movies": args.movies, "concurrency": args.concurrency, "pages": pages,
        "films_stored": stats.get("douban/stored", 0), "store_matches_catalogue": got == expected,
        "crawl_seconds": round(stats["elapsed_time_seconds"], 2),
        "pages_per_s": round(pages / stats["elapsed_time_seconds"], 1),
        "pages_per_s_end_to_end": round(pages / wall, 1), "wall_seconds": round(wall, 2),
        "parse_ms_real_page": None if real_ms is None else round(real_ms, 2),
        "real_page_kb": round(real.stat().st_size / 1024) if real is not None else None,
        "parse_ms_mock_page": round(mock_ms, 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }
    print(f"crawl: {pages} pages in {out['crawl_seconds']} s = {out['pages_per_s']} pages/s "
          f"({out['pages_per_s_end_to_end']} pages/s including Scrapy start-up); "
          f"{out['films_stored']} films stored, store matches catalogue: {out['store_matches_catalogue']}")
    if real_ms is not None:
        print(f"parse: {out['parse_ms_real_page']} ms per real page ({out['real_page_kb']} kB), "
              f"{out['parse_ms_mock_page']} ms per mock page")
    else:
        print(f"parse: {out['parse_ms_mock_page']} ms per mock page (no --real-page given)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0 if out["store_matches_catalogue"] else 1


if __name__ == "__main__":
    sys.exit(main())
