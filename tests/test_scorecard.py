"""The forecaster's loop: `kadn forecast` records its forecasts of stored films in the store's ledger (one row
per film, day, model and digest), `kadn import` and crawls never touch it, and `kadn scorecard` measures the
forecasts against the scores that appear later."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from crawler.mocksite.catalogue import generate_catalogue, store_catalogue
from models.serving.forecast import model_digest
from models.serving.scorecard import scorecard
from pipeline.cli import main
from pipeline.film import store
from pipeline.film.records import normalise_record
from tests.model_support import rehash, trained_folder

NEW = (9100001, 9100002, 9100003)  # films opening in 2026: no score yet


def new_film(douban_id: int, **fields) -> dict:
    base = {"douban_id": douban_id, "title": f"新片{douban_id}", "directors": ["无名导演"], "writers": ["无名编剧"],
            "actors": [f"演员{douban_id}", "无名演员乙"], "genres": ["剧情"], "countries": ["中国大陆"],
            "languages": ["汉语普通话"], "runtime_min": 90 + douban_id % 30, "release_date": "2026-03-06"}
    return normalise_record({**base, **fields})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_folder(tmp_path_factory.mktemp("ledger"))


@pytest.fixture
def url(tmp_path) -> str:
    """A store of rated catalogue films and the three unrated 2026 films."""
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store_catalogue(generate_catalogue(60, 7), url)
    store.upsert_records(store.connect(url), [new_film(i) for i in NEW], source="test")
    return url


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def forecast_args(trained: Path, url: str, models: Path | None = None) -> list[str]:
    return ["forecast", "--since", "2026", "--model", "ridge", "--database-url", url, "--models",
            str(models or trained / "models"), "--params", str(trained / "params.yaml")]


def ledger(url: str) -> list[dict]:
    return store.load_forecasts(store.connect(url, create=False))


def test_each_forecast_of_a_stored_film_is_recorded_with_the_models_digest(trained, url, tmp_path, capsys):
    code, _, err = run([*forecast_args(trained, url), "-o", str(tmp_path / "out.jsonl")], capsys)
    assert code == 0, err
    printed = {r["douban_id"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    rows = ledger(url)
    assert sorted(printed) == [r["douban_id"] for r in rows] == list(NEW)
    today = datetime.now(timezone.utc).date()
    for r in rows:
        p = printed[r["douban_id"]]
        assert (r["made_on"], r["model"]) == (today, "ridge") and r["wish_count"] is None and r["rating"] is None
        assert (r["score"], r["low"], r["high"], r["level"], r["known_share"]) == \
               (p["predicted"], p["low"], p["high"], p["level"], p["known_share"])
    # The digest is the folder's files: a copy keeps it, a changed byte changes it.
    assert rows[0]["digest"] == model_digest(trained / "models" / "ridge")
    copy = tmp_path / "models"
    shutil.copytree(trained / "models" / "ridge", copy / "ridge")
    assert model_digest(copy / "ridge") == rows[0]["digest"]
    vocab = copy / "ridge" / "vocab.json"
    vocab.write_bytes(vocab.read_bytes() + b" ")
    assert model_digest(copy / "ridge") != rows[0]["digest"]


def test_a_same_day_rerun_replaces_and_another_model_digest_adds(trained, url, tmp_path, capsys):
    for _ in range(2):
        assert run(forecast_args(trained, url), capsys)[0] == 0
    first = ledger(url)
    assert len(first) == len(NEW)
    # The same film dated another day and forecast again: its row for today is replaced by the new score.
    store.upsert_records(store.connect(url), [new_film(NEW[0], release_date="2026-05-01", runtime_min=150)],
                         source="test")
    assert run(forecast_args(trained, url), capsys)[0] == 0
    again = ledger(url)
    assert len(again) == len(NEW) and again[0]["score"] != first[0]["score"]
    copy = tmp_path / "models"
    shutil.copytree(trained / "models" / "ridge", copy / "ridge")
    (copy / "ridge" / "vocab.json").write_bytes((copy / "ridge" / "vocab.json").read_bytes() + b"\n")
    rehash(copy / "ridge")  # another model, as a retrain would save it: its checksums match its files
    assert run(forecast_args(trained, url, copy), capsys)[0] == 0
    assert len({r["digest"] for r in ledger(url)}) == 2 and len(ledger(url)) == 2 * len(NEW)


def test_no_record_and_file_forecasts_write_nothing(trained, url, tmp_path, capsys):
    assert run([*forecast_args(trained, url), "--no-record"], capsys)[0] == 0
    slate = tmp_path / "slate.jsonl"
    slate.write_text(json.dumps(new_film(NEW[0]), ensure_ascii=False) + "\n", encoding="utf-8")
    args = forecast_args(trained, url)
    code, out, err = run([args[0], str(slate), *args[3:]], capsys)  # the file instead of --since
    assert code == 0 and "9100001" in out, err
    assert ledger(url) == []
    code, out, err = run(["scorecard", "--database-url", url], capsys)
    assert code == 0 and out == "" and "no forecast recorded" in err


def test_ids_of_films_already_rated_are_scored_but_not_recorded(trained, url, capsys):
    rated = store.load_records(store.connect(url))[0]["douban_id"]
    assert rated not in NEW
    args = forecast_args(trained, url)
    code, out, err = run([args[0], "--ids", f"{rated},{NEW[0]}", *args[3:]], capsys)
    assert code == 0 and str(rated) in out and str(NEW[0]) in out, err
    assert [r["douban_id"] for r in ledger(url)] == [NEW[0]]
    assert "1 recorded in the ledger" in err and "1 already rated, not recorded" in err


def by_hand(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """The scorecard's figures from the ledger's rows, one forecast per film and month here."""
    out = {}
    for key in {(r["model"], r["made_on"].strftime("%Y-%m")) for r in rows}:
        group = [r for r in rows if (r["model"], r["made_on"].strftime("%Y-%m")) == key]
        done = [r for r in group if r["rating"]]
        errors = [r["score"] - r["rating"] for r in done]
        out[key] = {"films": len(done), "awaiting": len(group) - len(done),
                    "mae": round(sum(map(abs, errors)) / len(done), 3),
                    "bias": round(sum(errors) / len(done), 3),
                    "coverage": round(sum(r["low"] <= r["rating"] <= r["high"] for r in done) / len(done), 3)}
    return out


def test_scorecard_measures_the_forecasts_against_scores_imported_later(trained, url, tmp_path, capsys):
    assert run(forecast_args(trained, url), capsys)[0] == 0
    (first, second, _) = ledger(url)
    # An older forecast of the first two films, made in January by another build of the model.
    store.record_forecasts(store.connect(url), [
        {**{k: r[k] for k in ("douban_id", "model", "level", "known_share")}, "made_on": date(2026, 1, 5),
         "digest": "0" * 64, "score": 9.0, "low": 8.5, "high": 9.5} for r in (first, second)])
    # The films open: a refresh brings two scores (one inside its interval, one far off); the third stays
    # without one (a 0, as some dumps write "no score shown": read as no score).
    inside = round((first["low"] + first["high"]) / 2, 1)
    scores = {NEW[0]: inside, NEW[1]: 2.0, NEW[2]: 0.0}
    refresh = tmp_path / "refresh.jsonl"
    refresh.write_text("".join(json.dumps({**new_film(i), "rating": s, "votes": 500 if s else None},
                                          ensure_ascii=False) + "\n" for i, s in scores.items()), encoding="utf-8")
    assert run(["import", str(refresh), "--database-url", url], capsys)[0] == 0
    rows = ledger(url)
    assert [r["rating"] for r in rows if r["made_on"] != date(2026, 1, 5)] == [inside, 2.0, None]
    expected = by_hand(rows)
    assert expected[("ridge", "2026-01")]["films"] == 2
    code, _, err = run(["scorecard", "--database-url", url, "-o", str(tmp_path / "card.csv"), "--plot",
                        str(tmp_path / "card.png")], capsys)
    assert code == 0, err
    card = list(csv.DictReader((tmp_path / "card.csv").open(encoding="utf-8")))
    got = {(c["model"], c["month"]): {"films": int(c["films"]), "awaiting": int(c["awaiting"]),
                                      **{k: float(c[k]) for k in ("mae", "bias", "coverage")}} for c in card}
    assert got == expected
    today = datetime.now(timezone.utc).date().strftime("%Y-%m")
    assert got[("ridge", today)]["awaiting"] == 1 and got[("ridge", today)]["coverage"] == 0.5
    assert (tmp_path / "card.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run(["scorecard", "--database-url", url], capsys)
    assert code == 0 and out.splitlines()[0].split() == ["model", "month", "films", "awaiting", "mae", "bias",
                                                         "coverage", "level"]
    assert len(out.splitlines()) == 1 + len(expected)


def test_a_film_forecast_twice_in_a_month_counts_once_by_its_latest_forecast():
    def row(day, score):
        return {"douban_id": 1, "made_on": date(2026, 2, day), "model": "kadn", "digest": "a", "score": score,
                "low": score - 1, "high": score + 1, "level": 0.8, "known_share": 1.0, "rating": 7.0}

    (card,) = scorecard([row(20, 6.0), row(3, 9.0)])
    assert (card["films"], card["mae"], card["bias"], card["coverage"]) == (1, 1.0, -1.0, 1.0)


def test_export_import_round_trips_and_snapshots_leave_the_ledger_alone(trained, url, tmp_path, capsys):
    snap = tmp_path / "before.jsonl"
    assert run(["snapshot", "--database-url", url, "--out", str(snap)], capsys)[0] == 0
    assert run(forecast_args(trained, url), capsys)[0] == 0
    before = ledger(url)
    assert len(before) == len(NEW)
    for fmt in ("jsonl", "csv"):
        dump = tmp_path / f"all.{fmt}"
        assert run(["export", "--database-url", url, "--format", fmt, "-o", str(dump)], capsys)[0] == 0
        assert run(["import", str(dump), "--database-url", url], capsys)[0] == 0
    assert ledger(url) == before
    # The snapshot (the pipeline's one read of the store) holds the films alone, byte for byte as before.
    assert run(["snapshot", "--database-url", url, "--out", str(tmp_path / "after.jsonl")], capsys)[0] == 0
    assert (tmp_path / "after.jsonl").read_bytes() == snap.read_bytes()


@pytest.mark.parametrize("extra, message", [
    (["-o", "card.txt"], "unknown output format '.txt'"),
    (["--plot", "card.svg"], "--plot names a .png file"),
])
def test_bad_scorecard_arguments_get_one_line_and_write_nothing(url, tmp_path, capsys, extra, message):
    extra = [str(tmp_path / a) if "." in a else a for a in extra]
    code, out, err = run(["scorecard", "--database-url", url, *extra], capsys)
    assert code == 1 and out == "" and message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.glob("card*")) == []


def test_scorecard_writes_jsonl_and_parquet_alike(trained, url, tmp_path, capsys):
    assert run(forecast_args(trained, url), capsys)[0] == 0
    for suffix in (".jsonl", ".parquet"):
        assert run(["scorecard", "--database-url", url, "-o", str(tmp_path / f"card{suffix}")], capsys)[0] == 0
    jsonl = [json.loads(x) for x in (tmp_path / "card.jsonl").read_text().splitlines()]
    parquet = pd.read_parquet(tmp_path / "card.parquet").to_dict("records")
    assert [r["awaiting"] for r in jsonl] == [r["awaiting"] for r in parquet] == [len(NEW)]
    assert jsonl[0]["mae"] is None and pd.isna(parquet[0]["mae"])  # nothing scored yet
