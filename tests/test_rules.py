"""The cleaning rules as one registry: clean applies it, its report and metrics.json list it, the forecast asks it."""

import json

import pytest

from models.serving.forecast import unscored
from pipeline.commands.metrics import gather
from pipeline.features import rules
from pipeline.features.clean import apply_rules, run_clean
from pipeline.params import CleanConfig, load

PARAMS = load("params.yaml").clean


def test_every_clean_key_is_read_by_a_rule_and_every_rule_key_exists():
    read = {key for rule in rules.RULES for key in rule.keys}
    assert read == set(CleanConfig.model_fields)


def test_names_are_unique_and_metrics_order_is_the_registry_with_guards_last():
    names = [r.name for r in rules.RULES]
    assert len(set(names)) == len(names)
    order = rules.metrics_order()
    assert sorted(order) == sorted(names)
    guards = [r.name for r in rules.RULES if r.guard]
    assert order[len(order) - len(guards):] == guards
    assert [n for n in order if n not in guards] == [n for n in names if n not in guards]
    assert rules.rule("few_raters").name == "few_raters"
    with pytest.raises(KeyError, match="no cleaning rule named 'fewraters'"):
        rules.rule("fewraters")


def test_removed_follows_the_registry(make_film):
    _, removed = apply_rules([make_film(1), make_film(2, votes=3)], PARAMS)
    assert list(removed) == [r.name for r in rules.RULES]
    assert [r["douban_id"] for r in removed["few_raters"]] == [2]


def test_a_rule_added_to_the_registry_is_applied_counted_and_carried_to_metrics(
        stored, db_url, make_film, tmp_path, monkeypatch):
    odd = rules.Rule("odd_id", (), "a test rule: odd subject ids", drops=lambda rec, cfg: rec["douban_id"] % 2 == 1)
    monkeypatch.setattr(rules, "RULES", [*rules.RULES, odd])
    stored([make_film(1), make_film(2), make_film(3), make_film(4, votes=3)])
    table, report = tmp_path / "movies.parquet", tmp_path / "report.json"
    data = run_clean(db_url, PARAMS, table, report)
    written = json.loads(report.read_text())
    assert written == data
    assert list(written["removed"])[-1] == "odd_id"
    assert written["removed"]["odd_id"] == 2 and written["removed"]["few_raters"] == 1 and written["kept"] == 1
    assert written["examples"]["odd_id"] == [f"1 {make_film(1)['title']}", f"3 {make_film(3)['title']}"]
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"split": {"train": 1, "val": 0, "test": 0}}))
    metrics = gather(report, meta, [])
    assert metrics["data"]["removed"]["odd_id"] == 2
    assert list(metrics["data"]["removed"])[-2:] == ["odd_id", "unreadable"]


def test_a_rule_whose_step_sees_the_whole_list(make_film, monkeypatch):
    def all_but_first(records, ctx):
        return records[:1], records[1:]

    step = rules.Rule("all_but_first", (), "a test rule keeping one record", step=all_but_first)
    monkeypatch.setattr(rules, "RULES", [*rules.RULES, step])
    kept, removed = apply_rules([make_film(5), make_film(6), make_film(7)], PARAMS)
    assert [r["douban_id"] for r in kept] == [5]
    assert [r["douban_id"] for r in removed["all_but_first"]] == [6, 7]


def test_a_rule_is_a_predicate_or_a_step_not_both():
    with pytest.raises(TypeError, match="exactly one"):
        rules.Rule("both", (), "", drops=lambda rec, cfg: False, step=lambda records, ctx: (records, []))
    with pytest.raises(TypeError, match="exactly one"):
        rules.Rule("neither", (), "")


def test_the_forecast_reads_no_usable_score_from_few_raters(make_film, monkeypatch):
    params = load("params.yaml")
    films = [make_film(1), make_film(2, votes=3), make_film(3, rating=None, votes=None), {**make_film(4), "rating": 0.0}]  # a 0 as another tool may store it
    assert [r["douban_id"] for r in unscored(films, params)] == [2, 3, 4]
    monkeypatch.setattr(rules, "RULES", [*[r for r in rules.RULES if r.name != "few_raters"], rules.Rule(
        "few_raters", ("min_votes",), "test: only id 1", drops=lambda rec, cfg: rec["douban_id"] == 1)])
    assert [r["douban_id"] for r in unscored(films, params)] == [1]  # the rule alone decides
