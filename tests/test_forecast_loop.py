"""The forecaster's loop end to end, offline: a crawl of the films about to open (the mock site's coming-soon
lists), their forecasts recorded in the store's ledger, the site releasing them with scores, a refresh crawl,
and the scorecard, whose figures must equal what this test computes from the ledger and the released scores."""

from __future__ import annotations

import csv
import json

import pytest

from pipeline.cli import main
from pipeline.film import store
from tests.model_support import trained_folder
from tests.test_spider import mock, run_crawl, stored  # noqa: F401 (mock is a fixture)

pytestmark = pytest.mark.slow
N_COMING = 6


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_folder(tmp_path_factory.mktemp("loop"))


def test_crawl_coming_forecast_release_refresh_scorecard(trained, mock, tmp_path, capsys):  # noqa: F811
    site = mock(30, seed=4, coming=N_COMING)
    db_url = f"sqlite:///{tmp_path / 'loop.sqlite'}"
    # 1. The films about to open: stored unrated, with their wish counts.
    found = run_crawl(site.base_url, db_url, "coming=1")
    assert found.returncode == 0, found.log[-3000:]
    coming = {r["douban_id"]: r for r in stored(db_url)}
    assert coming and all(r["rating"] is None and r["wish_count"] for r in coming.values())
    # 2. Forecast every stored film without a score: each one printed is recorded in the ledger.
    out = tmp_path / "forecast.jsonl"
    args = ["--database-url", db_url, "--models", str(trained / "models"), "--params", str(trained / "params.yaml"),
            "--model", "ridge"]
    assert main(["forecast", *args, "-o", str(out)]) == 0, capsys.readouterr().err
    printed = {r["douban_id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    ledger = store.load_forecasts(store.connect(db_url, create=False))
    assert sorted(printed) == sorted(coming) == sorted(r["douban_id"] for r in ledger)
    assert {r["douban_id"]: r["wish_count"] for r in ledger} == {i: r["wish_count"] for i, r in coming.items()}
    # 3. The site releases them: one score inside its interval, the others far below it.
    released = {}
    for k, (did, row) in enumerate(sorted(printed.items())):
        rating = round((row["low"] + row["high"]) / 2, 1) if k == 0 else max(1.0, round(row["low"] - 1.5, 1))
        released[did] = site.release(did, rating, 100 + 10 * k)["rating"]
    # 4. A refresh crawl (every stored film due at once) brings the scores in, without duplicates.
    refreshed = run_crawl(site.base_url, db_url, "refresh=1", DOUBAN_REFRESH_DAYS="0")
    assert refreshed.returncode == 0, refreshed.log[-3000:]
    after = {r["douban_id"]: r for r in stored(db_url)}
    assert len(after) == len(coming) and {i: after[i]["rating"] for i in released} == released
    # 5. The scorecard against the same figures computed here from the ledger rows.
    capsys.readouterr()
    card_path = tmp_path / "card.csv"
    assert main(["scorecard", "--database-url", db_url, "-o", str(card_path)]) == 0, capsys.readouterr().err
    (card,) = list(csv.DictReader(card_path.open(encoding="utf-8")))
    errors = [r["score"] - released[r["douban_id"]] for r in ledger]
    inside = [r["low"] <= released[r["douban_id"]] <= r["high"] for r in ledger]
    assert card["model"] == "ridge" and card["month"] == ledger[0]["made_on"].strftime("%Y-%m")
    assert int(card["films"]) == len(ledger) and int(card["awaiting"]) == 0
    assert float(card["mae"]) == pytest.approx(round(sum(map(abs, errors)) / len(errors), 3), abs=1e-9)
    assert float(card["bias"]) == pytest.approx(round(sum(errors) / len(errors), 3), abs=1e-9)
    assert float(card["coverage"]) == pytest.approx(round(sum(inside) / len(inside), 3), abs=1e-9)
    assert 0 < float(card["coverage"]) < 1  # one inside, the others not: the figure can tell them apart
