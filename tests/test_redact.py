"""Credentials never shown: every URL in an error line or log goes through pipeline.redact."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import KadnError
from pipeline.film import store
from pipeline.redact import MASK, mask_text, mask_url

SECRET = "S3cr3t-pw"
KEYS = ["password", "PASSWORD", "sslpassword", "passwd", "pwd", "secret", "client_secret", "token",
        "access_token", "api_key", "apikey"]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("base", ["postgresql+psycopg://u@db.example/kadn", "redis://h:6379/0",
                                  "rediss://u@h/1", "sqlite:///data/x.sqlite"])
def test_credential_query_values_are_masked(base, key):
    url = f"{base}?sslmode=require&{key}={SECRET}&application_name=kadn"
    shown = mask_url(url)
    assert SECRET not in shown and f"{key}={MASK}" in shown
    assert "sslmode=require" in shown and "application_name=kadn" in shown  # the rest stays readable


@settings(deadline=None)
@given(user=st.text("abcdefgh", min_size=1, max_size=8),
       secret=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=4, max_size=30),
       key=st.sampled_from(KEYS), userinfo=st.booleans())
def test_no_secret_survives_masking(user, secret, key, userinfo):
    encoded = quote("ZQ" + secret, safe="")  # "ZQ": never part of the rest of the URL
    url = (f"postgresql://{user}:{encoded}@h/kadn" if userinfo else f"postgresql://{user}@h/kadn?{key}={encoded}")
    shown = mask_url(url)
    assert encoded not in shown and MASK in shown
    assert encoded not in mask_text(f"cannot open database '{url}': refused")


def test_sqlalchemy_urls_and_plain_urls_are_kept():
    from sqlalchemy.engine import make_url

    assert mask_url(make_url(f"postgresql+psycopg://u:{SECRET}@h/kadn?password={SECRET}")) == \
        f"postgresql+psycopg://u:{MASK}@h/kadn?password={MASK}"
    assert mask_url("https://movie.douban.com/j/x?tags=电影&start=20") == "https://movie.douban.com/j/x?tags=电影&start=20"


def test_an_unsplittable_url_shows_only_its_scheme():
    assert mask_url(f"postgresql://u:{SECRET}@[::1/kadn") == f"postgresql://{MASK}"


def test_store_errors_hide_a_query_password(monkeypatch):
    url = f"postgresql+nosuchdriver://u@127.0.0.1:1/kadn?password={SECRET}"
    with pytest.raises(KadnError) as err:
        store.connect(url)
    assert SECRET not in str(err.value) and "127.0.0.1:1" in str(err.value)



def test_a_refused_connection_is_one_masked_line():
    # psycopg's message carries a second, hint line ("Is the server running...?"): the error keeps the first.
    url = f"postgresql+psycopg://u@127.0.0.1:1/kadn?password={SECRET}"
    with pytest.raises(KadnError) as err:
        store.connect(url)
    assert SECRET not in str(err.value) and "\n" not in str(err.value) and "127.0.0.1" in str(err.value)
