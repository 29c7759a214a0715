"""The encode stage tokenises column by column (fast at scale); `kadn predict` tokenises one film at a time
with `film_tokens`. Both must give every film the same tokens, or a saved model would read other ids."""

import numpy as np
import pandas as pd

from pipeline.clean import to_frame
from pipeline.encode import GROUPS, encode_frame, film_tokens, group_tokens
from pipeline.params import load
from tests.mockserver.catalogue import films, generate_catalogue

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
