"""`kadn forecast FILE` (and `kadn predict`) reads JSONL like `kadn import`: a line ends at "\n" only."""

import json

import pytest

from models.serving.predict import read_films


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\u0085"])
def test_predict_reader_keeps_a_title_holding_a_unicode_line_separator(tmp_path, sep):
    films = [{"douban_id": i, "title": f"上{sep}下{i}", "directors": [], "writers": [], "actors": [],
              "genres": [], "countries": [], "languages": [], "runtime_min": None, "release_date": None}
             for i in (1, 2)]
    path = tmp_path / "films.jsonl"
    path.write_text("".join(json.dumps(f, ensure_ascii=False) + "\n" for f in films), encoding="utf-8")
    assert [(f["douban_id"], f["title"], f["line"]) for f in read_films(path)] == [(1, films[0]["title"], 1),
                                                                                   (2, films[1]["title"], 2)]
