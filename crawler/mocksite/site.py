"""`kadn mock-douban`: a local stand-in for movie.douban.com serving the synthetic catalogue.

It serves subject pages in Douban's markup (our own markup, written from a description of Douban's pages,
with every variant the parser handles), the year-filtered JSON listing under /j/, sitemaps, robots.txt, and
with `coming=N` the coming-soon lists (/coming, /cinema/later/CITY/) of N films about to open, which
`release` (or POST /_mock/release/ID) turns into rated films, on 127.0.0.1 only. Fault knobs: a share of 5xx answers, slow answers, truncated pages, permanently broken
pages (a changed layout), a ban window (403/418/429 and redirects to a sec/login page), a window in which
the listing answers Douban's rate-limit JSON, listing pages that are not the listing's JSON or hold an
entry without an id, and an unreadable robots.txt.

A development tool (tests and benchmarks serve it; the crawl never imports it). The stdlib ThreadingHTTPServer is enough here: pages are rendered from memory in well
under a millisecond, HTTP/1.1 keep-alive lets the crawler reuse connections, and it adds no dependency.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import defaultdict
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from crawler.mocksite.catalogue import YEAR_RANGE, coming_films, films, films_in_years, generate_catalogue
from pipeline.errors import KadnError
from pipeline.film.records import ID_FIELD

log = logging.getLogger(__name__)

# Absolute links in the mock's pages, robots.txt, sitemaps and listing use this never-resolving host, as
# the real pages use movie.douban.com: a crawler that follows them instead of its base URL fails loudly.
CANONICAL = "https://movie.douban.invalid"
LISTING_PATH = "/j/new_search_subjects"
PAGE_SIZE = 20
SITEMAP_CHUNK = 1000
ROBOTS = {
    "default": "User-agent: *\nDisallow: /subject_search\nDisallow: /search\nDisallow: /misc/\n",
    "no-listing": "User-agent: *\nDisallow: /subject_search\nDisallow: /search\nDisallow: /j/\n",
    "closed": "User-agent: *\nDisallow: /\n",
    "open": "User-agent: *\nDisallow:\n",
    "no-subjects": "User-agent: *\nDisallow: /subject/\n",
    "crawl-delay": "User-agent: *\nDisallow: /subject_search\nCrawl-delay: 1\n",
    "no-cinema": "User-agent: *\nDisallow: /subject_search\nDisallow: /cinema/\n",
}
BAN_KINDS = ("403", "418", "429", "sec", "login")
# The cities with a /cinema/later/CITY/ page, each listing a stable share of the coming films (index -> city).
CITIES = {"beijing": lambda k: k % 2 == 1, "shanghai": lambda k: k % 3 == 0, "guangzhou": lambda k: k % 5 == 0}
# What Douban's JSON endpoints answer a throttled IP (HTTP 200), as public crawlers of the listing record it.
THROTTLED = {"msg": "检测到有异常请求从您的IP发出，请登录再试!", "r": 1}
# What a listing page answers with HTTP 200 when it is not the listing (--listing-garbage).
GARBAGE = {"html": ("text/html", "<!DOCTYPE html><html><body><p>服务暂时不可用</p></body></html>\n"),
           "null": ("application/json", '{"data": null}')}
# The years the real listing knows; any other year_range gets an empty page (and costs nothing).
LISTING_YEARS = (1888, 2100)


def _check_knobs(rate: bool = False, **knobs) -> None:
    """Counts must be >= 0 and rates within 0..1: one line naming the option, not a traceback later."""
    for name, value in knobs.items():
        ok = 0 <= value <= 1 if rate else value >= 0
        if not ok:
            option = "--" + name.replace("_", "-")
            raise KadnError(f"{option} must be {'a share from 0 to 1' if rate else 'zero or more'}, got {value!r}")


def _share(key: str, seed: int, rate: float) -> bool:
    """A stable pseudo-random choice of a `rate` share of keys (the same page always misbehaves)."""
    if rate <= 0:
        return False
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def _person_link(name: str, pid: str | None, rel: str = "") -> str:
    rel_attr = f' rel="{rel}"' if rel else ""
    if pid is None:
        href = f"/subject_search?search_text={quote(name)}"
    elif int(pid) >= 27_000_000:
        href = f"https://www.douban.com/personage/{pid}/"
    else:
        href = f"/celebrity/{pid}/"
    return f'<a href="{href}"{rel_attr}>{escape(name)}</a>'


def _ld_person(name: str, pid: str | None) -> dict:
    url = f"/celebrity/{pid}/" if pid else f"/subject_search?search_text={quote(name)}"
    return {"@type": "Person", "url": url, "name": name}


def render_subject(entry: dict) -> str:
    """One catalogue entry as a subject page. Which markup variant a page uses follows from its id."""
    did = entry["douban_id"]
    v = did % 20  # the variant selector: each variant covers a stable share of pages
    is_tv = entry["kind"] == "tv"
    lines = []
    for label, role, rel in (("导演", "directors", "v:directedBy"), ("编剧", "writers", ""),
                             ("主演", "actors", "v:starring")):
        names, ids = entry[role], entry[ID_FIELD[role]]
        if not names:
            continue
        links = [_person_link(n, p, rel) for n, p in zip(names, ids)]
        if role == "actors" and len(links) > 5:
            # Long casts: every name in its own span, the later ones hidden, plus a 更多 toggle.
            spans = [f"<span>{a} / </span>" if i < 5 else f'<span style="display: none;">{a} / </span>'
                     for i, a in enumerate(links[:-1])]
            spans.append(f'<span style="display: none;">{links[-1]}</span>')
            body = "".join(spans) + '<a href="javascript:;" class="more-actor" title="更多主演">更多...</a>'
        else:
            body = " / ".join(links)
        cls = ' class="actor"' if role == "actors" else ""
        lines.append(f"<span{cls}><span class='pl'>{label}</span>: <span class='attrs'>{body}</span></span><br/>")
    genres_in_info = v != 7  # variant 7: #info lacks 类型, JSON-LD has the genres
    if entry["genres"] and genres_in_info:
        lines.append('<span class="pl">类型:</span> '
                     + " / ".join(f'<span property="v:genre">{escape(g)}</span>' for g in entry["genres"]) + "<br/>")
    if entry["countries"]:
        lines.append(f'<span class="pl">制片国家/地区:</span> {escape(" / ".join(entry["countries"]))}<br/>')
    if entry["languages"]:
        lines.append(f'<span class="pl">语言:</span> {escape(" / ".join(entry["languages"]))}<br/>')
    dates = []
    for d in entry["release_dates"]:
        text = f"{d['date']}({d['region']})" if d["region"] else d["date"]
        dates.append(f'<span property="v:initialReleaseDate" content="{escape(text)}">{escape(text)}</span>')
    if dates:
        lines.append(f'<span class="pl">{"首播" if is_tv else "上映日期"}:</span> {" / ".join(dates)}<br/>')
    if is_tv:
        lines.append(f'<span class="pl">集数:</span> {entry["episodes"]}<br/>')
        lines.append(f'<span class="pl">单集片长:</span> {entry["episode_min"]}分钟<br/>')
    elif entry["runtime_min"] and v != 11:  # variant 11: no 片长 line, JSON-LD duration only
        rt = entry["runtime_min"]
        if v in (3, 13):
            lines.append(f'<span class="pl">片长:</span> 约{rt}分钟<br/>')  # no v:runtime property
        else:
            lines.append(f'<span class="pl">片长:</span> <span property="v:runtime" content="{rt}">{rt}分钟</span><br/>')
    lines.append(f'<span class="pl">又名:</span> {escape(entry["title"])}(国际版)<br/>')
    if entry["imdb_id"]:
        if v % 2:
            lines.append(f'<span class="pl">IMDb:</span> {entry["imdb_id"]}<br>')
        else:
            lines.append(f'<span class="pl">IMDb链接:</span> <a href="https://www.imdb.invalid/title/'
                         f'{entry["imdb_id"]}" target="_blank" rel="nofollow">{entry["imdb_id"]}</a><br>')

    ld = {"@context": "http://schema.org", "@type": "TVSeries" if is_tv else "Movie",
          "name": entry["title"], "url": f"/subject/{did}/",
          "director": [_ld_person(n, p) for n, p in zip(entry["directors"], entry["director_ids"])],
          "author": [_ld_person(n, p) for n, p in zip(entry["writers"], entry["writer_ids"])],
          "actor": [_ld_person(n, p) for n, p in zip(entry["actors"], entry["actor_ids"])],
          "datePublished": entry["release_date"] or "", "genre": entry["genres"],
          "duration": f"PT{entry['runtime_min'] // 60}H{entry['runtime_min'] % 60}M" if entry["runtime_min"] else "",
          "description": f"{entry['title']}的剧情简介。\n第二行。",
          "aggregateRating": {"@type": "AggregateRating", "ratingCount": str(entry["votes"] or ""),
                              "bestRating": "10", "worstRating": "2",
                              "ratingValue": "" if entry["rating"] is None else f"{entry['rating']:.1f}"}}
    # Raw newlines inside strings, as on real pages (parsers must read JSON-LD leniently).
    ld_text = json.dumps(ld, ensure_ascii=v % 3 == 0, indent=2).replace("\\n", "\n")

    if entry["rating"] is None:
        why = ("<span>尚未上映</span>" if "coming" in entry["traits"] else "暂无评分" if v % 2
               else '<a href="collections">评价人数不足</a>')
        rating = (f'<strong class="ll rating_num" property="v:average"> </strong>\n'
                  f'<div class="rating_sum">{why}</div>')
    else:
        rating = (f'<strong class="ll rating_num" property="v:average">{entry["rating"]:.1f}</strong>\n'
                  f'<div class="rating_sum"><a href="collections" class="rating_people">'
                  f'<span property="v:votes">{entry["votes"]}</span>人评价</a></div>')
    year = f'<span class="year">({entry["year"]})</span>' if entry["year"] else ""
    # Filler of roughly a real page's weight outside #info (comments, recommendations).
    filler = "\n".join(f'<div class="comment-item"><span class="comment-info"><a href="/people/u{did % 997 + i}/">'
                       f"用户{i}</a></span><p class=\"comment-content\">{escape(entry['title'])}看完的第{i}条感想，"
                       "节奏、表演与摄影都值得再说几句。</p></div>" for i in range(12))
    recs = "".join(f'<dd><a href="{CANONICAL}/subject/{did + k * 7}/">推荐{k}</a></dd>' for k in range(1, 9))
    kind_word = "电视剧" if is_tv else "电影"
    return f"""<!DOCTYPE html>
<html lang="zh-CN" class="ua-linux">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<title>
    {escape(entry["title"])} (豆瓣)
</title>
<meta name="keywords" content="{escape(entry["title"])},{kind_word},影评">
<script type="application/ld+json">
{ld_text}
</script>
</head>
<body>
<div id="wrapper">
<div id="content">
<h1>
  <span property="v:itemreviewed">{escape(entry["title"])}</span>
  {year}
</h1>
<div class="grid-16-8 clearfix">
<div class="article">
<div class="subject clearfix">
<div id="info">
  {chr(10).join("  " + line for line in lines)}
</div>
</div>
<div id="interest_sectl">
<div class="rating_wrap clearbox">
{rating}
</div>
</div>
<div id="comments-section">
<h2><i>短评</i> <span class="pl">( <a href="{CANONICAL}/subject/{did}/comments?status=P">全部 {entry["comment_count"]} 条</a> )</span></h2>
{filler}
</div>
<section class="reviews mod movie-content">
<h2><i>影评</i> <span class="pl">( <a href="reviews">全部 {entry["review_count"]} 条</a> )</span></h2>
</section>
</div>
<div class="aside"><div class="recommendations-bd"><dl>{recs}</dl></div>
{_interests(entry)}
</div>
</div>
</div>
</div>
</body>
</html>
"""


def _interests(entry: dict) -> str:
    """The sidebar's 看过 / 想看 links (those known), pointing where real pages point or, on odd ids, to the
    collections/wishes pages some layouts link."""
    did, odd = entry["douban_id"], entry["douban_id"] % 2
    links = [f'<a href="{CANONICAL}/subject/{did}/{page if odd else "comments?status=" + status}">{n}人{word}</a>'
             for key, word, page, status in (("watched_count", "看过", "collections", "P"),
                                              ("wish_count", "想看", "wishes", "F"))
             if (n := entry.get(key)) is not None]
    return f'<div class="subject-others-interests-ft">{" &nbsp;/&nbsp; ".join(links)}</div>'


def render_coming(entries: list[dict], hot: int) -> str:
    """The /coming page: a table of the films about to open, each linking its subject page."""
    rows = "".join(f'<tr><td>{e["release_date"][5:7]}月{e["release_date"][8:10]}日</td>'
                   f'<td><a href="{CANONICAL}/subject/{e["douban_id"]}/">{escape(e["title"])}</a></td>'
                   f'<td>{escape(" / ".join(e["genres"]))}</td><td>{escape(" / ".join(e["countries"]))}</td>'
                   f'<td>{e["wish_count"]}人</td></tr>' for e in entries)
    return _list_page("即将上映的电影", '<table class="coming_list"><thead><tr><th>上映日期</th><th>片名</th>'
                      f"<th>类型</th><th>制片国家 / 地区</th><th>想看</th></tr></thead><tbody>{rows}</tbody></table>", hot)


def render_later(city: str, entries: list[dict], hot: int) -> str:
    """A city's /cinema/later/CITY/ page: the #showing-soon items of the films about to open there."""
    items = "".join(f'<div class="item mod"><a class="thumb" href="{CANONICAL}/subject/{e["douban_id"]}/">'
                    f'<img src="" alt="{escape(e["title"])}"></a><div class="intro"><h3>'
                    f'<a href="{CANONICAL}/subject/{e["douban_id"]}/">{escape(e["title"])}</a></h3><ul>'
                    f'<li class="dt">{e["release_date"][5:7]}月{e["release_date"][8:10]}日</li>'
                    f'<li class="dt">{escape(" / ".join(e["genres"]))}</li>'
                    f'<li class="dt last"><span>{e["wish_count"]}人想看</span></li></ul></div></div>'
                    for e in entries)
    return _list_page(f"{city} 即将上映", f'<div id="showing-soon" class="tab-bd">{items}</div>', hot)


def _list_page(title: str, body: str, hot: int) -> str:
    # A link outside the lists (a film showing now, `hot`), which a crawl of the lists must not follow.
    aside = f'<div class="aside" id="hot"><a href="{CANONICAL}/subject/{hot}/">正在热映</a></div>'
    return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>{escape(title)}</title></head>'
            f'<body><div id="content"><h1>{escape(title)}</h1>{body}{aside}</div></body></html>\n')


def render_broken(entry: dict) -> str:
    """A page whose layout changed: the facts are there, #info is not."""
    return (f"<!DOCTYPE html><html><head><title>{escape(entry['title'])} (豆瓣)</title></head><body>"
            f"<section class=\"subject-meta\"><dl><dt>导演</dt><dd>{escape(', '.join(entry['directors']))}</dd>"
            f"</dl></section></body></html>\n")


LOGIN_PAGE = ("<!DOCTYPE html><html><head><title>登录豆瓣</title></head><body><form action=\"/accounts/login\" "
              "method=\"post\"><input name=\"username\"><input name=\"password\" type=\"password\"></form>"
              "</body></html>\n")
SEC_PAGE = ("<!DOCTYPE html><html><head><title>禁止访问</title></head><body><p>检测到有异常请求从你的 IP 发出"
            "</p></body></html>\n")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A crawler that times out or is killed drops connections mid-answer: not worth a traceback.
        log.debug("mock-douban: connection from %s ended early", client_address)


class MockDouban:
    """The catalogue, the fault plan, and request counters; `serve()` starts the HTTP server."""

    def __init__(self, n_movies: int = 2000, seed: int = 0, *, catalogue: list[dict] | None = None,
                 error_rate: float = 0.0, error_repeats: int = 2, slow_rate: float = 0.0, slow_ms: int = 0,
                 truncate_rate: float = 0.0, broken_rate: float = 0.0, ban_after: int = 0, ban_for: int = 0,
                 robots: str = "default", robots_status: int = 200, block_listing: bool = False,
                 login_rate: float = 0.0, listing_ignores_start: bool = False, throttle_after: int = 0,
                 throttle_for: int = 0, listing_garbage: str = "html", listing_garbage_rate: float = 0.0,
                 listing_garbage_repeats: int = 2, bad_entry_rate: float = 0.0, gbk_rate: float = 0.0,
                 mislabel_rate: float = 0.0,
                 files: dict[int, Path] | None = None, coming: int = 0):
        if robots not in ROBOTS:
            raise KadnError(f"unknown robots variant {robots!r}: choose from {', '.join(ROBOTS)}")
        if listing_garbage not in GARBAGE:
            raise KadnError(f"unknown --listing-garbage {listing_garbage!r}: choose from {', '.join(GARBAGE)}")
        _check_knobs(movies=n_movies, coming=coming, error_repeats=error_repeats, slow_ms=slow_ms,
                     ban_after=ban_after, ban_for=ban_for, throttle_after=throttle_after, throttle_for=throttle_for,
                     listing_garbage_repeats=listing_garbage_repeats)
        _check_knobs(rate=True, error_rate=error_rate, slow_rate=slow_rate, truncate_rate=truncate_rate,
                     broken_rate=broken_rate, login_rate=login_rate, listing_garbage_rate=listing_garbage_rate,
                     bad_entry_rate=bad_entry_rate, gbk_rate=gbk_rate, mislabel_rate=mislabel_rate)
        self.catalogue = catalogue if catalogue is not None else generate_catalogue(n_movies, seed)
        # Films about to open (on /coming and the cities' /cinema/later/ pages) until `release` gives them a score.
        last_id = max((e["douban_id"] for e in self.catalogue), default=1_290_000)
        self.coming = coming_films(coming, seed, after_id=last_id) if coming else []
        self.catalogue = self.catalogue + self.coming
        self.by_id = {e["douban_id"]: e for e in self.catalogue}
        self.by_year: dict[int, list[dict]] = defaultdict(list)
        for e in self.catalogue:
            if e["year"] is not None:
                self.by_year[e["year"]].append(e)
        self.seed = seed
        self.error_rate, self.error_repeats = error_rate, error_repeats
        self.slow_rate, self.slow_ms = slow_rate, slow_ms
        self.truncate_rate, self.broken_rate = truncate_rate, broken_rate
        self.ban_after, self.ban_for = ban_after, ban_for
        self.robots = robots
        self.robots_status = robots_status  # not 200: /robots.txt always answers this error status
        self.block_listing = block_listing  # /j/ answers 403 although robots.txt allows it
        self.listing_ignores_start = listing_ignores_start  # the listing serves its first page at every start
        self.login_rate = login_rate  # share of subjects restricted to logged-in users (always -> login)
        # Listing requests before / during which the listing answers Douban's rate-limit JSON instead.
        self.throttle_after, self.throttle_for = throttle_after, throttle_for
        self.n_listing = 0
        # Subject pages sent as GBK bytes under a `charset=utf-8` header, as a relabelling proxy does: a share
        # whose <meta> says GBK (readable), and a share whose <meta> says utf-8 too (unreadable).
        self.gbk_rate, self.mislabel_rate = gbk_rate, mislabel_rate
        self.listing_hits: dict[str, int] = defaultdict(int)  # per listing page ("lo,hi:start")
        # A share of listing pages answers 200 with something that is not the listing's JSON (an HTML error
        # page, {"data": null}) on its first `repeats` attempts; another share holds one entry without an id.
        self.listing_garbage, self.listing_garbage_rate = listing_garbage, listing_garbage_rate
        self.listing_garbage_repeats, self.bad_entry_rate = listing_garbage_repeats, bad_entry_rate
        self.files = dict(files or {})
        self.lock = threading.Lock()
        self.hits: dict[str, int] = defaultdict(int)  # per path: how often it was requested
        self.counts: dict[str, int] = defaultdict(int)  # what was served: ok, 5xx, ban, truncated, ...
        self.served: dict[str, int] = defaultdict(int)  # per subject path: whole pages served
        self.n_requests = 0
        self.cookies: list[str] = []  # Cookie headers received (tests check what a crawler sends)
        self.server: ThreadingHTTPServer | None = None

    # -- what a correct crawl should store ------------------------------------------------------------
    def is_broken(self, douban_id: int) -> bool:
        return _share(f"broken:{douban_id}", self.seed, self.broken_rate)

    def needs_login(self, douban_id: int) -> bool:
        return _share(f"login:{douban_id}", self.seed, self.login_rate)

    def bad_entry(self, page: str) -> bool:
        return _share(f"bad_entry:{page}", self.seed, self.bad_entry_rate)

    def unlisted(self, years: tuple[int, int] = YEAR_RANGE) -> set[int]:
        """Subjects whose listing entry has no id (--bad-entry-rate), crawling the listing one year at a time."""
        lost = set()
        for year in range(years[0], years[1] + 1):
            entries = self.by_year.get(year, [])
            for start in range(0, len(entries), PAGE_SIZE):
                page = entries[start : start + PAGE_SIZE]
                if self.bad_entry(f"{year},{year}:{start}"):
                    lost.add(page[len(page) // 2]["douban_id"])
        return lost

    def is_mislabelled(self, douban_id: int) -> bool:
        return _share(f"mislabel:{douban_id}", self.seed, self.mislabel_rate) and not _share(
            f"gbk:{douban_id}", self.seed, self.gbk_rate)

    def expected_films(self, years: tuple[int, int] = YEAR_RANGE) -> list[dict]:
        """Films the listing serves for `years` whose pages parse: the truth a crawl must reproduce."""
        lost = self.unlisted(years)
        return [r for r in films_in_years(self.catalogue, *years) if not self.is_broken(r["douban_id"])
                and not self.needs_login(r["douban_id"]) and not self.is_mislabelled(r["douban_id"])
                and r["douban_id"] not in lost]

    def expected_coming(self) -> list[dict]:
        """The films still listed as coming, as canonical records: what a `-a coming=1` crawl must store."""
        return films(e for e in self.coming if "coming" in e["traits"])

    def release(self, douban_id: int, rating: float, votes: int) -> dict:
        """A coming film opens: its page shows `rating` from `votes` raters and a 看过 count, and it leaves
        the coming lists. Returns the entry (the truth a later crawl of the page must store)."""
        entry = self.by_id.get(douban_id)
        if entry is None or "coming" not in entry["traits"]:
            raise KadnError(f"subject {douban_id} is not a coming film of this mock site")
        if not (1 <= rating <= 10 and votes >= 30):  # Douban shows a score from 30 raters on
            raise KadnError(f"a released film needs a score from 1 to 10 and 30 raters or more, got {rating}, {votes}")
        with self.lock:
            entry.update(rating=round(float(rating), 1), votes=int(votes), watched_count=int(votes) * 3 // 2,
                         wish_count=entry["wish_count"] + int(votes) // 4, traits=("released",))
        return entry

    # -- serving --------------------------------------------------------------------------------------
    def handle(self, path: str, query: dict) -> tuple[int, dict, bytes]:
        with self.lock:
            self.hits[path] += 1
            attempt = self.hits[path]
            if path != "/robots.txt":
                self.n_requests += 1
            n = self.n_requests
        if path != "/robots.txt" and self.ban_for and self.ban_after <= n < self.ban_after + self.ban_for:
            self._count("ban")
            return self._ban(BAN_KINDS[n % len(BAN_KINDS)], path)
        if attempt == 1 and _share(f"slow:{path}", self.seed, self.slow_rate):
            # A stalled first answer; a retry is answered promptly (so a timeout-and-retry recovers).
            self._count("slow")
            time.sleep(self.slow_ms / 1000)
        if self.block_listing and path.startswith("/j/"):
            self._count("listing_blocked")
            return 403, {"Content-Type": "text/html"}, SEC_PAGE.encode("utf-8")
        if attempt <= self.error_repeats and _share(f"error:{path}", self.seed, self.error_rate):
            self._count("5xx")
            return (500, 502, 503)[attempt % 3], {"Content-Type": "text/html"}, b"<html>server error</html>"

        if path == "/robots.txt":
            if self.robots_status != 200:
                self._count("robots_error")
                return self.robots_status, {"Content-Type": "text/html"}, b"<html>robots.txt unavailable</html>"
            return self._text(ROBOTS[self.robots] + f"Sitemap: {CANONICAL}/sitemap_index.xml\n", "text/plain")
        if path == LISTING_PATH:
            return self._listing(query)
        if path == "/sitemap_index.xml":
            return self._sitemap_index()
        if path.startswith("/sitemap/subjects_") and path.endswith(".xml"):
            return self._sitemap(path)
        if path.startswith("/subject/"):
            return self._subject(path, attempt)
        if path == "/coming" or path.startswith("/cinema/later/"):
            return self._coming(path)
        if path.startswith(("/accounts/", "/sec/")):
            return self._text(LOGIN_PAGE if path.startswith("/accounts/") else SEC_PAGE, "text/html")
        return 404, {"Content-Type": "text/html"}, b"<html>not found</html>"

    def _count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    @staticmethod
    def _text(text: str, ctype: str, status: int = 200) -> tuple[int, dict, bytes]:
        return status, {"Content-Type": f"{ctype}; charset=utf-8"}, text.encode("utf-8")

    @staticmethod
    def _gbk(html: str) -> tuple[int, dict, bytes]:
        # gb18030: GBK's superset, so every catalogue character survives (decoders read "gbk" as gb18030).
        return 200, {"Content-Type": "text/html; charset=utf-8"}, html.encode("gb18030")

    def _ban(self, kind: str, path: str) -> tuple[int, dict, bytes]:
        if kind == "sec":
            return 302, {"Location": f"/sec/b?r={quote(path)}"}, b""
        if kind == "login":
            return 302, {"Location": f"/accounts/login?redir={quote(path)}"}, b""
        return int(kind), {"Content-Type": "text/html"}, SEC_PAGE.encode("utf-8")

    def _listing(self, query: dict) -> tuple[int, dict, bytes]:
        try:
            lo, hi = (int(x) for x in query.get("year_range", [""])[0].split(","))
            start = int(query.get("start", ["0"])[0])
        except ValueError:
            return self._text(json.dumps({"msg": "bad year_range or start"}), "application/json", 400)
        lo, hi = max(lo, LISTING_YEARS[0]), min(hi, LISTING_YEARS[1])
        key = f"{lo},{hi}:{start}"  # one listing page
        with self.lock:
            self.listing_hits[key] += 1
            attempt = self.listing_hits[key]
        if attempt <= self.listing_garbage_repeats and _share(f"garbage:{key}", self.seed, self.listing_garbage_rate):
            self._count("listing_garbage")
            return self._text(GARBAGE[self.listing_garbage][1], GARBAGE[self.listing_garbage][0])
        with self.lock:
            self.n_listing += 1
            n = self.n_listing
        if self.throttle_for and self.throttle_after < n <= self.throttle_after + self.throttle_for:
            self._count("throttled")
            return self._text(json.dumps(THROTTLED, ensure_ascii=False), "application/json")
        entries = [e for y in range(lo, hi + 1) for e in self.by_year.get(y, [])]
        if self.listing_ignores_start:
            start = 0
        page = entries[start : start + PAGE_SIZE]
        data = [{"id": str(e["douban_id"]), "title": e["title"], "url": f"{CANONICAL}/subject/{e['douban_id']}/",
                 "rate": "" if e["rating"] is None else f"{e['rating']:.1f}", "directors": e["directors"],
                 "casts": e["actors"][:4], "cover": ""} for e in page]
        if data and self.bad_entry(key):
            self._count("bad_entry")
            del data[len(data) // 2]["id"]  # one entry the crawler cannot read: its film is not listed
        self._count("listing")
        return self._text(json.dumps({"data": data}, ensure_ascii=False), "application/json")

    def _sitemap_index(self) -> tuple[int, dict, bytes]:
        n = (len(self.catalogue) + SITEMAP_CHUNK - 1) // SITEMAP_CHUNK
        body = "".join(f"<sitemap><loc>{CANONICAL}/sitemap/subjects_{k}.xml</loc></sitemap>" for k in range(n))
        return self._text('<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex xmlns='
                          f'"http://www.sitemaps.org/schemas/sitemap/0.9">{body}</sitemapindex>\n', "application/xml")

    def _sitemap(self, path: str) -> tuple[int, dict, bytes]:
        try:
            k = int(path.removeprefix("/sitemap/subjects_").removesuffix(".xml"))
        except ValueError:
            return 404, {}, b""
        chunk = self.catalogue[k * SITEMAP_CHUNK : (k + 1) * SITEMAP_CHUNK]
        body = "".join(f"<url><loc>{CANONICAL}/subject/{e['douban_id']}/</loc><changefreq>weekly</changefreq></url>"
                       for e in chunk)
        # A non-subject URL, as real sitemaps list more than subjects; the crawler must ignore it.
        body += f"<url><loc>{CANONICAL}/celebrity/1000001/</loc></url>"
        return self._text('<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns='
                          f'"http://www.sitemaps.org/schemas/sitemap/0.9">{body}</urlset>\n', "application/xml")

    def _coming(self, path: str) -> tuple[int, dict, bytes]:
        listed = [(k, e) for k, e in enumerate(self.coming) if "coming" in e["traits"]]
        hot = self.catalogue[0]["douban_id"] if self.catalogue else 1
        if path == "/coming":  # not every coming film: some are on a city's page only
            return self._text(render_coming([e for k, e in listed if k % 4 != 3], hot), "text/html")
        city = path.removeprefix("/cinema/later/").strip("/")
        if city not in CITIES:
            return 404, {"Content-Type": "text/html"}, b"<html>not found</html>"
        return self._text(render_later(city, [e for k, e in listed if CITIES[city](k)], hot), "text/html")

    def _subject(self, path: str, attempt: int) -> tuple[int, dict, bytes]:
        parts = [p for p in path.split("/") if p]
        if len(parts) != 2 or not parts[1].isdigit():
            return 404, {"Content-Type": "text/html"}, b"<html>not found</html>"
        did = int(parts[1])
        if did in self.files:
            self._count("file")
            return self._text(Path(self.files[did]).read_text(encoding="utf-8"), "text/html")  # read at request time
        entry = self.by_id.get(did)
        if entry is None:
            return 404, {"Content-Type": "text/html"}, b"<html>not found</html>"
        if self.needs_login(did):
            self._count("login")
            return self._ban("login", path)
        if self.is_broken(did):
            self._count("broken")
            return self._text(render_broken(entry), "text/html")
        html = render_subject(entry)
        if _share(f"gbk:{did}", self.seed, self.gbk_rate):
            self._count("gbk")
            return self._gbk(html.replace("charset=utf-8", "charset=gbk", 1))
        if _share(f"mislabel:{did}", self.seed, self.mislabel_rate):
            self._count("mislabelled")
            return self._gbk(html)
        if attempt == 1 and _share(f"truncate:{path}", self.seed, self.truncate_rate):
            # A cut page that still arrives as a complete HTTP response (the proxy-truncated case).
            self._count("truncated")
            return self._text(html[: len(html) // 3], "text/html")
        self._count("subject")
        with self.lock:
            self.served[path] += 1
        return self._text(html, "text/html")

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> ThreadingHTTPServer:
        """Start serving in a daemon thread; returns the server (its port is server.server_address[1])."""
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise KadnError("the mock Douban site serves loopback only (127.0.0.1)")
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the crawler reuses connections

            def do_GET(self):  # noqa: N802 (http.server's naming)
                parts = urlsplit(self.path)
                cookie = self.headers.get("Cookie")
                if cookie:
                    with site.lock:
                        site.cookies.append(cookie)
                status, headers, body = site.handle(parts.path, parse_qs(parts.query))
                self.send_response(status)
                for k, val in headers.items():
                    self.send_header(k, val)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802 -- the admin hook: POST /_mock/release/ID?rating=R&votes=N
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                try:
                    did = int(parts.path.removeprefix("/_mock/release/").strip("/"))
                    site.release(did, float(query["rating"][0]), int(query["votes"][0]))
                    status, body = 200, b"released\n"
                except (ValueError, KeyError):
                    status, body = 400, b"usage: POST /_mock/release/ID?rating=R&votes=N\n"
                except KadnError as exc:
                    status, body = 400, f"{exc}\n".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):  # quiet: thousands of requests per test
                log.debug("mock-douban: " + fmt, *args)

        server = _QuietServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="mock-douban", daemon=True).start()
        self.server = server
        return server

    @property
    def base_url(self) -> str:
        assert self.server is not None, "call serve() first"
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def _page_arg(text: str) -> tuple[int, Path]:
    sid, _, path = text.partition("=")
    if not sid.isdigit() or not path:
        raise KadnError(f"--page wants ID=PATH, got {text!r}")
    return int(sid), Path(path)


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="serve a synthetic Douban catalogue on 127.0.0.1 (for crawler tests)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8300, help="0 picks a free port (printed on start)")
    p.add_argument("--movies", type=int, default=2000, help="films in the catalogue (TV subjects come extra)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic catalogue")
    p.add_argument("--error-rate", type=float, default=0.0, help="share of URLs answering 5xx at first")
    p.add_argument("--error-repeats", type=int, default=2, help="how many first attempts of such URLs fail")
    p.add_argument("--slow-rate", type=float, default=0.0, help="share of URLs whose first answer stalls")
    p.add_argument("--slow-ms", type=int, default=500, help="how long a stalled answer stalls (ms)")
    p.add_argument("--truncate-rate", type=float, default=0.0, help="share of pages cut short on first serve")
    p.add_argument("--broken-rate", type=float, default=0.0, help="share of pages always in a changed layout")
    p.add_argument("--ban-after", type=int, default=0, help="requests before the ban window opens")
    p.add_argument("--ban-for", type=int, default=0, help="requests the ban window lasts (0: no ban)")
    p.add_argument("--robots", choices=sorted(ROBOTS), default="default", help="which robots.txt to serve")
    p.add_argument("--robots-status", type=int, default=200,
                   help="answer /robots.txt with this status (e.g. 403 or 503) instead of serving it")
    p.add_argument("--block-listing", action="store_true", help="answer 403 on /j/ (robots.txt still allows it)")
    p.add_argument("--listing-ignores-start", action="store_true",
                   help="the listing ignores its start parameter (every page repeats the first)")
    p.add_argument("--login-rate", type=float, default=0.0,
                   help="share of subjects that always redirect to the login page (restricted subjects)")
    p.add_argument("--throttle-after", type=int, default=0,
                   help="listing requests answered normally before the listing answers the rate-limit JSON")
    p.add_argument("--throttle-for", type=int, default=0,
                   help="listing requests answered with the rate-limit JSON (0: never)")
    p.add_argument("--listing-garbage", choices=sorted(GARBAGE), default="html",
                   help="what a garbled listing page answers with HTTP 200: an HTML page or {\"data\": null}")
    p.add_argument("--listing-garbage-rate", type=float, default=0.0,
                   help="share of listing pages answering --listing-garbage on their first attempts")
    p.add_argument("--listing-garbage-repeats", type=int, default=2,
                   help="how many first attempts of such listing pages are garbled")
    p.add_argument("--bad-entry-rate", type=float, default=0.0,
                   help="share of listing pages holding one entry without an id")
    p.add_argument("--gbk-rate", type=float, default=0.0,
                   help="share of subject pages sent as GBK under a charset=utf-8 header, their <meta> saying GBK")
    p.add_argument("--mislabel-rate", type=float, default=0.0,
                   help="share of subject pages sent as GBK whose header and <meta> both say utf-8")
    p.add_argument("--coming", type=int, default=0,
                   help="films about to open, on /coming and /cinema/later/CITY/ (POST /_mock/release/ID?rating=R"
                        "&votes=N gives one a score)")
    p.add_argument("--page", action="append", default=[], metavar="ID=PATH",
                   help="serve this HTML file at /subject/ID/ (read at request time)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    site = MockDouban(args.movies, args.seed, error_rate=args.error_rate, error_repeats=args.error_repeats,
                      slow_rate=args.slow_rate, slow_ms=args.slow_ms, truncate_rate=args.truncate_rate,
                      broken_rate=args.broken_rate, ban_after=args.ban_after, ban_for=args.ban_for,
                      robots=args.robots, robots_status=args.robots_status, block_listing=args.block_listing,
                      login_rate=args.login_rate, listing_ignores_start=args.listing_ignores_start,
                      throttle_after=args.throttle_after, throttle_for=args.throttle_for,
                      listing_garbage=args.listing_garbage, listing_garbage_rate=args.listing_garbage_rate,
                      listing_garbage_repeats=args.listing_garbage_repeats, bad_entry_rate=args.bad_entry_rate,
                      gbk_rate=args.gbk_rate, mislabel_rate=args.mislabel_rate,
                      files=dict(_page_arg(p) for p in args.page), coming=args.coming)
    if not 0 <= args.port <= 65535:
        raise KadnError(f"--port must be from 0 to 65535, got {args.port}")
    try:
        site.serve(args.port)
    except OSError as exc:
        raise KadnError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}") from None
    n_tv = sum(e["kind"] == "tv" for e in site.catalogue)
    coming = f" ({len(site.coming)} about to open)" if site.coming else ""
    print(f"mock Douban: {len(site.catalogue) - n_tv} films{coming} and {n_tv} TV subjects at {site.base_url}",
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        site.close()
    return 0
