"""What the spider tests and the crawl benchmarks share besides the mock site itself: where the optional
loopback servers are (PostgreSQL and Redis, started by scripts/services.sh) and the statistics a finished
`scrapy crawl` printed. Here, in the package, so that benchmarks never import the tests."""

from __future__ import annotations

import ast
import os
import re

# Overridable for a machine whose servers live elsewhere; the defaults are what scripts/services.sh starts.
POSTGRES_URL = os.environ.get("KADN_TEST_POSTGRES_URL", "postgresql+psycopg://kadn:kadn@127.0.0.1:5432/kadn")
REDIS_URL = os.environ.get("KADN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def parse_stats(log: str) -> dict:
    """The stats Scrapy dumps when a crawl closes, read back from the crawl's log ({} without a dump)."""
    m = re.search(r"Dumping Scrapy stats:\n(\{.*?\})\n", log, re.DOTALL)
    if not m:
        return {}
    # The dump is a dict repr with datetime values; keep only the literal-safe entries.
    body = re.sub(r"datetime\.datetime\([^)]*\)", "None", m.group(1))
    return ast.literal_eval(body)
