"""Douban subject pages -> canonical records: pure functions, no network, no Scrapy.

`listing_page(text)` reads a page of the JSON listing, `coming_ids(html)` a coming-soon page. `parse_subject(html, url)` returns a `ParseResult` whose `kind` is "film" (with a record that went through
`pipeline.film.records.normalise_record`), "tv" (a TV subject, to be counted and skipped) or "failed" (with a
reason naming what was wrong). The `#info` block is the first source; the page's JSON-LD Movie object fills
the fields `#info` lacks. A page that is truncated, has no `#info` block (a login wall or a changed layout)
or yields no title is "failed", never a half-empty record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html import unescape

from parsel import Selector

from pipeline.errors import RecordError
from pipeline.film.merge import garbled
from pipeline.film.records import ID_FIELD, cut, normalise_record, parse_date, parse_runtime

SUBJECT_URL_RE = re.compile(r"/subject/(\d+)")
_PERSON_ID_RE = re.compile(r"/(?:celebrity|personage)/(\d+)")
_BR_RE = re.compile(r"<br\s*/?>", re.IGNORECASE)
_RELEASE_RE = re.compile(r"^\s*([0-9][0-9\-/.]*)\s*(?:\((.*)\))?\s*$")
_INFO_RE = re.compile(r"""<div[^>]*\bid=["']info["'][^>]*>""")
_TITLE_RE = re.compile(r"<title>(.*?)</title>", re.DOTALL)
_ITEMREVIEWED_RE = re.compile(r"""property=["']v:itemreviewed["'][^>]*>([^<]*)<""")
_LD_RE = re.compile(r"""<script[^>]*type=["']application/ld\+json["'][^>]*>(.*?)</script>""", re.DOTALL)
_YEAR_SPAN_RE = re.compile(r"""<span class=["']year["']>\s*\((\d{4})""")
_AVERAGE_RE = re.compile(r"""<strong[^>]*property=["']v:average["'][^>]*>([^<]*)</strong>""")
_VOTES_RE = re.compile(r"""<span[^>]*property=["']v:votes["'][^>]*>\s*([\d,]+)\s*<""")
# Short comments and reviews: "全部 N 条" links (the page has other comments?status=P links, e.g. 人看过).
_COMMENTS_RE = re.compile(r"""<a[^>]*href=["'][^"']*comments\?status=P["'][^>]*>\s*全部\s*([\d,]+)\s*条\s*</a>""")
_REVIEWS_RE = re.compile(r"""<a[^>]*href=["']reviews["'][^>]*>\s*全部\s*([\d,]+)\s*条\s*</a>""")
# The sidebar's "N人想看" / "N人看过" links (their hrefs vary: comments?status=F|P, wishes, collections).
_WISH_RE = re.compile(r"""<a[^>]*>\s*([\d,]+)\s*人想看\s*</a>""")
_WATCHED_RE = re.compile(r"""<a[^>]*>\s*([\d,]+)\s*人看过\s*</a>""")
_IMDB_RE = re.compile(r"\btt\d{5,}\b")
_ISO_DURATION_RE = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?")
# A JSON-LD person name is "中文名 Latin Name"; #info shows the Chinese part only.
_LD_NAME_RE = re.compile(r"^(.*?[^\x00-\x7f])\s+[A-Za-z].*$")
TV_LABELS = frozenset({"集数", "首播", "单集片长"})
TV_LD_TYPES = frozenset({"TVSeries", "TVSeason", "TVEpisode"})  # JSON-LD @type of TV subjects
ROLE_LABELS = {"导演": "directors", "编剧": "writers", "主演": "actors"}
LD_ROLE = {"directors": "director", "writers": "author", "actors": "actor"}


@dataclass
class ParseResult:
    kind: str  # "film", "tv" or "failed"
    douban_id: int | None = None
    record: dict | None = None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)  # fields filled from JSON-LD


class PageUnparsed(ValueError):
    """An answer that is not what its page should be (cut short, a changed layout); says why."""


@dataclass
class ListingPage:
    ids: list[int]  # the subject ids of the readable entries, in order
    size: int  # entries on the page, readable or not (the next page starts after all of them)
    bad: list[str]  # one line per entry without a readable id


def listing_page(text: str) -> ListingPage:
    """One page of the JSON listing ({"data": [{"id": "123", ...}, ...]}). PageUnparsed naming what is wrong
    when the answer is not that JSON or no entry has a readable id; an entry without one is only listed in
    `bad`."""
    try:
        data = json.loads(text).get("data")
    except (ValueError, AttributeError) as exc:
        raise PageUnparsed(f"{exc.__class__.__name__}: {exc}") from None
    if not isinstance(data, list):
        raise PageUnparsed("no 'data' list")
    ids, bad = [], []
    for n, entry in enumerate(data):
        try:
            did = int(str(entry["id"]).strip())
            if did <= 0:
                raise ValueError(f"id {did} is not a subject id")
            ids.append(did)
        except (ValueError, KeyError, TypeError) as exc:
            bad.append(f"entry {n}: {exc.__class__.__name__}: {cut(str(exc), 80)}")
    if data and not ids:  # nothing to go on (and a page that repeats would paginate for ever)
        raise PageUnparsed(f"none of its {len(data)} entries has a subject id ({bad[0]})")
    return ListingPage(ids, len(data), bad)


# Where the coming-soon pages list their films: /coming's table and a city's /cinema/later/CITY/ items.
COMING_LISTS = ("table.coming_list", "#showing-soon")


def coming_ids(html: str) -> list[int]:
    """The subject ids a coming-soon page lists, in page order, once each (links elsewhere on the page, such
    as films showing now, are not the list's); PageUnparsed when the page has no such list (a changed layout)."""
    sel = Selector(text=html)
    lists = [node for css in COMING_LISTS for node in sel.css(css)]
    if not lists:
        raise PageUnparsed(f"no coming-soon list ({' or '.join(COMING_LISTS)}; page title {_page_title(html)!r})")
    ids = (subject_id(href) for node in lists for href in node.css("a::attr(href)").getall())
    return list(dict.fromkeys(i for i in ids if i is not None))


def subject_id(url: str) -> int | None:
    m = SUBJECT_URL_RE.search(url or "")
    return int(m.group(1)) if m else None


def _info_lines(info) -> dict[str, dict]:
    """#info's lines keyed by label ('导演', '上映日期', ...): a line runs from its label to the next <br>.

    Walks the lxml children once (one DOM for the block, not one per line: parse cost matters at scale).
    Each line is {"text": bare text after the label, "anchors": [(href, text, class)]}.
    """
    lines: dict[str, dict] = {}
    current: dict = {"label": None, "text": [], "anchors": []}

    def close():
        label = current["label"]
        if label and label not in lines:
            lines[label] = {"text": " ".join(t for t in current["text"] if t).lstrip(":：").strip(),
                            "anchors": current["anchors"]}

    def visit(el):
        if el.tag == "br":
            close()
            current.update(label=None, text=[], anchors=[])
        elif el.tag == "span" and "pl" in (el.get("class") or "").split():
            label = (el.text_content() or "").strip().rstrip(":：").strip()
            if current["label"] is None:
                current["label"] = label
        else:
            if el.tag == "a":
                current["anchors"].append((el.get("href") or "", el.text_content().strip(), el.get("class") or ""))
            elif el.tag not in ("select", "script", "style"):
                if el.text and el.text.strip():
                    current["text"].append(el.text.strip())
                for child in el:
                    visit(child)
            if el.tag == "a" and el.text_content().strip():
                current["text"].append(el.text_content().strip())
        if el.tail and el.tail.strip():
            current["text"].append(el.tail.strip())

    if info.text and info.text.strip():
        current["text"].append(info.text.strip())
    for child in info:
        if isinstance(child.tag, str):
            visit(child)
    close()
    return lines


def _people(line: dict) -> tuple[list[str], list[str | None]]:
    names, ids = [], []
    for href, name, cls in line["anchors"]:
        if not name or href.startswith("javascript") or "more" in cls:
            continue  # the "更多..." toggle of long casts, not a person
        m = _PERSON_ID_RE.search(href)
        names.append(name)
        ids.append(m.group(1) if m else None)  # subject_search?search_text=NAME links carry no id
    return names, ids


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split("/") if v.strip()]


def _release(text: str) -> dict:
    m = _RELEASE_RE.match(text)
    if not m:
        raise RecordError("release_dates", f"cannot read a release date from {text!r}")
    region = (m.group(2) or "").strip() or None
    return {"date": parse_date(m.group(1), "release_dates"), "region": region,
            "rerelease": bool(region and "重映" in region)}


def _int_text(text: str | None) -> int | None:
    digits = re.sub(r"[^\d]", "", text or "")
    return int(digits) if digits else None


def _json_ld(html: str) -> dict:
    for raw in _LD_RE.findall(html):
        try:
            # strict=False: real pages put raw newlines inside the description string.
            data = json.loads(raw, strict=False)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return {}


def _ld_people(ld: dict, key: str) -> tuple[list[str], list[str | None]]:
    names, ids = [], []
    people = ld.get(key) or []
    if isinstance(people, dict):
        people = [people]
    for p in people:
        if not isinstance(p, dict) or not str(p.get("name", "")).strip():
            continue
        name = str(p["name"]).strip()
        m = _LD_NAME_RE.match(name)
        names.append(m.group(1).strip() if m else name)
        pid = _PERSON_ID_RE.search(str(p.get("url", "")))
        ids.append(pid.group(1) if pid else None)
    return names, ids


def _ld_runtime(duration: str | None) -> int | None:
    m = _ISO_DURATION_RE.match(duration or "")
    if not m or not (m.group(1) or m.group(2)):
        return None
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0) or None


def _page_title(html: str) -> str:
    """The page's <title> text, unescaped and stripped ("" without one)."""
    m = _TITLE_RE.search(html)
    return unescape(m.group(1)).strip() if m else ""


def _title(html: str, ld: dict) -> str | None:
    # <title> holds the Chinese title alone ("盗梦空间 (豆瓣)"), which is what exports and the CC0 data use;
    # v:itemreviewed appends the original title.
    title = re.sub(r"\s*\(豆瓣\)\s*$", "", _page_title(html))
    if title and "豆瓣" not in title and "登录" not in title:
        return title
    m = _ITEMREVIEWED_RE.search(html)
    return (unescape(m.group(1)).strip() if m else "") or str(ld.get("name") or "").strip() or None


def _count(pattern: re.Pattern, html: str) -> int | None:
    m = pattern.search(html)
    return int(m.group(1).replace(",", "")) if m else None


def _no_score(rating: str) -> bool:
    """A score of 0 stands for "no score": Douban's scores start at 1.0, and some pages fill 0 for none."""
    try:
        return float(rating) == 0
    except ValueError:
        return False


def parse_subject(html: str, url: str) -> ParseResult:
    """One subject page -> ParseResult (film with a canonical record, tv, or failed with a reason).

    Only the #info block goes through a DOM; the few scalars elsewhere on a 130 kB page are read with
    anchored regular expressions, which keeps a page under a few milliseconds.
    """
    douban_id = subject_id(url)
    if douban_id is None:
        return ParseResult("failed", reason=f"no subject id in URL {url}")
    if "</html>" not in html[-4096:].lower():
        return ParseResult("failed", douban_id, reason="truncated page (no closing </html>)")
    start = _INFO_RE.search(html)
    end = html.find("</div>", start.end()) if start else -1
    if not start or end < 0:
        return ParseResult("failed", douban_id,
                           reason=f"no #info block (login wall or changed layout; page title {_page_title(html)!r})")
    info_sel = Selector(text=html[start.start() : end + 6])
    info = info_sel.css("#info")
    lines = _info_lines(info[0].root) if info else {}
    if not lines:
        return ParseResult("failed", douban_id, reason="#info block has no labelled lines (changed layout?)")
    if TV_LABELS & lines.keys():
        return ParseResult("tv", douban_id, reason="TV subject (" + "/".join(sorted(TV_LABELS & lines.keys())) + ")")
    ld = _json_ld(html)
    ld_types = ld.get("@type")
    ld_types = {ld_types} if isinstance(ld_types, str) else set(ld_types) if isinstance(ld_types, list) else set()
    if TV_LD_TYPES & ld_types:
        return ParseResult("tv", douban_id, reason="TV subject (JSON-LD @type " + "/".join(sorted(TV_LD_TYPES & ld_types)) + ")")

    notes: list[str] = []
    raw: dict = {"douban_id": douban_id, "title": _title(html, ld)}
    if not raw["title"]:
        return ParseResult("failed", douban_id, reason="no title on the page")

    for label, role in ROLE_LABELS.items():
        names, ids = _people(lines[label]) if label in lines else ([], [])
        if not names and ld.get(LD_ROLE[role]):
            names, ids = _ld_people(ld, LD_ROLE[role])
            notes.append(role)
        raw[role], raw[ID_FIELD[role]] = names, ids

    raw["genres"] = [g.strip() for g in info.css('span[property="v:genre"]::text').getall() if g.strip()]
    if not raw["genres"] and ld.get("genre"):
        raw["genres"] = [ld["genre"]] if isinstance(ld["genre"], str) else list(ld["genre"])
        notes.append("genres")
    raw["countries"] = _split(lines["制片国家/地区"]["text"]) if "制片国家/地区" in lines else []
    raw["languages"] = _split(lines["语言"]["text"]) if "语言" in lines else []

    try:
        runtime = info.css('span[property="v:runtime"]::attr(content)').get()
        if runtime is None and "片长" in lines:
            runtime = lines["片长"]["text"]  # bare text such as 约60min
        raw["runtime_min"] = parse_runtime(runtime)
        if raw["runtime_min"] is None and ld.get("duration"):
            raw["runtime_min"] = _ld_runtime(ld["duration"])
            notes.append("runtime_min")

        dates = []
        for span in info.css('span[property="v:initialReleaseDate"]'):
            text = span.attrib.get("content") or span.xpath("string(.)").get() or ""
            if text.strip():
                dates.append(_release(text))
        if not dates and ld.get("datePublished"):
            dates = [{"date": parse_date(ld["datePublished"], "datePublished"), "region": None,
                      "rerelease": False}]
            notes.append("release_dates")
        raw["release_dates"] = dates
    except RecordError as exc:
        return ParseResult("failed", douban_id, reason=str(exc))

    year = _YEAR_SPAN_RE.search(html)
    raw["year"] = int(year.group(1)) if year else None

    average = _AVERAGE_RE.search(html)
    if average:
        raw["rating"] = average.group(1).strip() or None
        # Under 30 raters (评价人数不足) or none (暂无评分) Douban shows no score and no count.
        raw["votes"] = _count(_VOTES_RE, html) if raw["rating"] else None
    else:
        agg = ld.get("aggregateRating") or {}
        raw["rating"] = str(agg.get("ratingValue") or "").strip() or None
        raw["votes"] = _int_text(str(agg.get("ratingCount") or "")) if raw["rating"] else None
        if raw["rating"]:
            notes.append("rating")  # only when JSON-LD supplied the score
    if raw["rating"] is not None and _no_score(raw["rating"]):
        raw["rating"], raw["votes"] = None, None  # an unrated film (暂无评分, 尚未上映) is unknown, not 0
        notes = [n for n in notes if n != "rating"]
    raw["wish_count"], raw["watched_count"] = _count(_WISH_RE, html), _count(_WATCHED_RE, html)
    raw["comment_count"] = _count(_COMMENTS_RE, html)
    raw["review_count"] = _count(_REVIEWS_RE, html)

    raw["imdb_id"] = None
    for label in ("IMDb", "IMDb链接"):
        if label in lines:
            m = _IMDB_RE.search(lines[label]["text"])
            if m:
                raw["imdb_id"] = m.group(0)
                break

    try:
        record = normalise_record(raw)
    except RecordError as exc:
        return ParseResult("failed", douban_id, reason=str(exc))
    bad = [name for name, value in record.items() if garbled(value)]
    if bad:  # bytes read in the wrong encoding: storing them would overwrite good text with noise
        return ParseResult("failed", douban_id, reason=f"replacement characters (U+FFFD) in {', '.join(bad)}: "
                                                       "the page was read in the wrong encoding")
    return ParseResult("film", douban_id, record=record, notes=notes)
