"""The synthetic catalogue: deterministic, canonical, and shaped like real Douban (measured shares)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from crawler.mocksite.catalogue import films, films_in_years, generate_catalogue, store_catalogue
from pipeline.film import store
from pipeline.film.records import normalise_record


@pytest.fixture(scope="module")
def catalogue():
    return generate_catalogue(4000, seed=11)


def test_deterministic_and_seed_dependent(catalogue):
    assert generate_catalogue(4000, seed=11) == catalogue
    assert generate_catalogue(4000, seed=12) != catalogue


def test_entries_are_canonical_records(catalogue):
    ids = [e["douban_id"] for e in catalogue]
    assert ids == sorted(set(ids))
    for entry in catalogue:
        plain = {k: v for k, v in entry.items() if k not in ("kind", "traits", "episodes", "episode_min")}
        assert normalise_record(plain) == plain


def test_shapes_match_real_douban(catalogue):
    recs = films(catalogue)
    assert len(recs) == 4000
    scores = np.array([r["rating"] for r in recs if r["rating"] is not None])
    assert 6.9 < scores.mean() < 7.5 and 0.9 < scores.std() < 1.3
    assert scores.min() >= 2.0 and scores.max() <= 9.8
    assert np.median([len(r["directors"]) for r in recs]) == 1
    assert np.median([len(r["writers"]) for r in recs]) == 2
    assert np.median([len(r["actors"]) for r in recs]) == 6
    assert np.percentile([len(r["actors"]) for r in recs], 90) >= 12
    assert 95 <= np.median([r["runtime_min"] for r in recs if r["runtime_min"]]) <= 115
    actor_films = Counter((n, i) for r in recs for n, i in zip(r["actors"], r["actor_ids"]))
    one_film = np.mean([c == 1 for c in actor_films.values()])
    assert 0.6 < one_film < 0.78
    pairs = np.array([(r["rating"], np.log(r["votes"])) for r in recs if r["rating"] is not None])
    assert 0.28 < np.corrcoef(pairs.T)[0, 1] < 0.48
    top = [g for g, _ in Counter(g for r in recs for g in r["genres"]).most_common(3)]
    assert top[0] == "剧情"


def test_special_cases_present(catalogue):
    traits = Counter(t for e in catalogue for t in e["traits"])
    for trait in ("no_score", "rerelease", "concert", "no_actors", "year_only", "no_date", "out_of_range",
                  "duplicate", "name_only_person"):
        assert traits[trait] > 0, trait
    assert sum(e["kind"] == "tv" for e in catalogue) == 200
    no_score = [e for e in catalogue if "no_score" in e["traits"]]
    assert all(e["rating"] is None and e["votes"] is None for e in no_score)
    rereleased = [e for e in catalogue if "rerelease" in e["traits"]]
    assert all(any(d["rerelease"] for d in e["release_dates"]) for e in rereleased)
    concerts = [e for e in catalogue if "concert" in e["traits"]]
    assert all("歌舞" in e["genres"] for e in concerts)
    assert all(not e["actors"] for e in catalogue if "no_actors" in e["traits"])


def test_people_keep_ids_across_films(catalogue):
    ids_by_name: dict[str, set] = {}
    for r in films(catalogue):
        for role in ("directors", "actors"):
            for name, pid in zip(r[role], r[role[:-1] + "_ids"]):
                ids_by_name.setdefault(name, set()).add(pid)
    assert all(len(ids) == 1 for ids in ids_by_name.values())


def test_store_catalogue_round_trips(tmp_path):
    cat = generate_catalogue(300, seed=3)
    url = f"sqlite:///{tmp_path / 'cat.sqlite'}"
    assert store_catalogue(cat, url) == 300
    engine = store.connect(url)
    assert store.load_records(engine) == films(cat)
    in_years = films_in_years(cat)
    assert 0 < len(in_years) < 300
    assert all(2007 <= r["year"] <= 2019 for r in in_years)
