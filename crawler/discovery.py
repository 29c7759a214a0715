"""How a crawl finds its films: the year-filtered JSON listing (fast) or the sitemaps named in robots.txt
(robots-friendly), chosen from robots.txt and DOUBAN_DISCOVERY. Pure: text in, a plan or a refusal out."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from protego import Protego

from crawler.setting_rules import RULES
from pipeline.film.records import cut

log = logging.getLogger(__name__)


def read_settings(settings) -> tuple[str, str, str]:
    """(base URL, mode, listing path) from DOUBAN_BASE_URL, DOUBAN_DISCOVERY and DOUBAN_LISTING_PATH, checked
    by their rules (`scrapy crawl` checks them earlier; a crawler started another way gets the same check)."""
    names = ("DOUBAN_BASE_URL", "DOUBAN_DISCOVERY", "DOUBAN_LISTING_PATH")
    for name in names:
        why = RULES[name].problem(settings.get(name))
        if why:
            raise ValueError(f"{name} {why}, got {cut(settings.get(name))!r}")
    base, mode, path = (settings.get(name) for name in names)
    return base.rstrip("/"), mode, path


class DiscoveryBlocked(Exception):
    """robots.txt forbids every path the crawl may take; the message says what and what to try."""


@dataclass
class Plan:
    chosen: str  # "listing" or "sitemap"
    why: str
    sitemaps: list[str]  # the sitemaps robots.txt lets the crawl read (a blocked listing falls back to them)
    crawl_delay: float | None  # robots.txt's Crawl-delay for our user agent (None when not obeyed)


def plan_discovery(robots_txt: str, robots_url: str, *, mode: str, obey: bool, agent: str, listing_url: str,
                   listing_path: str, subject_url: str, url) -> Plan:
    """`url` rebuilds a URL of robots.txt on the crawl's base URL; the others say what the crawl would fetch."""
    robots = Protego.parse(robots_txt)

    def allowed(u: str) -> bool:
        return not obey or robots.can_fetch(u, agent)

    sitemaps = [url(u) for u in robots.sitemaps] or [url("/sitemap_index.xml")]
    listing_ok, sitemap_ok = allowed(listing_url), any(allowed(u) for u in sitemaps)
    if not allowed(subject_url):
        raise DiscoveryBlocked(f"discovery blocked: {robots_url} disallows the subject pages (/subject/...) for "
                               f"user agent {agent!r}; nothing was crawled.")
    if mode in ("auto", "listing") and listing_ok:
        why = ("robots.txt allows it" if obey else "ROBOTSTXT_OBEY is off") + \
              (", and it is the fast path" if mode == "auto" else ", as DOUBAN_DISCOVERY asks")
        chosen = "listing"
    elif mode in ("auto", "sitemap") and sitemap_ok:
        why = (f"robots.txt disallows the listing {listing_path}" if mode == "auto"
               else "DOUBAN_DISCOVERY asks for it") + f"; sitemaps: {', '.join(sitemaps)}"
        chosen = "sitemap"
    else:
        wanted = {"auto": "the listing and the sitemaps", "listing": f"the listing {listing_path}",
                  "sitemap": "the sitemaps"}[mode]
        raise DiscoveryBlocked(
            f"discovery blocked: {robots_url} disallows {wanted} for user agent {agent!r}; nothing was crawled. "
            "Try -s DOUBAN_DISCOVERY=sitemap (robots-friendly), -a ids=..., or -s ROBOTSTXT_OBEY=False only if "
            "you have the site's permission.")
    delay = robots.crawl_delay(agent) if obey else None
    return Plan(chosen, why, sitemaps if sitemap_ok else [], float(delay) if delay else None)


def mark_undiscovered(stats, what: str) -> None:
    """Note a part of discovery given up for good (`year 2012`, `sitemap URL`): `scrapy crawl` then exits 1."""
    stats.set_value("douban/undiscovered", sorted({*stats.get_value("douban/undiscovered", []), what}))


def listing_fallback(mode: str, sitemaps: list[str], listing_path: str, why: str) -> list[str]:
    """The listing failed before it gave a single film (blocked, not a passing fault): the sitemaps to read
    instead, or DiscoveryBlocked when the crawl may not fall back to them."""
    if mode == "auto" and sitemaps:
        log.warning("discovery: sitemap (the listing %s failed: %s); sitemaps: %s", listing_path, why,
                    ", ".join(sitemaps))
        return sitemaps
    raise DiscoveryBlocked(f"discovery blocked: the listing {listing_path} failed before giving any film ({why}); "
                           "nothing was crawled. Try -s DOUBAN_DISCOVERY=sitemap, or later (a ban lifts).")


def coming_lists(robots_txt: str, robots_url: str, *, paths: list[str], obey: bool, agent: str, subject_url: str,
                 url) -> list[str]:
    """The coming-soon list pages (`paths`) robots.txt lets a `coming` crawl read, or DiscoveryBlocked when it
    allows none of them or no subject page. Checked here, before any list is requested, as for the listing."""
    robots = Protego.parse(robots_txt)

    def allowed(u: str) -> bool:
        return not obey or robots.can_fetch(u, agent)

    if not allowed(subject_url):
        raise DiscoveryBlocked(f"discovery blocked: {robots_url} disallows the subject pages (/subject/...) for "
                               f"user agent {agent!r}; nothing was crawled.")
    allowed_paths = [p for p in paths if allowed(url(p))]
    if not allowed_paths:
        raise DiscoveryBlocked(f"discovery blocked: {robots_url} disallows every coming-soon list ({', '.join(paths)}) "
                               f"for user agent {agent!r}; nothing was crawled.")
    for p in paths:
        if p not in allowed_paths:
            log.warning("discovery: %s disallows the coming-soon list %s; it is not read", robots_url, p)
    return allowed_paths
