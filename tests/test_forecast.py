"""`kadn forecast`: the store's unrated films, given ids and files scored alike through one scorer; intervals
calibrated out of fold (wider for films of unknown people; coverage measured on films calibration never
saw); the attention weights reported are the pooling's own; bad input gets one line."""

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from crawler.mocksite.catalogue import generate_catalogue, store_catalogue
from models.serving.artifacts import load_model
from models.serving.explain import attention_weights
from models.serving.forecast import best_forward, forecast, select_films
from models.serving.predict import encode_films
from models.stages.evaluate import run_evaluate
from models.training import conformal
from pipeline.cli import main
from pipeline.film import store
from pipeline.film.records import normalise_record
from tests.model_support import fast, fast_params, nan_weights, train_models
from tests.params_support import shipped


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("forecast")
    train_models(folder)
    # The same catalogue (so the models know its people) in a store: its unrated films are the forecast's.
    url = f"sqlite:///{folder / 'store.sqlite'}"
    store_catalogue(generate_catalogue(260, 5), url)
    (folder / "params.yaml").write_text(yaml.safe_dump(fast_params(), allow_unicode=True), encoding="utf-8")
    return folder


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def common_args(folder: Path) -> list[str]:
    return ["--database-url", f"sqlite:///{folder / 'store.sqlite'}", "--models", str(folder / "models"),
            "--params", str(folder / "params.yaml")]


def film(douban_id, **fields):
    base = {"douban_id": douban_id, "title": f"新片{douban_id}", "directors": ["无名导演"], "writers": ["无名编剧"],
            "actors": ["无名演员甲", "无名演员乙", "无名演员丙"], "genres": ["剧情"], "countries": ["中国大陆"],
            "languages": ["汉语普通话"], "runtime_min": 104, "release_date": "2019-03-08"}
    return {**base, **fields}


def known_people(folder: Path) -> dict:
    """A director, a writer and three actors the saved K-ADN knows, as record fields."""
    vocab = json.loads((folder / "models" / "kadn" / "vocab.json").read_text())["groups"]
    fields = {}
    for group, n in (("directors", 1), ("writers", 1), ("actors", 3)):
        tokens = list(vocab[group])[:n]
        fields[group] = [t[5:] if t.startswith("name:") else f"某人{i}" for i, t in enumerate(tokens)]
        fields[group[:-1] + "_ids"] = [t[3:] if t.startswith("id:") else None for t in tokens]
    return fields


def test_store_path_scores_the_unrated_films_and_the_file_path_scores_them_alike(trained, tmp_path, capsys):
    params = fast()
    films, _ = select_films(params, None, None, f"sqlite:///{trained / 'store.sqlite'}")
    assert films and all(f["rating"] is None or f["votes"] < params.clean.min_votes for f in films)
    stored = store.load_records(store.connect(f"sqlite:///{trained / 'store.sqlite'}", create=False))
    assert len(films) < len(stored)  # the rated films are left out
    ids = [f["douban_id"] for f in films]
    # The same films through `kadn export` and the file path (the importer's readers).
    code, _, _ = run_cli(["export", "--database-url", f"sqlite:///{trained / 'store.sqlite'}", "-o",
                          str(tmp_path / "all.jsonl")], capsys)
    assert code == 0
    lines = [json.loads(x) for x in (tmp_path / "all.jsonl").read_text(encoding="utf-8").splitlines()]
    (tmp_path / "unrated.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines
                                                    if r["douban_id"] in set(ids)), encoding="utf-8")
    for model in ("kadn", "ridge"):
        by_store = forecast(films, model, trained / "models", params)
        by_file = forecast(select_films(params, tmp_path / "unrated.jsonl", None, None)[0], model,
                           trained / "models", params)
        by_ids = forecast(select_films(params, None, ids[::-1], f"sqlite:///{trained / 'store.sqlite'}")[0],
                          model, trained / "models", params)
        as_dict = {r["douban_id"]: (r["predicted"], r["low"], r["high"]) for r in by_file}
        assert [r["douban_id"] for r in by_store] == ids
        assert {r["douban_id"]: (r["predicted"], r["low"], r["high"]) for r in by_store} == as_dict
        assert {r["douban_id"]: (r["predicted"], r["low"], r["high"]) for r in by_ids} == as_dict
        assert len(set(as_dict.values())) > 1


def test_unknown_people_get_a_wider_interval(trained, tmp_path):
    path = tmp_path / "two.jsonl"
    path.write_text(json.dumps(film(1), ensure_ascii=False) + "\n" +
                    json.dumps(film(2, **known_people(trained)), ensure_ascii=False) + "\n", encoding="utf-8")
    for model in ("kadn", "ridge"):
        stranger, known = forecast(select_films(fast(), path, None, None)[0], model, trained / "models", fast())
        assert stranger["known_share"] == 0 and known["known_share"] == 1
        assert stranger["high"] - stranger["low"] > known["high"] - known["low"]
        assert stranger["low"] <= stranger["predicted"] <= stranger["high"]
        assert "3 of 3 actors unknown to the model: 无名演员甲, 无名演员乙, 无名演员丙" in stranger["unknown_text"]
        assert "actors unknown" not in known["unknown_text"]


def test_calibration_bins_merge_thin_ones_and_never_narrow_for_less_known_films():
    rng = np.random.default_rng(0)
    cfg = shipped("forecast", level=0.8, known_edges=[0.25, 0.5, 0.75], min_bin=30)
    known = np.concatenate([np.zeros(200), np.full(200, 0.6), np.full(10, 0.9)])
    residuals = np.concatenate([rng.normal(0, 2.0, 200), rng.normal(0, 0.5, 200), rng.normal(0, 5.0, 10)])
    cal = conformal.calibrate(residuals, known, cfg)
    # The empty 0.25-0.5 bin and the 10 films above 0.75 join a neighbour: every bin has 30 residuals or more.
    assert cal.edges == [0.0, 0.5, 1.0] and cal.counts == [200, 210]
    wide, narrow = cal.half_width(np.array([0.0, 0.6]))
    assert wide > 2 * narrow  # about 1.28 * 2.0 against 1.28 * 0.5
    assert 0.75 <= (np.abs(residuals[:200]) <= wide).mean() <= 0.85
    # Films knowing nothing that miss less than half-known ones share one bin with them: one quantile of
    # the pooled residuals, never a narrower interval for the less-known films.
    known = np.concatenate([np.zeros(100), np.full(100, 0.4), np.full(100, 0.9)])
    residuals = np.concatenate([rng.normal(0, 1.0, 100), rng.normal(0, 1.5, 100), rng.normal(0, 0.3, 100)])
    cal = conformal.calibrate(residuals, known, cfg)
    assert cal.edges == [0.0, 0.75, 1.0] and cal.counts == [200, 100]
    pooled = conformal.conformal_quantile(np.abs(residuals[:200]), 0.8)
    assert cal.half_width(np.array([0.0]))[0] == pytest.approx(pooled, abs=1e-6)
    assert np.all(np.diff(cal.half_widths) < 0)


def test_cross_conformal_coverage_never_calibrates_on_the_fold_it_scores():
    # Fold 0's films miss by 3 points, fold 1's by 0.1. Calibrated on the other fold alone, fold 0 gets
    # +-0.1 and is never covered, fold 1 gets +-3 and always is; calibrated on all films (fold 0 holding half
    # of the residuals), every film would get +-3 and be covered.
    n = 100
    data = {"repeat": np.zeros(2 * n, np.int32), "fold": np.repeat([0, 1], n).astype(np.int32),
            "known": np.full(2 * n, 0.5), "y": np.zeros(2 * n), "split": np.zeros(2 * n, np.int8),
            "pred_out": np.concatenate([np.full(n, 3.0), np.full(n, 0.1)])}
    cv = conformal.cross_conformal(data, "out", shipped("forecast", level=0.8))
    assert cv["cv_coverage"] == 0.5
    assert cv["cv_mean_width"] == pytest.approx((2 * 0.1 + 2 * 3.0) / 2)


def test_evaluate_reports_intervals_calibrated_without_test_films(trained, tmp_path):
    params = fast_params()
    params["models"] = {"baselines": ["ridge"], "nets": ["kadn"]}

    def interval(models_dir):
        fragment = run_evaluate(fast(params), trained / "enc", models_dir, tmp_path / "m.json", tmp_path / "plots",
                                None, None)
        return {m: fragment["models"][m]["interval"] for m in ("kadn", "kadn_teacher", "ridge")}

    before = interval(trained / "models")
    for m in before.values():
        assert m["level"] == 0.8 and 0 < m["coverage"] <= 1 and m["mean_width"] > 0 and 0 < m["cv_coverage"] <= 1
    # Spoil the test films' out-of-fold residuals: the test-split figures must not move (calibration never
    # reads them), while CV's intervals, calibrated on every other fold's films, widen.
    copy = tmp_path / "models"
    for name in ("kadn", "ridge"):
        (copy / name).mkdir(parents=True)
        for f in (trained / "models" / name).iterdir():
            (copy / name / f.name).write_bytes(f.read_bytes())
        data = conformal.load(copy / name)
        test = data["split"] == 2
        for key in [k for k in data if k.startswith("pred_")]:
            data[key] = np.where(test, data["y"] + 9.0, data[key])
        np.savez(copy / name / conformal.FILE, **data)
    after = interval(copy)
    for m in before:
        assert {k: after[m][k] for k in ("coverage", "mean_width")} == \
               {k: before[m][k] for k in ("coverage", "mean_width")}
        assert after[m]["cv_mean_width"] > before[m]["cv_mean_width"]


def test_attention_weights_are_the_poolings_and_move_when_a_person_is_swapped(trained):
    loaded = load_model(trained / "models", "kadn")
    net = loaded.members("student")[0]
    people = known_people(trained)
    films = [film(1, **people), film(2, **{**people, "actors": ["无名演员"] + people["actors"][1:],
                                             "actor_ids": [None] + people["actor_ids"][1:]})]
    x, _ = encode_films(films, loaded.vocab)
    weights = attention_weights(net, x)
    features = net.features
    pooled = features({g: torch.from_numpy(v.astype(np.int64)) for g, v in x.items()})
    table = features.embedding.weight.detach()
    for k, g in enumerate(features.groups):
        ids = torch.from_numpy(x[g].astype(np.int64))
        rows = torch.where(ids > 0, ids + features.offsets[k], 0)
        w = torch.from_numpy(np.nan_to_num(weights[g])).float()
        assert torch.allclose((table[rows] * w.unsqueeze(-1)).sum(1), pooled[:, k], atol=1e-5)
        assert np.isnan(weights[g][ids.numpy() == 0]).all() and not np.isnan(weights[g][ids.numpy() > 0]).any()
    # Swapping the first actor for a stranger changes the weights of the actors both films share.
    assert not np.allclose(weights["actors"][0, 1:3], weights["actors"][1, 1:3])
    rows = forecast(films, "kadn", trained / "models", fast())
    shown = rows[0]["people"]
    assert set(shown) == {"directors", "writers", "actors"} and len(shown["actors"]) == 3
    assert {p["name"] for p in shown["actors"]} == set(people["actors"])
    assert all("films" in p and "mean_score" in p for p in shown["actors"])  # track records are fed
    by_name = {p["name"]: p["weight"] for p in shown["actors"]}
    assert [by_name[n] for n in people["actors"]] == pytest.approx(weights["actors"][0, :3], abs=1e-4)
    assert all("weight" not in p for p in forecast(films, "ridge", trained / "models", fast())[0]["people"]["actors"])


def test_cli_writes_each_format_and_prints_a_table(trained, tmp_path, capsys):
    args = common_args(trained)
    code, out, err = run_cli(["forecast", *args, "--explain"], capsys)
    assert code == 0 and "80% interval" in out.splitlines()[0] and "unknown:" in out and "\n    actors: " in out
    assert "effect of knowing: directors " in out
    n = len([line for line in out.splitlines()[1:] if not line.startswith("    ")])
    for suffix in (".jsonl", ".csv", ".parquet"):
        target = tmp_path / f"out{suffix}"
        explained = ["--explain"] if suffix == ".jsonl" else []
        code, _, err = run_cli(["forecast", *args, "-o", str(target), *explained], capsys)
        assert code == 0, err
        if suffix == ".jsonl":
            rows = [json.loads(x) for x in target.read_text(encoding="utf-8").splitlines()]
            assert {"people", "effects", "unknown_text", "low", "high", "level"} <= set(rows[0])
        elif suffix == ".csv":
            rows = list(csv.DictReader(target.open(encoding="utf-8")))
            assert "unknown_text" in rows[0] and "effects" not in rows[0]  # the effects on --explain only
            assert float(rows[0]["low"]) <= float(rows[0]["predicted"]) <= float(rows[0]["high"])
        else:
            rows = pd.read_parquet(target).to_dict("records")
        assert len(rows) == n


@pytest.mark.parametrize("extra, message", [
    (["--ids", "12,abc"], "--ids: 'abc' is not a Douban subject id"),
    (["--ids", "999999999"], "not stored in sqlite:///"),
    (["-o", "out.txt"], "unknown output format '.txt'"),
    (["--model", "nope"], "unknown model 'nope'"),
    # A file named is a file wanted: only the default forward.npz may be absent (out-of-fold residuals then).
    (["--forward", "no-such-forward.npz"], "--forward no-such-forward.npz: no such file"),
])
def test_bad_arguments_get_one_line(trained, tmp_path, capsys, extra, message):
    code, out, err = run_cli(["forecast", *common_args(trained), *extra], capsys)
    assert code == 1 and out == "" and message in err and len(err.strip().splitlines()) == 1
    if "not stored" in message:
        assert "scrapy crawl douban -a ids=999999999" in err


def test_a_forward_file_that_is_no_npz_archive_gets_one_line(trained, tmp_path, capsys):
    bad = tmp_path / "forward.npz"
    bad.write_text("not an archive\n", encoding="utf-8")
    code, out, err = run_cli(["forecast", *common_args(trained), "--forward", str(bad)], capsys)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert f"{bad}: not a forward.npz" in err and "kadn backtest" in err


def test_a_bad_film_in_a_file_gets_one_line_naming_it_and_writes_nothing(trained, tmp_path, capsys):
    bad = tmp_path / "films.jsonl"
    bad.write_text(json.dumps(film(1)) + "\n" + json.dumps(film(2, runtime_min="long" * 40)) + "\n", encoding="utf-8")
    target = tmp_path / "out.csv"
    code, out, err = run_cli(["forecast", str(bad), *common_args(trained), "-o", str(target)], capsys)
    assert code == 1 and not target.exists()
    assert err.count("\n") == 1 and f"{bad}:2" in err and "runtime_min" in err and "longlonglong" not in err[200:]
    assert len(err) < 300


def test_a_model_folder_without_calibration_gets_one_line_to_retrain(trained, tmp_path, capsys):
    for f in (trained / "models" / "ridge").iterdir():
        (tmp_path / "models" / "ridge").mkdir(parents=True, exist_ok=True)
        if f.name != conformal.FILE:
            (tmp_path / "models" / "ridge" / f.name).write_bytes(f.read_bytes())
    args = [*common_args(trained)[:2], "--models", str(tmp_path / "models"), "--params", str(trained / "params.yaml")]
    code, out, err = run_cli(["forecast", *args, "--model", "ridge"], capsys)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "oof.npz: missing" in err and "retrain with `kadn train ridge`" in err


def test_every_import_layout_is_read_by_the_importers_readers(trained, tmp_path):
    people = known_people(trained)
    names = {g: people[g] for g in ("directors", "writers", "actors")}  # CC0 rows carry names, no ids
    record = film(9000001, **names)
    (tmp_path / "f.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    with (tmp_path / "f.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["movie_id", "title", "rating", "total_ratings", "directors", "screenwriters", "actors",
                         "genres", "countries", "languages", "runtime", "release_date"])
        writer.writerow([9000001, record["title"], "", "", "/".join(names["directors"]), "/".join(names["writers"]),
                         "/".join(names["actors"]), "剧情", "中国大陆", "汉语普通话", "104分钟", "2019-03-08"])
    by_json, by_csv = (forecast(select_films(fast(), tmp_path / f, None, None)[0], "kadn", trained / "models",
                                fast())[0] for f in ("f.jsonl", "f.csv"))
    assert {k: by_csv[k] for k in ("douban_id", "predicted", "low", "high", "unknown_text")} == \
           {k: by_json[k] for k in ("douban_id", "predicted", "low", "high", "unknown_text")}


def test_a_model_scoring_nan_is_refused_naming_the_film_and_writes_nothing(trained, tmp_path, capsys):
    shutil.copytree(trained / "models", tmp_path / "models")
    nan_weights(tmp_path / "models" / "kadn")
    args = [*common_args(trained), "--models", str(tmp_path / "models")]
    target = tmp_path / "out.jsonl"
    code, out, err = run_cli(["forecast", *args, "-o", str(target)], capsys)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert re.search(r"model kadn scores film 1 \(douban_id \d+\) as nan; retrain with `kadn train kadn`", err)
    assert not target.exists()


def own_store(trained: Path, tmp_path: Path, *films: dict) -> str:
    """A copy of the fixture's store (so other tests never see this test's writes), with `films` added."""
    shutil.copyfile(trained / "store.sqlite", tmp_path / "store.sqlite")
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    if films:
        store.upsert_records(store.connect(url), [normalise_record(f) for f in films], source="test")
    return url


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_a_stored_film_opening_in_2026_is_scored_and_since_narrows_to_it(trained, tmp_path, capsys):
    url = own_store(trained, tmp_path, film(9100001, release_date="2026-01-16"))
    args = ["--database-url", url, "--models", str(trained / "models"), "--params", str(trained / "params.yaml")]
    code, _, err = run_cli(["forecast", *args, "-o", str(tmp_path / "all.jsonl")], capsys)
    assert code == 0, err
    every = read_jsonl(tmp_path / "all.jsonl")
    assert 9100001 in [r["douban_id"] for r in every] and len(every) > 1  # beside the catalogue's unrated films
    code, _, err = run_cli(["forecast", *args, "--since", "2026-01", "-o", str(tmp_path / "new.jsonl")], capsys)
    assert code == 0, err
    (row,) = read_jsonl(tmp_path / "new.jsonl")
    assert row["douban_id"] == 9100001 and row["low"] <= row["predicted"] <= row["high"]
    code, out, err = run_cli(["forecast", *args, "--since", "2027"], capsys)
    assert code == 0 and out == "" and "none released since 2027 lacks a usable score" in err
    code, out, err = run_cli(["forecast", *args, "--since", "soon"], capsys)
    assert code == 1 and "--since: cannot parse 'soon' as a date" in err


def test_a_file_without_douban_ids_is_scored_row_by_row_and_labelled_by_line(trained, tmp_path, capsys):
    people = known_people(trained)
    slate = tmp_path / "slate.csv"
    with slate.open("w", encoding="utf-8", newline="") as fh:  # our CSV layout, with no douban_id column
        writer = csv.writer(fh)
        writer.writerow(["title", "directors", "director_ids", "actors", "actor_ids", "genres", "release_date"])
        for k in (0, 1):  # two castings of one film: the second swaps the lead for a stranger
            actors, ids = people["actors"][k:], people["actor_ids"][k:]
            writer.writerow(["待定片", *(json.dumps(v, ensure_ascii=False) for v in (
                people["directors"], people["director_ids"], ["无名演员甲"] * k + actors, [None] * k + ids)),
                '["剧情"]', "2026-09-30"])
    jsonl = tmp_path / "slate.jsonl"
    jsonl.write_text(json.dumps(film(None), ensure_ascii=False) + "\n" + json.dumps(film(7), ensure_ascii=False)
                     + "\n", encoding="utf-8")
    code, out, err = run_cli(["forecast", str(slate), *common_args(trained), "--explain"], capsys)
    assert code == 0, err
    assert [line.split()[:2] for line in out.splitlines() if line.startswith("line")] == [["line", "2"], ["line", "3"]]
    rows = forecast(select_films(fast(), slate, None, None)[0], "kadn", trained / "models", fast())
    assert [(r["douban_id"], r["line"], r["title"]) for r in rows] == [(None, 2, "待定片"), (None, 3, "待定片")]
    assert rows[0]["predicted"] != rows[1]["predicted"]  # each row scored as written, not merged
    assert all(r["low"] <= r["predicted"] <= r["high"] for r in rows)
    rows = forecast(select_films(fast(), jsonl, None, None)[0], "ridge", trained / "models", fast())
    assert [(r["douban_id"], r["line"]) for r in rows] == [(None, 1), (7, 2)]


def strangers(fields: dict, group: str) -> dict:
    """The fields with every person of `group` replaced by one no training film has."""
    names = [f"陌生人{j}" for j in range(len(fields[group]))]
    return {**fields, group: names, group[:-1] + "_ids": [None] * len(names)}


@pytest.mark.parametrize("model", ["kadn", "ridge"])
def test_effects_are_the_forecasts_change_when_a_group_or_a_person_is_unknown(trained, model):
    people = known_people(trained)
    known = film(1, **people)
    (row,) = forecast([known], model, trained / "models", fast())
    without_actors = forecast([film(1, **strangers(people, "actors"))], model, trained / "models", fast())[0]
    assert row["effects"]["actors"] == pytest.approx(row["predicted"] - without_actors["predicted"], abs=2e-3)
    lead = people["actors"][0]
    first_unknown = {**people, "actors": ["陌生人"] + people["actors"][1:],
                     "actor_ids": [None] + people["actor_ids"][1:]}
    without_lead = forecast([film(1, **first_unknown)], model, trained / "models", fast())[0]
    (shown,) = [p for p in row["people"]["actors"] if p["name"] == lead]
    assert shown["effect"] == pytest.approx(row["predicted"] - without_lead["predicted"], abs=2e-3)
    assert shown["embedding"] and any(p["effect"] != 0 for p in row["people"]["actors"])
    # People are shown by the size of their effect.
    sizes = [abs(p["effect"]) for p in row["people"]["actors"]]
    assert sizes == sorted(sizes, reverse=True)


def test_a_person_in_too_few_training_films_is_described_as_such_not_as_unknown(trained):
    vocab = json.loads((trained / "models" / "kadn" / "vocab.json").read_text())
    # A director with a track record (a scored training film) but no id of their own (under min_count).
    sparse = next(t for t in {t for films in vocab["track"]["people"]["directors"] for t in films}
                  if t not in vocab["groups"]["directors"] and t.startswith("id:"))
    fields = {"directors": ["某导演"], "director_ids": [sparse[3:]]}
    (row,) = forecast([film(1, **fields)], "kadn", trained / "models", fast())
    assert "director unknown to the model" not in row["unknown_text"]
    assert "1 of 1 director in too few training films for an embedding of their own" in row["unknown_text"]
    (shown,) = row["people"]["directors"]
    assert not shown["embedding"] and shown["films"] >= 1 and shown["mean_score"] is not None


def test_swap_shows_both_forecasts_and_records_only_the_real_one(trained, tmp_path, capsys):
    people = known_people(trained)
    url = own_store(trained, tmp_path, normalise_record(film(9100009, **people, release_date="2026-02-01")))
    args = ["--database-url", url, "--models", str(trained / "models"), "--params", str(trained / "params.yaml")]
    lead = people["actors"][0]
    code, out, err = run_cli(["forecast", "--ids", "9100009", *args, "--swap", f"actors:{lead}=陌生人",
                              "-o", str(tmp_path / "w.jsonl")], capsys)
    assert code == 0, err
    before, after = read_jsonl(tmp_path / "w.jsonl")
    by_hand = forecast([film(9100009, **{**people, "actors": ["陌生人"] + people["actors"][1:],
                                         "actor_ids": [None] + people["actor_ids"][1:]}, release_date="2026-02-01")],
                       "kadn", trained / "models", fast())[0]
    assert after["predicted"] == by_hand["predicted"] and after["what_if"] == f"actors:{lead}=陌生人"
    assert after["change"] == pytest.approx(after["predicted"] - before["predicted"], abs=1e-9)
    assert "what_if" not in before and after["change"] != 0
    (recorded,) = [r for r in store.load_forecasts(store.connect(url, create=False)) if r["douban_id"] == 9100009]
    assert recorded["score"] == before["predicted"]
    code, out, err = run_cli(["forecast", "--ids", "9100009", *args, "--no-record", "--swap", "actors:无此人=某人"],
                             capsys)
    assert code == 1 and "lists no such actor" in err and out == ""


def test_the_words_and_the_people_shown_never_contradict_each_other(trained):
    # Training films too: a person whose one training film is the film itself has no record for it.
    films = store.load_records(store.connect(f"sqlite:///{trained / 'store.sqlite'}", create=False))[:60]
    kinds = set()
    for row in forecast(films, "kadn", trained / "models", fast()):
        clauses = row["unknown_text"].split("; ")
        for people in row["people"].values():
            for p in people:
                if p["embedding"]:
                    continue
                kinds.add(bool(p["films"]))
                (said,) = [c for c in clauses if p["name"] in c.partition(": ")[2].split(", ")
                           or f"{p['name']} (" in c]
                assert ("too few training films" in said) == bool(p["films"]), (p, said)
                assert ("unknown to the model" in said) != bool(p["films"]), (p, said)
    assert kinds == {True, False}  # both kinds were met


def test_intervals_are_calibrated_on_the_backtests_forward_residuals_when_given(trained, tmp_path):
    films = select_films(fast(), None, None, f"sqlite:///{trained / 'store.sqlite'}")[0][:5]
    out_of_fold = forecast(films, "kadn", trained / "models", fast(), with_reasons=False,
                           forward=tmp_path / "absent.npz")
    assert out_of_fold == forecast(films, "kadn", trained / "models", fast(), with_reasons=False)
    n = 200  # forward residuals of 1.5 for every known share: every interval is the score +- 1.5
    np.savez(tmp_path / "forward.npz", model=np.array(["kadn"] * n + ["ridge"] * n), year=np.full(2 * n, 2019),
             douban_id=np.arange(2 * n), known=np.tile(np.linspace(0, 1, n), 2), pred=np.full(2 * n, 7.0),
             y=np.r_[np.full(n, 5.5), np.full(n, 7.0)])
    rows = forecast(films, "kadn", trained / "models", fast(), with_reasons=False, forward=tmp_path / "forward.npz")
    for row, before in zip(rows, out_of_fold):
        assert row["predicted"] == before["predicted"]
        assert row["low"] == pytest.approx(max(0.0, row["predicted"] - 1.5), abs=2e-3)
        assert row["high"] == pytest.approx(min(10.0, row["predicted"] + 1.5), abs=2e-3)
    ridge = forecast(films, "ridge", trained / "models", fast(), with_reasons=False, forward=tmp_path / "forward.npz")
    assert all(r["low"] == r["high"] == r["predicted"] for r in ridge)  # its own forward residuals: all 0


def test_the_default_model_is_the_best_single_model_forward(trained, tmp_path, capsys):
    models = trained / "models"
    backtest = tmp_path / "backtest.json"
    trained_names = [m for m in ("ridge", "kadn", "mean") if (models / m).is_dir()]
    assert len(trained_names) >= 2
    worst, best = trained_names[0], trained_names[1]
    figures = {worst: {"mean": {"mae": 0.9}}, best: {"mean": {"mae": 0.7}}, "blend": {"mean": {"mae": 0.5}},
               "svm_untrained": {"mean": {"mae": 0.1}}}
    backtest.write_text(json.dumps({"backtest": figures}), encoding="utf-8")
    name, why = best_forward(models, backtest)
    assert name == best and "0.700" in why  # rows saved nowhere here (no blend, unknown, untrained) never are
    figures[worst]["mean"]["mae"] = 0.6
    backtest.write_text(json.dumps({"backtest": figures}), encoding="utf-8")
    assert best_forward(models, backtest)[0] == worst
    assert best_forward(models, tmp_path / "absent.json")[0] == "kadn"
    # The command says which model it chose and why, in its closing line.
    args = [*common_args(trained), "--no-record", "-o", str(tmp_path / "out.jsonl")]
    code, _, err = run_cli(["forecast", *args], capsys)
    assert code == 0 and "model kadn: no forward backtest" in err, err
