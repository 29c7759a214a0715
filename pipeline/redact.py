"""Credentials out of URLs before they are shown or logged: the one helper every error line and log uses.

A database or Redis URL carries its password either as userinfo (`scheme://user:PASSWORD@host/...`) or as
a query parameter (`...?password=PASSWORD`, as libpq and redis-py accept); both are masked.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "***"
# Query keys that carry a credential: any key holding one of these (password, sslpassword, client_secret,
# access_token, api_key, ...), case-insensitively. Masking a harmless key costs nothing; missing one leaks.
SECRET_KEY_RE = re.compile(r"pass|pwd|secret|token|api_?key|credential|auth", re.IGNORECASE)
# A URL inside free text: a scheme, "://", and everything up to whitespace or a quote.
URL_IN_TEXT_RE = re.compile(r"""[A-Za-z][A-Za-z0-9+.\-]*://[^\s'"<>]+""")


def mask_url(url) -> str:
    """`url` (a string or an SQLAlchemy URL) with its userinfo password and every credential-bearing query
    value replaced by ***."""
    render = getattr(url, "render_as_string", None)
    text = render(hide_password=False) if render else str(url)
    try:
        parts = urlsplit(text)
    except ValueError:  # not a URL urllib can split (a bad IPv6 host): show only its scheme
        return text.split("://", 1)[0] + "://" + MASK if "://" in text else MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else netloc
    query = "&".join(_mask_pair(pair) for pair in parts.query.split("&")) if parts.query else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _mask_pair(pair: str) -> str:
    key, eq, _ = pair.partition("=")
    decoded = parse_qsl(pair, keep_blank_values=True)
    name = decoded[0][0] if decoded else key
    return f"{key}={MASK}" if eq and SECRET_KEY_RE.search(name) else pair


def mask_text(text: str) -> str:
    """Free text (an error message, a settings dump) with every URL in it masked."""
    return URL_IN_TEXT_RE.sub(lambda m: mask_url(m.group(0)), str(text))

