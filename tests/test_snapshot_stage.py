"""`kadn snapshot`: the films of any store as one canonical file that `kadn clean` reads, so DVC re-runs the
stages after it exactly when the films changed, whichever database DATABASE_URL names."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.errors import KadnError
from pipeline.exchange.snapshot import read_snapshot, snapshot_line
from pipeline.features.clean import run_clean
from pipeline.film import store
from pipeline.film.records import FIELDS, INTEREST_FIELDS
from pipeline.params import load
from tests.conftest import film
from tests.services import postgres_url

ROOT = Path(__file__).resolve().parents[1]
FILMS = [film(i, rating=5 + i % 4, release_dates=[{"date": f"201{i % 9}-0{1 + i % 9}-1{i % 9}",
                                                    "region": "中国大陆", "rerelease": False}])
         for i in (7, 3, 12, 5, 9, 1, 30, 2)]


def fill(url: str, films: list[dict], fetched_at: datetime) -> None:
    engine = store.connect(url)
    store.upsert_records(engine, films, source="test", fetched_at=fetched_at)
    engine.dispose()


def snapshot(url: str, out: Path) -> bytes:
    assert main(["snapshot", "--database-url", url, "--out", str(out)]) == 0
    return out.read_bytes()


def test_interest_counts_appear_only_when_known(tmp_path):
    # A store without 想看/看过 counts snapshots as it did before they existed (the stages after it stay put).
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    fill(url, FILMS[:2] + [{**FILMS[2], "wish_count": 4321, "watched_count": None}], datetime(2026, 1, 1))
    lines = [json.loads(line) for line in snapshot(url, tmp_path / "s.jsonl").splitlines()]
    by_id = {rec["douban_id"]: rec for rec in lines}
    assert list(by_id[FILMS[0]["douban_id"]]) == [f for f in FIELDS if f not in INTEREST_FIELDS]
    assert by_id[FILMS[2]["douban_id"]]["wish_count"] == 4321
    assert "watched_count" not in by_id[FILMS[2]["douban_id"]]
    read = {rec["douban_id"]: rec for rec in read_snapshot(tmp_path / "s.jsonl")}
    assert read[FILMS[0]["douban_id"]] == FILMS[0] and read[FILMS[2]["douban_id"]]["wish_count"] == 4321


def test_snapshot_is_sorted_canonical_and_blind_to_fetch_times(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    fill(url, FILMS, datetime(2026, 1, 1))
    first = snapshot(url, tmp_path / "one.jsonl")
    records = read_snapshot(tmp_path / "one.jsonl")
    assert [r["douban_id"] for r in records] == sorted(f["douban_id"] for f in FILMS)
    assert records == sorted(FILMS, key=lambda r: r["douban_id"])
    assert not any("fetch" in key for r in records for key in r)
    # The same films stored again later, and in another order into another file: the same bytes.
    fill(url, FILMS, datetime(2026, 6, 1))
    other = f"sqlite:///{tmp_path / 'b.sqlite'}"
    fill(other, FILMS[::-1], datetime(2025, 3, 3))
    assert snapshot(url, tmp_path / "two.jsonl") == first
    assert snapshot(other, tmp_path / "three.jsonl") == first
    # A changed score changes the snapshot.
    fill(url, [{**FILMS[0], "rating": 9.1}], datetime(2026, 7, 1))
    assert snapshot(url, tmp_path / "four.jsonl") != first


def test_clean_reads_the_snapshot_as_it_reads_the_store(tmp_path, db_url, capsys):
    fill(db_url, FILMS, datetime(2026, 1, 1))
    snap = tmp_path / "films.jsonl"
    snapshot(db_url, snap)
    params = load(ROOT / "params.yaml").clean
    run_clean(db_url, params, tmp_path / "db.parquet", tmp_path / "db.json")
    store.connect(db_url).dispose()
    # The store may change afterwards: clean --snapshot reads the file only.
    fill(db_url, [{**f, "rating": 2.0} for f in FILMS], datetime(2026, 2, 1))
    assert main(["clean", "--snapshot", str(snap), "--out", str(tmp_path / "s.parquet"),
                 "--report", str(tmp_path / "s.json")]) == 0
    assert (tmp_path / "s.parquet").read_bytes() == (tmp_path / "db.parquet").read_bytes()
    assert (tmp_path / "s.json").read_bytes() == (tmp_path / "db.json").read_bytes()


def test_a_damaged_snapshot_names_file_and_line_and_writes_nothing(tmp_path, capsys):
    snap = tmp_path / "films.jsonl"
    snap.write_text('{"douban_id": 1}\n', encoding="utf-8")
    out = tmp_path / "movies.parquet"
    assert main(["clean", "--snapshot", str(snap), "--out", str(out), "--report", str(tmp_path / "r.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{snap}: line 1: record lacks the field 'title'" in err
    assert not out.exists()


def test_an_empty_store_writes_no_snapshot(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    store.connect(url).dispose()
    out = tmp_path / "films.jsonl"
    assert main(["snapshot", "--database-url", url, "--out", str(out)]) == 1
    assert "holds no movies" in capsys.readouterr().err and not out.exists()


def test_postgres_and_sqlite_holding_the_same_films_give_the_same_snapshot(tmp_path, monkeypatch):
    pg = postgres_url()
    fill(pg, FILMS, datetime(2026, 1, 1))
    lite = f"sqlite:///{tmp_path / 'same.sqlite'}"
    fill(lite, FILMS[::-1], datetime(2024, 1, 1))
    monkeypatch.setenv("DATABASE_URL", pg)  # the stage's command takes the store from the environment
    assert main(["snapshot", "--out", str(tmp_path / "pg.jsonl")]) == 0
    assert (tmp_path / "pg.jsonl").read_bytes() == snapshot(lite, tmp_path / "lite.jsonl")
    fill(pg, [{**FILMS[2], "votes": 123456}], datetime(2026, 2, 1))
    assert main(["snapshot", "--out", str(tmp_path / "pg2.jsonl")]) == 0
    assert (tmp_path / "pg2.jsonl").read_bytes() != (tmp_path / "lite.jsonl").read_bytes()


def test_dvc_runs_the_snapshot_every_time_and_clean_reads_only_it():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert stages["snapshot"]["always_changed"] is True
    assert stages["snapshot"]["outs"] == ["data/snapshot/films.jsonl"]
    assert "--snapshot data/snapshot/films.jsonl" in stages["clean"]["cmd"]
    data_deps = [d for d in stages["clean"]["deps"] if d.startswith("data/")]
    assert data_deps == ["data/snapshot/films.jsonl"]


@settings(max_examples=300, deadline=None)
@given(title=st.text(), names=st.lists(st.text(max_size=8), max_size=3),
       rating=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
       votes=st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)))
def test_a_snapshot_line_is_what_json_writes(title, names, rating, votes):
    # Control characters, quotes, U+2028 and friends, floats of any size: byte for byte the compact json line.
    rec = {**FILMS[0], "title": title, "directors": names, "director_ids": [None] * len(names),
           "rating": rating, "votes": votes}
    expected = json.dumps({f: rec[f] for f in FIELDS if f not in INTEREST_FIELDS}, ensure_ascii=False,
                          separators=(",", ":"))
    assert snapshot_line(rec) == expected.encode()


def test_snapshot_lines_json_reads_are_read_as_json_reads_them(tmp_path):
    # NaN and a number beyond 64 bits are JSON to Python's reader (not to orjson): read the same, not refused.
    rec = {f: None for f in FIELDS}
    snap = tmp_path / "films.jsonl"
    snap.write_text(json.dumps({**rec, "douban_id": 2**70, "rating": float("nan")}) + "\n" + json.dumps(rec) + "\n",
                    encoding="utf-8")
    first, second = read_snapshot(snap)
    assert first["douban_id"] == 2**70 and first["rating"] != first["rating"] and second == rec
    snap.write_text(json.dumps(rec) + "\n{\"douban_id\": 1,\n", encoding="utf-8")
    with pytest.raises(KadnError, match=r"films.jsonl: line 2: not JSON \(Expecting property name enclosed in "
                                        r"double quotes\): '\{\"douban_id\": 1,'"):
        read_snapshot(snap)
