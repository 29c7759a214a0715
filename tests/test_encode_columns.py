"""One tokenising path: the encode stage tokenises whole columns (Arrow where it can, row by row where it
cannot), and `kadn forecast` hands its records to the same code as a table (`record_tokens`). A film must get
the same tokens whichever way it comes, or a saved model would read other ids."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from crawler.mocksite.catalogue import films, generate_catalogue
from pipeline.features import encode
from pipeline.features.clean import to_frame
from pipeline.features.encode import encode_frame, group_tokens, record_tokens
from pipeline.groups import list_columns, names
from pipeline.params import load

PARAMS = load("params.yaml").encode.model_dump()


def catalogue_records() -> list[dict]:
    # Every kind of entry the mock site makes: year-only and undated films, people without ids, no runtime.
    records = [{k: v for k, v in e.items() if k not in ("kind", "traits")} for e in films(generate_catalogue(600, 3))]
    records = sorted(records, key=lambda r: r["douban_id"])
    return [{**r, "runtime_min": None if i % 7 == 0 else r["runtime_min"],
             "release_date": None if i % 11 == 0 else r.get("release_date")} for i, r in enumerate(records)]


def stage_input(tmp_path, records):
    """What the encode stage reads: the scalar columns as a frame, the list columns as Arrow."""
    to_frame(records).to_parquet(tmp_path / "t.parquet")
    table = pq.read_table(tmp_path / "t.parquet", columns=list(list_columns()))
    scalars = pd.read_parquet(tmp_path / "t.parquet", columns=[c for c in to_frame(records) if c not in list_columns()])
    return scalars, table


def per_film(tokens: dict[str, list[list[str]]], i: int) -> dict[str, list[str]]:
    return {g: tokens[g][i] for g in names()}


def test_a_record_gets_the_tokens_the_stage_gives_its_row(tmp_path):
    records = catalogue_records()
    assert any(None in r["director_ids"] for r in records) and any(r["runtime_min"] is None for r in records)
    scalars, table = stage_input(tmp_path, records)
    by_stage = group_tokens(scalars, PARAMS, table)
    as_records = record_tokens(records, PARAMS)
    assert [per_film(by_stage, i) for i in range(len(records))] == as_records
    # One film at a time (`kadn forecast --ids ID`): a one-row table, whatever Arrow makes of it alone.
    for i in range(0, len(records), 13):
        assert record_tokens([records[i]], PARAMS) == [as_records[i]]
    assert as_records[0]["runtime"] == ["unknown"] and as_records[0]["month"] == ["unknown"]


def test_arrays_hold_the_first_seen_vocabulary_ids(tmp_path):
    frame = to_frame(catalogue_records())
    arrays, vocab = encode_frame(frame, PARAMS)
    tokens = group_tokens(frame, PARAMS)
    for i in range(len(frame)):
        for g in names():
            ids = arrays[g][i]
            assert [vocab[g][k - 2] for k in ids[ids > 0]] == tokens[g][i]
            assert not ids[len(tokens[g][i]):].any()
    # First-seen order: over the films in order, each group's ids first appear as 2, 3, 4...
    for g in names():
        seen = arrays[g][arrays[g] > 0]  # row-major: film by film
        _, first = np.unique(seen, return_index=True)
        assert seen[np.sort(first)].tolist() == list(range(2, 2 + len(first)))


def test_the_stage_reading_arrow_lists_gives_the_same_arrays_and_vocabularies(tmp_path):
    records = catalogue_records()
    scalars, table = stage_input(tmp_path, records)
    arrays, vocab = encode_frame(scalars, PARAMS, table)
    ref_arrays, ref_vocab = encode_frame(pd.read_parquet(tmp_path / "t.parquet"), PARAMS)
    assert vocab == ref_vocab and all(np.array_equal(arrays[g], ref_arrays[g]) for g in names())


@pytest.fixture
def odd_frame():
    # Ids missing for some films (an empty list beside names), a longer id list, no id known at all, a blank id.
    frame = to_frame(catalogue_records())
    frame["director_ids"] = [[] if i % 3 == 0 else list(v) for i, v in enumerate(frame["director_ids"])]
    frame["writer_ids"] = [[*v, "99"] if i % 5 == 0 else list(v) for i, v in enumerate(frame["writer_ids"])]
    frame["actor_ids"] = [[None] * len(v) for v in frame["actors"]]
    frame.loc[0, "actor_ids"] = [""] * len(frame.loc[0, "actors"])
    return frame


def test_arrow_and_row_by_row_tokenise_alike(odd_frame, monkeypatch):
    # An id column absent too; then every column made to go row by row, the reference.
    for variant in (to_frame(catalogue_records()), odd_frame, odd_frame.drop(columns=["writer_ids"])):
        fast = group_tokens(variant, PARAMS)
        with monkeypatch.context() as m:
            m.setattr(encode, "_list_array", lambda source, name: None)
            assert group_tokens(variant, PARAMS) == fast
        rows = variant.to_dict("records")
        for i in range(0, len(rows), 17):
            assert record_tokens([rows[i]], PARAMS) == [per_film(fast, i)]
