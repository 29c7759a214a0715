"""Generated inputs at the edges of `kadn`: text holding surrogates and control characters in every text field,
random bytes as every file argument, and one record check shared by import and predict. Never a traceback:
either a clean one-line refusal (exit 1, or 2 for bad usage) or a correct round trip."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from models.serving.predict import read_films
from pipeline.cli import main
from pipeline.errors import KadnError
from pipeline.exchange.importer import read_export
from pipeline.film.records import ID_FIELD, normalise_record
from pipeline.io import jsonl_lines
from tests.conftest import film
from tests.model_support import trained_folder

CHECKOUT = Path(__file__).resolve().parents[1]
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
REMOVED = ("out_of_range", "rerelease", "non_film", "missing_labels", "few_raters", "unreadable")

# Control characters (C0 with NUL, DEL, C1), line breaks of every kind and plain letters; one time in four a
# lone surrogate too (it can only be refused: no UTF-8 file or database holds it).
odd_char = st.characters(categories=["Cc", "Zl", "Zp"]) | st.sampled_from("甲a ,\"\\\u0085")
plain_odd = st.text(odd_char, min_size=1, max_size=6).map(lambda s: "名" + s)
with_surrogate = st.tuples(plain_odd, st.characters(categories=["Cs"])).map("".join)
odd_text = st.one_of(plain_odd, plain_odd, plain_odd, with_surrogate)
TEXT_FIELDS = ("title", "directors", "director_ids", "writers", "actors", "genres", "countries", "languages",
               "region", "imdb_id")


def run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def refused_in_one_line(code: int, out: str, err: str, codes=(1,)) -> None:
    assert code in codes, err
    assert err.count("\n") == 1 and "Traceback" not in err and out == "", err


@st.composite
def odd_record(draw) -> dict:
    """A valid film but for one text field (or a list item, or a release region) holding odd characters."""
    rec = {k: v for k, v in film(draw(st.integers(1, 5))).items() if k != "release_date"}
    field, value = draw(st.sampled_from(TEXT_FIELDS)), draw(odd_text)
    if field == "region":
        rec["release_dates"] = [{**rec["release_dates"][0], "region": value}]
    elif field in ("title", "imdb_id"):
        rec[field] = value
    elif field == "director_ids":
        rec["directors"], rec["director_ids"] = ["甲"], [value]
    else:
        rec[field] = [value, "乙"]
        if field in ID_FIELD:
            rec[ID_FIELD[field]] = [None, None]
    return rec


def jsonl(records: list[dict]) -> str:
    # ensure_ascii: a lone surrogate travels as its "\ud800" escape, as another tool would write it.
    return "".join(json.dumps(r) + "\n" for r in records)


@settings(max_examples=40, **SETTINGS)
@given(records=st.lists(odd_record(), min_size=1, max_size=3, unique_by=lambda r: r["douban_id"]),
       fmt=st.sampled_from(["jsonl", "csv"]))
def test_odd_text_is_refused_in_one_line_or_round_trips(records, fmt):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        db, again = f"sqlite:///{tmp / 'a.sqlite'}", f"sqlite:///{tmp / 'b.sqlite'}"
        path = tmp / "in.jsonl"
        path.write_text(jsonl(records), encoding="utf-8")
        code, out, err = run(["import", str(path), "--database-url", db])
        event("refused" if code else "round trip")
        if code != 0:
            refused_in_one_line(code, out, err)
            assert f"{path}:" in err
            assert any(ch in err for ch in ("surrogate", "IMDb", "person id", "'"))
            return
        expected = {rec["douban_id"]: normalise_record(rec) for rec in records}  # what the record check keeps
        code, first, err = run(["export", "--format", fmt, "--database-url", db])
        assert code == 0, err
        exported = tmp / f"out.{fmt}"
        exported.write_text(first, encoding="utf-8")
        assert run(["import", str(exported), "--database-url", again])[0] == 0
        code, second, _ = run(["export", "--format", fmt, "--database-url", again])
        assert second == first
        if fmt == "jsonl":
            assert {r["douban_id"]: r for r in map(json.loads, first.split("\n")[:-1])} == expected


@pytest.fixture(scope="module")
def ridge(tmp_path_factory):
    return trained_folder(tmp_path_factory.mktemp("odd"))


@settings(max_examples=20, **SETTINGS)
@given(records=st.lists(odd_record(), min_size=1, max_size=2, unique_by=lambda r: r["douban_id"]))
def test_forecast_file_refuses_odd_text_in_one_line_or_keeps_it(ridge, records):
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / "films.jsonl", Path(tmp) / "out.jsonl"
        path.write_text(jsonl(records), encoding="utf-8")
        code, stdout, err = run(["forecast", str(path), "--model", "ridge", "--models", str(ridge / "models"),
                                 "--params", str(ridge / "params.yaml"), "-o", str(out)])
        event("refused" if code else "scored")
        if code != 0:
            refused_in_one_line(code, stdout, err)
            assert not out.exists()
            return
        rows = [json.loads(x) for x in out.read_text(encoding="utf-8").split("\n") if x]
    assert [r["title"] for r in rows] == [normalise_record(r)["title"] for r in records]


# --- random bytes as every file argument -----------------------------------------------------------------

junk = st.one_of(st.binary(max_size=120),
                 st.sampled_from([b"\xef\xbb\xbf", b"", b"\x00", b"{", b"[", b"\"", b"\xed\xa0\x80"]).flatmap(
                     lambda head: st.binary(max_size=60).map(lambda tail: head + tail)),
                 st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")))
suffix = st.sampled_from([".jsonl", ".json", ".csv", ""])


def file_args(command: str, target: Path, tmp: Path) -> list[str]:
    params = str(CHECKOUT / "params.yaml")
    if command == "metrics":
        report = tmp / "report.json"
        report.write_text(json.dumps({"stored": 1, "kept": 1, "removed": dict.fromkeys(REMOVED, 0)}))
        meta = tmp / "meta.json"
        meta.write_text(json.dumps({"split": {"train": 1}}))
        return ["metrics", "--fragments", str(target), "--report", str(report), "--encoded-meta", str(meta),
                "--out", str(tmp / "m.json")]
    return {
        "import": ["import", str(target), "--database-url", f"sqlite:///{tmp / 'db.sqlite'}"],
        "predict": ["predict", str(target), "--models", str(tmp / "models")],
        "forecast": ["forecast", str(target), "--params", params, "--models", str(tmp / "models")],
        "clean": ["clean", "--snapshot", str(target), "--params", params, "--out", str(tmp / "c" / "t.parquet"),
                  "--report", str(tmp / "c" / "r.json")],
    }[command]


@settings(max_examples=60, **SETTINGS)
@given(command=st.sampled_from(["import", "predict", "forecast", "metrics", "clean"]), data=junk, ext=suffix)
def test_random_bytes_as_a_file_argument_are_one_line(command, data, ext):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        target = tmp / f"input{ext}"
        target.write_bytes(data)
        code, out, err = run(file_args(command, target, tmp))
        event(f"{command} exit {code}")
        if code == 0:  # bytes that happen to be valid input (a metrics fragment "{}")
            assert command == "metrics"
            return
        refused_in_one_line(code, out, err, codes=(1, 2))


# --- one record check: what import accepts, predict accepts ----------------------------------------------

VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**12), st.floats(allow_nan=False, allow_infinity=True),
                   st.sampled_from(["", "0", "7.5", "2019", "2019-02-30", "2019/3/8", "tt0001", "100分钟", "1e308"]),
                   st.text(max_size=4), st.lists(st.one_of(st.text(max_size=3), st.none(), st.integers()), max_size=2))
CHECKED = ("title", "year", "directors", "director_ids", "writers", "actors", "genres", "countries", "languages",
           "runtime_min", "release_date", "rating", "votes", "review_count", "comment_count", "imdb_id")


@settings(max_examples=80, **SETTINGS)
@given(changes=st.dictionaries(st.sampled_from(CHECKED), VALUES, max_size=3))
def test_import_and_predict_accept_the_same_records(changes):
    base = {"douban_id": 7, "title": "新片", "directors": ["甲"], "writers": [], "actors": [], "genres": ["剧情"],
            "countries": [], "languages": [], "runtime_min": 100, "release_date": "2019-03-08"}
    record = {**base, **changes}
    if record["title"] is None or (isinstance(record["title"], str) and not record["title"].strip()):
        record["title"] = "新片"  # a store needs a title; scoring does not: that is the one allowed difference
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.jsonl"
        path.write_text(json.dumps(record) + "\n", encoding="utf-8")
        verdicts = []
        for reader in (read_export, read_films):
            try:
                reader(path)
                verdicts.append("accepted")
            except KadnError as exc:
                verdicts.append(str(exc))
    event(verdicts[1] if verdicts[1] == "accepted" else "refused")
    assert (verdicts[0] == "accepted") == (verdicts[1] == "accepted"), verdicts


@settings(**SETTINGS)
@given(st.lists(st.one_of(st.just(""), st.text(alphabet="a\u2028\u0085\r {}\"", max_size=6)), max_size=8))
def test_json_lines_break_at_newline_only_and_skip_empty_lines(lines):
    got = list(jsonl_lines("\n".join(lines)))
    assert got == [(n, line) for n, line in enumerate(lines, 1) if line]
