"""`kadn predict`, the alias of `kadn forecast FILE`, on fixture films: scores from the saved student, OOV
fallback and its count, and clear errors (the importer's record check) for malformed input, mistyped fields
and untrained models."""

import contextlib
import csv
import io
import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.serving.forecast import forecast
from models.serving.predict import read_films
from models.stages.evaluate import run_evaluate
from pipeline.cli import main
from pipeline.errors import KadnError
from tests.model_support import ROOT, encoded_catalogue, fast, fast_params, train_models

PARAMS = ["--params", str(ROOT / "params.yaml")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    train_models(folder)
    return folder


def known_people(folder) -> dict:
    """Fields naming a director and three actors the saved model knows (by Douban id or by name)."""
    vocab = json.loads((folder / "models" / "kadn" / "vocab.json").read_text())["groups"]
    fields = {}
    for group, n in (("directors", 1), ("actors", 3)):
        tokens = list(vocab[group])[:n]
        fields[group] = [t[5:] if t.startswith("name:") else f"某人{i}" for i, t in enumerate(tokens)]
        fields[group[:-1] + "_ids"] = [t[3:] if t.startswith("id:") else None for t in tokens]
    return fields


def fixture_film(douban_id, **fields):
    film = {"douban_id": douban_id, "title": f"新片{douban_id}", "directors": ["无名导演"], "writers": ["无名编剧"],
            "actors": ["无名演员甲", "无名演员乙"], "genres": ["剧情"], "countries": ["中国大陆"],
            "languages": ["汉语普通话"], "runtime_min": 104, "release_date": "2019-03-08"}
    film.update(fields)
    return film


def predict(path, model, models_dir) -> list[dict]:
    return forecast(read_films(path), model, models_dir, fast(), with_reasons=False)


def write(path, films, jsonl=False):
    path.write_text("\n".join(json.dumps(f, ensure_ascii=False) for f in films) if jsonl
                    else json.dumps(films, ensure_ascii=False), encoding="utf-8")
    return path


def test_predict_scores_each_film_and_counts_unknown_values(trained, tmp_path):
    known = fixture_film(1, writers=[], **known_people(trained))
    stranger = fixture_film(2)
    rows = predict(write(tmp_path / "f.json", [known, stranger]), "kadn", trained / "models")
    assert [r["douban_id"] for r in rows] == [1, 2]
    assert all(0 < r["predicted"] < 10 for r in rows)
    # Known people count nothing; a director, writer and two actors nobody has seen count four.
    assert rows[0]["unknown_fields"].get("directors", 0) == 0 and "actors" not in rows[0]["unknown_fields"]
    assert rows[1]["unknown_fields"]["directors"] == 1 and rows[1]["unknown_fields"]["actors"] == 2
    assert rows[1]["unknown"] >= 4
    # Null values are unknown too, and still scored.
    blank = fixture_film(3, runtime_min=None, release_date=None, writers=None)
    (row,) = predict(write(tmp_path / "g.json", [blank]), "kadn", trained / "models")
    assert row["unknown_fields"]["runtime"] == 1 and row["unknown_fields"]["year"] == 1
    assert 0 < row["predicted"] < 10


def test_predict_reads_jsonl_and_other_models_give_other_scores(trained, tmp_path):
    films = [fixture_film(i) for i in (4, 5)]
    path = write(tmp_path / "f.jsonl", films, jsonl=True)
    student = predict(path, "kadn", trained / "models")
    teacher = predict(path, "kadn_teacher", trained / "models")
    ridge = predict(path, "ridge", trained / "models")
    assert len(student) == len(teacher) == len(ridge) == 2
    assert student[0]["predicted"] != teacher[0]["predicted"] or student[0]["predicted"] != ridge[0]["predicted"]
    assert predict(path, "kadn", trained / "models") == student  # deterministic


def test_people_the_model_knows_change_the_score(trained, tmp_path):
    rows = predict(write(tmp_path / "f.json", [fixture_film(6), fixture_film(7, **known_people(trained))]),
                   "kadn", trained / "models")
    assert rows[0]["predicted"] != rows[1]["predicted"]


def test_cli_prints_one_line_per_film(trained, tmp_path, capsys):
    path = write(tmp_path / "f.json", [fixture_film(8), fixture_film(9, actors=None)])
    assert main(["predict", str(path), "--models", str(trained / "models"), *PARAMS]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:4] == ["douban_id", "title", "release", "score"]
    assert [ln.split()[0] for ln in lines[1:]] == ["8", "9"]
    assert float(lines[1].split()[3]) > 0


@pytest.mark.parametrize("content, message", [
    ('{"douban_id": 1, "title": ', "not valid JSON"),
    ('{"douban_id": 1, "title": "甲"}\n{"douban_id": 2, ', ":2: not valid JSON"),
    ("", "empty file"),
    ('[1, 2]', "expected a JSON object"),
])
def test_malformed_input_is_refused_plainly(trained, tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    assert main(["predict", str(path), "--models", str(trained / "models"), *PARAMS]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_fields_are_unknown_and_mistyped_ones_are_named(trained, tmp_path):
    # As `kadn import` reads them: a field left out is unknown, and the film is still scored.
    film = fixture_film(10)
    del film["genres"]
    (row,) = forecast(read_films(write(tmp_path / "a.json", [film])), "kadn", trained / "models", fast())
    assert "no genres listed" in row["unknown_text"] and 0 < row["predicted"] < 10
    with pytest.raises(KadnError, match="'actors': expected a list"):
        predict(write(tmp_path / "b.json", [fixture_film(11, actors="某演员")]), "kadn", trained / "models")
    with pytest.raises(KadnError, match="'runtime_min': cannot parse 'long'"):
        predict(write(tmp_path / "c.json", [fixture_film(12, runtime_min="long")]), "kadn", trained / "models")


def test_untrained_model_or_unknown_name_is_refused(trained, tmp_path, capsys):
    path = write(tmp_path / "f.json", [fixture_film(13)])
    with pytest.raises(KadnError, match="no trained model 'svm'"):
        predict(path, "svm", trained / "models")
    with pytest.raises(KadnError, match="unknown model"):
        predict(path, "gpt", trained / "models")
    assert main(["predict", str(path), "--models", str(tmp_path / "nothing"), *PARAMS]) == 1
    assert "kadn train kadn" in capsys.readouterr().err


def test_evaluate_refuses_models_trained_on_another_encoding(trained, tmp_path):
    other = encoded_catalogue(tmp_path, n=200, seed=9)
    models = tmp_path / "models"
    shutil.copytree(trained / "models", models)
    params = fast_params()
    params["models"] = {"baselines": ["ridge"], "nets": ["kadn"]}
    with pytest.raises(KadnError, match="another encoding"):
        run_evaluate(fast(params), other, models, tmp_path / "m.json", tmp_path / "plots")


def run_cli(args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("content, message", [
    ("[]", "no film records"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"douban_id": ' + "9" * 5000 + "}", ":1: 'douban_id': '99999"),
])
def test_unusable_files_get_one_line(trained, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    code, out, err = run_cli(["predict", str(path), "--models", str(trained / "models"), *PARAMS])
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and message in err and len(err) < 300


@pytest.mark.parametrize("fields, message", [
    ({"year": "abc", "release_date": None}, "f.json:2: 'year': cannot parse 'abc' as a whole number"),
    ({"actor_ids": "1274297"}, "f.json:2: 'actor_ids': must be a list as long as actors"),
    ({"actor_ids": ["1274297"]}, "'actor_ids': must be a list as long as actors"),
    ({"release_date": "next spring"}, "'release_date': cannot parse 'next spring' as a date"),
    ({"release_date": "2019-13-01"}, "'release_date': month out of range"),
    ({"release_date": 20190308}, "'release_date': cannot parse '20190308' as a date"),
    ({"votes": True}, "'votes': expected a whole number, got True"),
    ({"runtime_min": float("inf")}, "'runtime_min': cannot parse inf as a whole number"),
    ({"runtime_min": 1e308}, "'runtime_min': '1e+308' is outside 1..2147483647"),
    ({"title": {"zh": "新片"}}, "'title': expected text, got dict"),
    ({"genres": ["剧情" * 5000, 3]}, "'genres': longer than 128 characters: '剧情剧情"),
])
def test_unusable_fields_are_refused_naming_the_film_and_field(trained, tmp_path, fields, message):
    path = write(tmp_path / "f.json", [fixture_film(20), fixture_film(21, **fields)])
    code, out, err = run_cli(["predict", str(path), "--models", str(trained / "models"), *PARAMS])
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and message in err and len(err) < 300


def test_a_year_alone_or_a_slashed_date_is_read(trained, tmp_path):
    dated = predict(write(tmp_path / "a.json", [fixture_film(30, release_date="2019-03-08")]), "kadn",
                    trained / "models")
    slashed = predict(write(tmp_path / "b.json", [fixture_film(30, release_date="2019/3/8")]), "kadn",
                      trained / "models")
    assert [r["predicted"] for r in slashed] == [r["predicted"] for r in dated]
    by_year = predict(write(tmp_path / "c.json", [fixture_film(31, release_date=None, year="2019")]), "kadn",
                      trained / "models")
    assert "year" not in by_year[0]["unknown_fields"]


def test_csv_keeps_one_record_per_film_whatever_the_title(trained, tmp_path):
    titles = ["制\t表", "换\n行", 'a "quoted" title', "普通"]
    path = write(tmp_path / "f.json", [fixture_film(40 + i, title=t) for i, t in enumerate(titles)])
    code, _, _ = run_cli(["predict", str(path), "--models", str(trained / "models"), *PARAMS, "-o",
                          str(tmp_path / "out.csv")])
    assert code == 0
    rows = list(csv.reader((tmp_path / "out.csv").open(encoding="utf-8", newline="")))
    assert rows[0][:3] == ["douban_id", "line", "title"]
    assert [r[2] for r in rows[1:]] == titles and [r[0] for r in rows[1:]] == ["40", "41", "42", "43"]


FIELD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                         st.text(max_size=12), st.lists(st.one_of(st.text(max_size=6), st.none(), st.integers()),
                                                        max_size=4),
                         st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
FIELDS = ("douban_id", "title", "directors", "director_ids", "writers", "actors", "actor_ids", "genres",
          "countries", "languages", "runtime_min", "release_date", "year", "votes")


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(films=st.lists(st.fixed_dictionaries({}, optional={f: FIELD_VALUES for f in FIELDS}).map(
    lambda extra: {**fixture_film(1), **extra}), max_size=4), jsonl=st.booleans(), model=st.sampled_from(["kadn", "ridge"]))
def test_predict_gives_a_score_per_film_or_one_line(trained, films, jsonl, model):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "films.json"
        path.write_text("\n".join(json.dumps(f, ensure_ascii=False) for f in films) if jsonl
                        else json.dumps(films, ensure_ascii=False), encoding="utf-8")
        out_file = Path(tmp) / "out.jsonl"
        code, out, err = run_cli(["predict", str(path), "--model", model, "--models", str(trained / "models"),
                                  *PARAMS, "-o", str(out_file)])
        rows = [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()] if code == 0 else []
    if code == 0:
        assert len(rows) == len(films) and films
        assert all(math.isfinite(r["predicted"]) for r in rows)
    else:
        assert code == 1 and out == "" and err.count("\n") == 1 and "Traceback" not in err
