"""The crawl's settings table: every default passes, every value out of range or of a wrong scheme is refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scrapy.settings import Settings
from scrapy.utils.misc import load_object

from crawler.setting_rules import RULES, check

NUMBERS = {name: rule for name, rule in RULES.items() if rule.kind in ("int", "float")}


def project_settings(**overrides) -> Settings:
    s = Settings()
    s.setmodule("crawler.settings", priority="project")
    s.setdict(overrides, priority="cmdline")
    return s


def test_defaults_pass_and_every_rule_names_a_known_setting():
    check(project_settings(), env={})
    s = project_settings()
    assert all(s.get(name) is not None for name in RULES if name != "REDIS_URL")  # no typo in the table


@settings(deadline=None)  # a loaded CI machine must not fail it
@given(st.sampled_from(sorted(NUMBERS)), st.data())
def test_numbers_inside_the_range_pass_and_outside_are_refused(name, data):
    rule = NUMBERS[name]
    if rule.kind == "int":
        inside = st.integers(int(rule.low) + rule.above, int(rule.high))
        outside = st.integers(max_value=int(rule.low) - (not rule.above)) | st.integers(min_value=int(rule.high) + 1)
    else:
        inside = st.floats(rule.low, rule.high, exclude_min=rule.above)
        outside = (st.floats(max_value=rule.low, exclude_max=not rule.above) | st.floats(min_value=rule.high,
                   exclude_min=True) | st.sampled_from([float("nan"), float("inf")]))
    good, bad = data.draw(inside), data.draw(outside)
    check(project_settings(**{name: str(good)}), env={})
    with pytest.raises(ValueError, match=rf"^bad setting -s {name}=.*: {name} must be"):
        check(project_settings(**{name: str(bad)}), frozenset({name}), env={})


@pytest.mark.parametrize("name, value, message", [
    ("DOUBAN_BASE_URL", "ftp://mirror.example/", "must be an absolute http or https URL"),
    ("DOUBAN_BASE_URL", "movie.douban.com", "must be an absolute http or https URL"),
    ("DOUBAN_BASE_URL", "http://", "must be an absolute http or https URL"),
    ("DOUBAN_BASE_URL", "http://u:hunter2@mirror.example/", "must not hold a user or password"),
    ("REDIS_URL", "http://h:6379/0", "must be an absolute redis or rediss or unix URL"),
    ("DOUBAN_DISCOVERY", "bogus", "must be one of auto, listing, sitemap"),
    ("DOUBAN_LISTING_PATH", "j/x", "must be a path starting with /"),
    ("DOUBAN_BAN_LOCATION_RE", "sec(", "must be a regular expression"),
    ("DOUBAN_BAN_PAUSE", "-5", "must be at least 0"),
    ("CONCURRENT_REQUESTS", "-1", "must be at least 1"),
    ("DOWNLOAD_TIMEOUT", "0", "must be more than 0"),
    ("DOUBAN_BAN_CODES", "403,abc", "must be HTTP status codes"),
    ("RETRY_HTTP_CODES", "500,99", "must be HTTP status codes"),
])
def test_bad_values_are_refused_in_one_line(name, value, message):
    with pytest.raises(ValueError, match=message) as err:
        check(project_settings(**{name: value}), frozenset({name}), env={})
    assert "\n" not in str(err.value) and "hunter2" not in str(err.value)


def test_environment_urls_are_checked_and_masked():
    with pytest.raises(ValueError, match="REDIS_URL must be") as err:
        check(project_settings(), env={"REDIS_URL": "http://u:hunter2@h/0?password=hunter2"})
    assert "hunter2" not in str(err.value) and "-s REDIS_URL" not in str(err.value)
    check(project_settings(), env={"REDIS_URL": "rediss://h:6380/1"})
    check(project_settings(DOUBAN_BAN_CODES="403, 429", RETRY_HTTP_CODES=[500, 503]), env={})


@pytest.mark.parametrize("component", ["ITEM_PIPELINES", "SPIDER_MIDDLEWARES", "DOWNLOADER_MIDDLEWARES",
                                       "EXTENSIONS", "ADDONS"])
def test_every_component_path_in_the_settings_loads(component):
    paths = project_settings().getdict(component)
    assert paths or component != "ITEM_PIPELINES"  # the store writer is always on
    for path in paths:
        assert isinstance(load_object(path), type), path
