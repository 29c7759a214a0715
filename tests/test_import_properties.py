"""Generated records against every importer layout.

Either the import succeeds and export -> import -> export gives the same file, or it fails with one line
naming the file and the database file is byte-identical.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.film.records import FIELDS, ID_FIELD, LIST_FIELDS
from tests.conftest import FIXTURES

# Characters that have broken readers and writers: separators of every layout, quotes, line breaks of
# every kind, tabs, CJK and emoji. NUL only ever comes as a bad value (PostgreSQL cannot store it).
TRICKY = ",/|:;\"'\\\t\n\r \u2028\u2029\u0085\x1f重映中国大陆汉语😀"
char = st.one_of(st.sampled_from(TRICKY), st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
text = st.text(char, max_size=10)
word = text.map(lambda s: "名" + s)  # never blank
digits = st.integers(0, 10**8).map(str)
dates = st.dates(date(1870, 1, 1), date(2100, 12, 31))
good_date = st.one_of(dates.map(date.isoformat), dates.map(lambda d: f"{d.year}/{d.month}/{d.day}"),
                      dates.map(lambda d: f"{d.year}-{d.month:02d}"), dates.map(lambda d: str(d.year)))
ids = st.one_of(st.integers(1, 6), st.sampled_from([90000001, 90000003]))  # repeats, and the seeded films

# Values no importer may take silently: each must be refused in one line, or stored and read back.
bad_text = st.one_of(text.map(lambda s: s + "\x00"), st.just(""), st.just("  "), text)
bad_number = st.one_of(st.integers(-5, 2**70).map(str), st.just("9" * 5000), st.floats().map(str), text,
                       st.just("true"), st.just(""))
bad_date = st.one_of(st.tuples(st.integers(0, 2200), st.integers(0, 13), st.integers(0, 32)).map(
    lambda t: "-".join(map(str, t))), st.just("2010-02-31"), text)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10, 2**70), st.floats(), bad_text, bad_number)
json_any = st.recursive(json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=2),
                                                             st.dictionaries(text, inner, max_size=2)), max_leaves=4)


def rarely(draw, value, otherwise=None):
    """`value` drawn one time in five, else `otherwise` (None): most records are valid, some are not."""
    return draw(value) if draw(st.integers(0, 4)) == 0 else otherwise


@st.composite
def people(draw) -> tuple[list[str], list[str | None]]:
    names = draw(st.lists(st.one_of(st.sampled_from(["张艺谋", "巩俐", "A, B", "甲/乙"]), word), max_size=3))
    return names, draw(st.lists(st.one_of(st.none(), digits), min_size=len(names), max_size=len(names)))


@st.composite
def kadn_record(draw) -> dict:
    rec: dict = {"douban_id": draw(ids), "title": draw(st.one_of(word, st.sampled_from(["电影", "[REC] 3"])))}
    for role, id_field in (("directors", "director_ids"), ("writers", "writer_ids"), ("actors", "actor_ids")):
        rec[role], pids = draw(people())
        if draw(st.booleans()):
            rec[id_field] = pids
    for attr in ("genres", "countries", "languages"):
        rec[attr] = draw(st.lists(word, max_size=3))
    rec["release_dates"] = draw(st.lists(st.fixed_dictionaries(
        {"date": good_date, "region": st.one_of(st.none(), word), "rerelease": st.booleans()}), max_size=3))
    for field, top in (("year", 2100), ("runtime_min", 600), ("votes", 10**7), ("review_count", 10**5),
                       ("comment_count", 10**5), ("wish_count", 10**6), ("watched_count", 10**7)):
        rec[field] = draw(st.one_of(st.none(), st.integers(1870 if field == "year" else 1, top)))
    rec["rating"] = draw(st.one_of(st.none(), st.floats(0, 10)))
    rec["release_date"] = draw(st.one_of(st.none(), good_date))
    rec["imdb_id"] = draw(st.one_of(st.none(), st.integers(1, 10**7).map(lambda n: f"tt{n:07d}")))
    drop = draw(st.sets(st.sampled_from(FIELDS[2:])))
    drop |= {id_field for role, id_field in ID_FIELD.items() if role in drop}
    rec = {k: v for k, v in rec.items() if k not in drop}
    corrupt = rarely(draw, st.sampled_from(FIELDS))
    if corrupt is not None:
        rec[corrupt] = draw(st.one_of(json_any, bad_date) if corrupt.startswith("release") else json_any)
    return rec


def as_csv_cell(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def joined(sep: str):
    return st.lists(st.one_of(st.sampled_from(["剧情", "美国", "甲演员"]), word), max_size=3).map(sep.join)


@st.composite
def csv_rows(draw, columns: dict) -> list[dict]:
    """Rows of valid cells, one cell in some rows replaced by a bad value."""
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        row = {k: draw(v) for k, v in columns.items()}
        corrupt = rarely(draw, st.sampled_from(sorted(columns)))
        if corrupt is not None:
            row[corrupt] = draw(st.one_of(bad_text, bad_number, bad_date))
        rows.append(row)
    return rows


@st.composite
def kadn_jsonl(draw, path: Path) -> None:
    lines = [rarely(draw, json_any, draw(kadn_record())) for _ in range(draw(st.integers(1, 4)))]
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")


@st.composite
def kadn_csv(draw, path: Path) -> None:
    rows = draw(st.lists(kadn_record(), min_size=1, max_size=4))
    cells = [{k: (json.dumps(v, ensure_ascii=False) if k in LIST_FIELDS else as_csv_cell(v)) for k, v in r.items()}
             for r in rows]
    write_csv(path, list(FIELDS), cells)


def maybe(strategy):
    return st.one_of(st.just(""), strategy)


@st.composite
def cc0_csv(draw, path: Path) -> None:
    columns = {
        "movie_id": ids.map(str), "title": word, "rating": maybe(st.floats(0, 10).map(lambda f: f"{f:.1f}")),
        "total_ratings": maybe(digits), "directors": joined(", "), "actors": joined(", "),
        "screenwriters": joined(", "), "release_date": maybe(good_date), "genres": joined(", "),
        "countries": joined(" / "), "languages": joined(" / "),
        "runtime": maybe(st.integers(0, 300).map(lambda n: f"{n}分钟")), "summary": text,
    }
    write_csv(path, list(columns), draw(csv_rows(columns)))


@st.composite
def moviedata_csv(draw, path: Path) -> None:
    pairs = st.lists(st.tuples(st.sampled_from(["甲演员", "丁导演"]), st.one_of(st.none(), digits)),
                     max_size=3).map(lambda ps: "|".join(f"{n}:{p or ''}" for n, p in ps))
    columns = {
        "MOVIE_ID": ids.map(str), "NAME": word, "ACTORS": joined("/"), "DIRECTORS": joined("/"),
        "DOUBAN_SCORE": maybe(st.floats(0, 10).map(lambda f: f"{f:.1f}")), "DOUBAN_VOTES": maybe(digits),
        "GENRES": joined("/"), "IMDB_ID": maybe(st.just("tt1234567")), "LANGUAGES": joined("/"),
        "MINS": maybe(st.integers(0, 300).map(str)), "REGIONS": joined("/"), "RELEASE_DATE": maybe(good_date),
        "YEAR": maybe(st.integers(1870, 2100).map(str)), "ACTOR_IDS": pairs, "DIRECTOR_IDS": pairs,
    }
    write_csv(path, list(columns), draw(csv_rows(columns)))


LAYOUTS = {"export.jsonl": kadn_jsonl, "export.csv": kadn_csv, "cc0.csv": cc0_csv, "moviedata.csv": moviedata_csv}


def kadn(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue()


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory) -> Path:
    """A store holding the CC0 sample, copied for every example (so a failed import has something to keep)."""
    path = tmp_path_factory.mktemp("seed") / "seed.sqlite"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", f"sqlite:///{path}")
        assert kadn("import", str(FIXTURES / "cc0_sample.csv"))[0] == 0
    return path


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_import_succeeds_and_round_trips_or_fails_in_one_line_changing_nothing(layout, data, seeded_db,
                                                                               monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = tmp / layout
        data.draw(LAYOUTS[layout](source))
        db = tmp / "one.sqlite"
        shutil.copy(seeded_db, db)
        before = db.read_bytes()
        code, err = kadn("import", str(source), "--database-url", f"sqlite:///{db}")
        if code != 0:
            assert code == 1 and err.startswith(f"kadn import: error: {source}") and err.count("\n") == 1, err
            assert db.read_bytes() == before
            return
        for fmt in ("jsonl", "csv"):
            first, second = tmp / f"first.{fmt}", tmp / f"second.{fmt}"
            assert kadn("export", "--format", fmt, "-o", str(first), "--database-url", f"sqlite:///{db}")[0] == 0
            fresh = f"sqlite:///{tmp / f'{fmt}.sqlite'}"
            code, err = kadn("import", str(first), "--database-url", fresh)
            assert code == 0, err
            assert kadn("export", "--format", fmt, "-o", str(second), "--database-url", fresh)[0] == 0
            assert first.read_bytes() == second.read_bytes()
