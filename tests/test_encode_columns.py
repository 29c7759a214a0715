"""The encode stage tokenises column by column (fast at scale); `kadn predict` tokenises one film at a time
with `film_tokens`. Both must give every film the same tokens, or a saved model would read other ids."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from crawler.mocksite.catalogue import films, generate_catalogue
from pipeline.features.clean import to_frame
from pipeline.features.encode import GROUPS, LIST_COLUMNS, encode_frame, film_tokens, group_tokens
from pipeline.params import load

PARAMS = load("params.yaml").encode.model_dump()


def catalogue_frame() -> pd.DataFrame:
    # Every kind of entry the mock site makes: year-only and undated films, people without ids, no runtime.
    records = [{k: v for k, v in e.items() if k not in ("kind", "traits")} for e in films(generate_catalogue(600, 3))]
    records = [{**r, "release_date": r.get("release_date")} for r in records]
    table = to_frame(records)
    table.loc[::7, "runtime_min"] = pd.NA
    table.loc[::11, "release_date"] = None
    return table


def test_columns_give_each_film_its_own_tokens(tmp_path):
    frame = catalogue_frame()
    frame.to_parquet(tmp_path / "t.parquet")
    frame = pd.read_parquet(tmp_path / "t.parquet")  # as the stage reads it: list cells as numpy arrays
    by_column = group_tokens(frame, PARAMS)
    rows = frame.to_dict("records")
    assert any(len(r["director_ids"]) == 0 or None in list(r["director_ids"]) for r in rows)
    for i, row in enumerate(rows):
        assert {g: by_column[g][i] for g in GROUPS} == film_tokens(row, PARAMS)


def test_arrays_hold_the_first_seen_vocabulary_ids(tmp_path):
    frame = catalogue_frame()
    arrays, vocab = encode_frame(frame, PARAMS)
    for i, row in enumerate(frame.to_dict("records")):
        tokens = film_tokens(row, PARAMS)
        for g in GROUPS:
            ids = arrays[g][i]
            assert [vocab[g][k - 2] for k in ids[ids > 0]] == tokens[g]
            assert not ids[len(tokens[g]):].any()
    # First-seen order: each group's first film holds the first ids.
    for g in GROUPS:
        first = arrays[g][0][arrays[g][0] > 0]
        assert np.array_equal(first[: len(set(first))][:1], [2])


def test_the_stage_reading_arrow_lists_gives_the_same_arrays_and_vocabularies(tmp_path):
    frame = catalogue_frame()
    frame.to_parquet(tmp_path / "t.parquet")
    table = pq.read_table(tmp_path / "t.parquet", columns=list(LIST_COLUMNS))
    scalars = pd.read_parquet(tmp_path / "t.parquet", columns=[c for c in frame if c not in LIST_COLUMNS])
    rows = pd.read_parquet(tmp_path / "t.parquet").to_dict("records")
    by_column = group_tokens(scalars, PARAMS, table)
    for i, row in enumerate(rows):
        assert {g: by_column[g][i] for g in GROUPS} == film_tokens(row, PARAMS)
    arrays, vocab = encode_frame(scalars, PARAMS, table)
    ref_arrays, ref_vocab = encode_frame(pd.read_parquet(tmp_path / "t.parquet"), PARAMS)
    assert vocab == ref_vocab and all(np.array_equal(arrays[g], ref_arrays[g]) for g in GROUPS)


def test_list_columns_arrow_cannot_pair_are_tokenised_row_by_row_alike():
    # Ids missing for some films (an empty list beside names), a longer id list, an id column absent, no id
    # known at all, a blank id: each film still gets what film_tokens gives it.
    frame = catalogue_frame()
    frame["director_ids"] = [[] if i % 3 == 0 else list(v) for i, v in enumerate(frame["director_ids"])]
    frame["writer_ids"] = [[*v, "99"] if i % 5 == 0 else list(v) for i, v in enumerate(frame["writer_ids"])]
    frame["actor_ids"] = [[None] * len(v) for v in frame["actors"]]
    frame.loc[0, "actor_ids"] = [""] * len(frame.loc[0, "actors"])
    for variant in (frame, frame.drop(columns=["writer_ids"])):
        by_column = group_tokens(variant, PARAMS)
        for i, row in enumerate(variant.to_dict("records")):
            assert {g: by_column[g][i] for g in GROUPS} == film_tokens(row, PARAMS)
