"""A deterministic synthetic Douban catalogue shaped like the real one (its shares of films without a score,
re-releases, concerts and casts follow figures measured on real Douban data).

`generate_catalogue(n_movies, seed)` returns truth entries: canonical records (exactly what
`pipeline.film.records.normalise_record` produces) plus two markers, `kind` ("film" or "tv") and `traits`
(a tuple naming what is special about the entry: "no_score", "rerelease", "concert", "no_actors",
"year_only", "no_date", "out_of_range", "duplicate", "name_only_person"; "coming" for `coming_films`, the
films about to open). TV subjects carry `episodes` and `episode_min` as well. The mock site serves this catalogue; the clean/encode and model benchmarks
store it directly with `store_catalogue` (no crawl).

Scores come from person effects + genre and country effects + noise, so a model has signal to find.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import numpy as np

from pipeline.film import store
from pipeline.film.records import FIELDS, first_release, normalise_record

TOP_GENRES = ("剧情", "喜剧", "惊悚", "爱情", "动作", "悬疑", "犯罪", "恐怖", "科幻", "冒险",
              "动画", "奇幻", "家庭", "纪录片", "传记", "战争", "历史", "音乐", "运动", "西部")
# Roughly Douban's genre frequencies: 剧情 on about half the films, the tail thin.
_GENRE_W = np.array([50, 25, 14, 14, 13, 10, 9, 8, 6, 6, 5, 5, 4, 4, 3, 2.5, 2.5, 2, 1.5, 0.5])
# Mean-zero-ish score shifts; signs follow what Douban raters are known for (horror low, documentary high).
_GENRE_EFFECT = {"剧情": 0.25, "喜剧": -0.25, "惊悚": -0.35, "爱情": -0.2, "动作": -0.2, "悬疑": 0.0,
                 "犯罪": 0.15, "恐怖": -0.9, "科幻": -0.1, "冒险": 0.0, "动画": 0.45, "奇幻": -0.2,
                 "家庭": 0.2, "纪录片": 0.8, "传记": 0.45, "战争": 0.2, "历史": 0.3, "音乐": 0.3,
                 "运动": 0.1, "西部": 0.1, "歌舞": 0.3}
COUNTRIES = ("美国", "中国大陆", "日本", "韩国", "英国", "法国", "中国香港", "中国台湾", "德国", "印度",
             "意大利", "西班牙", "加拿大", "泰国", "澳大利亚")
_COUNTRY_W = np.array([30, 22, 12, 7, 6, 5, 4, 3, 3, 2, 2, 1.5, 1.5, 1, 1])
_COUNTRY_EFFECT = {"美国": 0.0, "中国大陆": -0.55, "日本": 0.3, "韩国": 0.1, "英国": 0.35, "法国": 0.25,
                   "中国香港": 0.1, "中国台湾": 0.2, "德国": 0.3, "印度": 0.2, "意大利": 0.25,
                   "西班牙": 0.2, "加拿大": 0.0, "泰国": -0.3, "澳大利亚": 0.05}
_LANGUAGE = {"美国": "英语", "中国大陆": "汉语普通话", "日本": "日语", "韩国": "韩语", "英国": "英语",
             "法国": "法语", "中国香港": "粤语", "中国台湾": "汉语普通话", "德国": "德语", "印度": "印地语",
             "意大利": "意大利语", "西班牙": "西班牙语", "加拿大": "英语", "泰国": "泰语", "澳大利亚": "英语"}
_REGION = {"中国大陆": "中国大陆", "中国香港": "中国香港", "中国台湾": "中国台湾"}
_FESTIVALS = ("戛纳电影节", "柏林电影节", "威尼斯电影节", "多伦多电影节", "上海电影节")
_CONCERT_WORDS = ("演唱会", "晚会", "巡演", "音乐会", "Live", "Concert", "Tour")

# Deduplicated so that index -> name stays one-to-one (names key people who have no id).
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍建国文辉力宇晨雨欣子轩浩然思远嘉怡梓涵一诺博文天佑俊熙"
_SURNAMES, _GIVEN = "".join(dict.fromkeys(_SURNAMES)), "".join(dict.fromkeys(_GIVEN))
_FOREIGN = ("约翰", "迈克尔", "大卫", "詹姆斯", "罗伯特", "玛丽", "琳达", "苏珊", "汤姆", "克里斯", "安娜", "艾玛",
            "斯蒂芬", "彼得", "凯特", "杰克", "莎拉", "保罗", "马克", "劳拉", "山田", "佐藤", "金", "朴")
_FOREIGN_LAST = ("史密斯", "约翰逊", "威廉姆斯", "布朗", "琼斯", "米勒", "戴维斯", "加西亚", "威尔逊", "安德森",
                 "泰勒", "托马斯", "摩尔", "马丁", "杰克逊", "怀特", "哈里斯", "克拉克", "刘易斯", "沃克")
_TITLE_CHARS = "夜光之城海风雪花梦影春秋山河天地人心爱恨生死时空少年故事归途远方家园星辰火焰迷雾秘密边界黎明黄昏回声"

_TITLE_CHARS = "".join(dict.fromkeys(_TITLE_CHARS))

YEAR_RANGE = (2007, 2019)
COMING_YEAR = 2030
# Share of actor credits that go to someone never seen before: sets the "68% of actors in one film" shape.
ACTOR_FRESH_SHARE = 0.1


def _person_name(i: int) -> str:
    """A unique name per index: Chinese-style for most people, transliterated for the rest."""
    if i % 3 == 2:
        a = _FOREIGN[i % len(_FOREIGN)]
        b = _FOREIGN_LAST[(i // len(_FOREIGN)) % len(_FOREIGN_LAST)]
        rest = i // (len(_FOREIGN) * len(_FOREIGN_LAST))
        return f"{a}·{b}" + (f"·{_GIVEN[rest % len(_GIVEN)]}{rest // len(_GIVEN)}" if rest else "")
    s = _SURNAMES[i % len(_SURNAMES)]
    rest = i // len(_SURNAMES)
    g1 = _GIVEN[rest % len(_GIVEN)]
    rest //= len(_GIVEN)
    g2 = _GIVEN[rest % len(_GIVEN)]
    rest //= len(_GIVEN)
    return s + g1 + g2 + (_roman(rest) if rest else "")


def _roman(n: int) -> str:
    # Disambiguates the rare name collisions of large catalogues without looking synthetic in digits.
    return "".join("甲乙丙丁戊己庚辛壬癸"[int(d)] for d in str(n))


def _title(i: int) -> str:
    n = len(_TITLE_CHARS)
    a, b, c = _TITLE_CHARS[i % n], _TITLE_CHARS[(i // n) % n], _TITLE_CHARS[(i // n // n) % n]
    rest = i // (n * n * n)
    return f"{a}{b}{c}" + (f"之{_roman(rest)}" if rest else "")


class _People:
    """A pool of people per role: recurring ones drawn Zipf-like, plus one-off people minted on demand.

    All random numbers are drawn in bulk up front (per-call numpy overhead dominated otherwise).
    """

    def __init__(self, rng: np.random.Generator, start_index: int, size: int, effect_sd: float,
                 zipf_a: float, name_only_share: float, id_base: int, slots: int, fresh_share: float):
        self.next_index = start_index
        self.start_index = start_index
        ranks = np.arange(1, size + 1, dtype=float)
        w = ranks ** -zipf_a
        cdf = np.cumsum(w / w.sum())
        self.fresh = (rng.random(slots) < fresh_share).tolist()
        self.picks = np.searchsorted(cdf, rng.random(slots)).tolist()
        self.cursor = 0
        self.kind_u = rng.random(slots).tolist()
        self.effect = rng.normal(0.0, effect_sd, size=slots).tolist()
        self.name_only_share = name_only_share
        self.id_base = id_base
        self.people: dict[int, tuple[str, str | None, float]] = {}

    def _mint(self, key: int) -> tuple[str, str | None, float]:
        idx = self.next_index
        self.next_index += 1
        n = idx - self.start_index
        name = _person_name(idx)
        u = self.kind_u[n]
        if u < self.name_only_share:
            pid = None  # known only by name: a subject_search link on the page
        elif u < 0.5:
            pid = str(27_000_000 + idx)  # newer people: www.douban.com/personage/ID/
        else:
            pid = str(self.id_base + idx)  # older people: /celebrity/ID/
        person = (name, pid, self.effect[n])
        self.people[key] = person
        return person

    def draw(self, k: int) -> list[tuple[str, str | None, float]]:
        out, seen = [], set()
        lo = self.cursor
        self.cursor += k
        for is_fresh, pick in zip(self.fresh[lo : lo + k], self.picks[lo : lo + k]):
            key = -self.next_index - 1 if is_fresh else pick
            if key in seen:
                continue
            seen.add(key)
            out.append(self.people.get(key) or self._mint(key))
        return out


def _mean(values) -> float:
    return sum(values) / len(values) if values else 0.0


def generate_catalogue(n_movies: int, seed: int = 0, *, tv_share: float = 0.05) -> list[dict]:
    """`n_movies` films (plus about `tv_share` as many TV subjects), ordered by douban_id. Deterministic."""
    if n_movies < 0:
        raise ValueError("n_movies must be >= 0")
    rng = np.random.default_rng(seed)
    n_tv = int(round(n_movies * tv_share))
    total = n_movies + n_tv
    # Ids ascend with gaps, like Douban's; unique by construction.
    ids = 1_290_000 + np.cumsum(rng.integers(1, 240, size=total))
    is_tv = np.zeros(total, dtype=bool)
    is_tv[rng.choice(total, size=n_tv, replace=False)] = True

    # Vectorised draws for the per-film shapes.
    n_dir = rng.choice([1] * 17 + [2, 2, 3], size=total)
    n_wri = rng.choice([0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 5], size=total)
    n_act = np.clip(np.round(rng.lognormal(np.log(6.5), 0.7, size=total)), 1, 40).astype(int)
    n_gen = rng.choice([1, 1, 2, 2, 2, 3, 3], size=total).tolist()
    n_cty = rng.choice([1] * 8 + [2, 3], size=total).tolist()
    genre_draws = np.searchsorted(np.cumsum(_GENRE_W / _GENRE_W.sum()), rng.random((total, 3))).tolist()
    country_draws = np.searchsorted(np.cumsum(_COUNTRY_W / _COUNTRY_W.sum()), rng.random((total, 3)))
    country_draws = np.minimum(country_draws, len(COUNTRIES) - 1).tolist()
    runtime = np.clip(np.round(rng.lognormal(np.log(106), 0.17, size=total)), 40, 240).astype(int).tolist()
    years = rng.integers(YEAR_RANGE[0] - 2, YEAR_RANGE[1] + 3, size=total)
    in_range = rng.random(total) < 0.9  # most of the catalogue is inside the paper's range
    years = np.where(in_range, rng.integers(YEAR_RANGE[0], YEAR_RANGE[1] + 1, size=total), years).tolist()
    noise = rng.normal(0.0, 0.62, size=total).tolist()
    z_votes = rng.normal(size=total).tolist()
    u = rng.random((total, 12)).tolist()
    months = rng.integers(1, 13, size=total).tolist()
    days = rng.integers(1, 29, size=total).tolist()
    dup_of = rng.random(total).tolist()

    scale = max(n_movies, 50)
    directors = _People(rng, 0, max(20, int(scale * 0.45)), 0.75, 0.6, 0.01, 1_000_000,
                        int(n_dir.sum()), 0.35)
    writers = _People(rng, 10_000_000, max(20, int(scale * 0.6)), 0.25, 0.6, 0.02, 1_000_000,
                      int(n_wri.sum()), 0.45)
    actors = _People(rng, 20_000_000, max(50, int(scale * 0.35)), 0.5, 0.7, 0.03, 1_300_000,
                     int(n_act.sum()), ACTOR_FRESH_SHARE)
    n_dir, n_wri, n_act = n_dir.tolist(), n_wri.tolist(), n_act.tolist()

    entries: list[dict] = []
    titles_by_index: list[tuple[str, list]] = []
    for i in range(total):
        did = int(ids[i])
        ui = u[i]
        traits: list[str] = []
        cast = directors.draw(n_dir[i])
        pens = writers.draw(n_wri[i])
        stars = actors.draw(n_act[i])
        genres = list(dict.fromkeys(TOP_GENRES[g] for g in genre_draws[i][: n_gen[i]]))
        countries = list(dict.fromkeys(COUNTRIES[c] for c in country_draws[i][: n_cty[i]]))
        languages = list(dict.fromkeys(_LANGUAGE[c] for c in countries))
        if ui[0] < 0.15 and "英语" not in languages:
            languages.append("英语")
        title = _title(i)
        year = int(years[i])

        if not is_tv[i] and ui[1] < 0.012:
            # A concert or gala filed under 歌舞: the paper's rule 2 removes these.
            traits.append("concert")
            title = f"{cast[0][0]}{_CONCERT_WORDS[i % len(_CONCERT_WORDS)]}{year}"
            genres = ["歌舞"] + (["音乐"] if ui[2] < 0.5 else [])
            pens = []
        if not is_tv[i] and ui[3] < 0.01 and titles_by_index:
            # A second subject for one film (a 3D or restored version): same title, same directors.
            title, cast = titles_by_index[int(dup_of[i] * len(titles_by_index))]
            traits.append("duplicate")
        if not is_tv[i] and ui[4] < 0.02:
            stars = []  # the paper's example: a film page without 主演
            traits.append("no_actors")

        raw = (_mean([p[2] for p in cast]) + _mean([p[2] for p in pens]) + _mean([p[2] for p in stars[:5]])
               + _mean([_GENRE_EFFECT[g] for g in genres]) + _COUNTRY_EFFECT[countries[0]] + noise[i])
        # Real scores are left-skewed (a long tail of bad films, few above 9): stretch below, squeeze above.
        score = min(9.8, max(2.0, 7.33 + raw * (0.85 if raw > 0 else 1.15)))
        zs = (score - 7.2) / 1.1
        log_votes = 3.3 + 1.05 * (0.43 * zs + 0.9 * z_votes[i])
        votes = int(round(10 ** log_votes))
        rating: float | None = round(score, 1)
        if votes < 30:
            rating, votes = None, None  # Douban shows 评价人数不足 / 暂无评分 and no count
            traits.append("no_score")
        comments = int(round((votes or 10) * (0.05 + 0.2 * ui[5])))
        # Not every viewer rates (看过 above the raters), and a film's 想看 grows with its audience.
        watched = int(round((votes or 10) * (1.2 + 0.6 * ui[5])))
        wishes = int(round(watched * (0.05 + 0.3 * ui[6])))
        reviews = int(round((votes or 10) * 0.004 * ui[6]))

        releases = _release_dates(year, months[i], days[i], countries, ui, traits)
        if any(p[1] is None for p in cast + pens + stars):
            traits.append("name_only_person")
        imdb = f"tt{1_000_000 + did % 9_000_000:07d}" if ui[7] < 0.7 else None
        rec = {
            "douban_id": did, "title": title, "year": year,
            "directors": [p[0] for p in cast], "director_ids": [p[1] for p in cast],
            "writers": [p[0] for p in pens], "writer_ids": [p[1] for p in pens],
            "actors": [p[0] for p in stars], "actor_ids": [p[1] for p in stars],
            "genres": genres, "countries": countries, "languages": languages,
            "runtime_min": runtime[i] if ui[8] > 0.02 else None,
            "release_dates": releases, "rating": rating, "votes": votes,
            "review_count": reviews, "comment_count": comments, "imdb_id": imdb,
            "wish_count": wishes, "watched_count": watched,
        }
        # Canonical by construction (the tests check every entry against normalise_record): calling it here
        # would double the time to generate a 140k-film catalogue.
        rec["release_date"] = first_release(rec["release_dates"])
        entry = {f: rec[f] for f in FIELDS}
        if is_tv[i]:
            entry["kind"] = "tv"
            entry["episodes"] = int(6 + ui[9] * 40)
            entry["episode_min"] = int(20 + ui[10] * 40)
        else:
            entry["kind"] = "film"
            if "concert" not in traits and "duplicate" not in traits:
                titles_by_index.append((title, cast))
        rd = entry["release_date"]
        if rd and not YEAR_RANGE[0] <= int(rd[:4]) <= YEAR_RANGE[1]:
            traits.append("out_of_range")
        entry["traits"] = tuple(traits)
        entries.append(entry)
    return entries


def _release_dates(year: int, month: int, day: int, countries: list[str], u: list[float],
                   traits: list[str]) -> list[dict]:
    if u[11] < 0.02:
        traits.append("no_date")
        return []  # the page shows only <span class="year">
    if u[11] < 0.05:
        traits.append("year_only")
        return [{"date": str(year), "region": _REGION.get(countries[0], countries[0]), "rerelease": False}]
    first = {"date": f"{year}-{month:02d}-{day:02d}", "region": _REGION.get(countries[0], countries[0]),
             "rerelease": False}
    out = [first]
    if u[9] < 0.3:
        out.insert(0, {"date": f"{year}-{max(1, month - 1):02d}-{day:02d}",
                       "region": _FESTIVALS[int(u[10] * len(_FESTIVALS))], "rerelease": False})
    if countries[0] != "中国大陆" and u[10] < 0.4:
        m2 = min(12, month + 2)
        out.append({"date": f"{year}-{m2:02d}-{day:02d}", "region": "中国大陆", "rerelease": False})
    if u[2] < 0.05:
        out.append({"date": f"{min(2024, year + 3 + int(u[9] * 8))}-{month:02d}-{day:02d}",
                    "region": "中国大陆重映", "rerelease": True})
        traits.append("rerelease")
    return out


def coming_films(n: int, seed: int = 0, *, after_id: int) -> list[dict]:
    """`n` films not out yet, as catalogue entries with ids above `after_id`: dated in COMING_YEAR (in the
    future, yet fixed, so the catalogue stays deterministic), no score, no 看过, a 想看 count; trait "coming".
    Their people and genres come from a second catalogue of the same shape (seed + 1)."""
    pool = [e for e in generate_catalogue(2 * n + 10, seed + 1, tv_share=0)
            if not {"concert", "duplicate"} & set(e["traits"])][:n]
    out = []
    for k, e in enumerate(pool):
        did = after_id + 1000 * (k + 1)  # ids grow with time: the newest subjects have the largest
        date = f"{COMING_YEAR}-{1 + k % 12:02d}-{1 + (did // 1000) % 28:02d}"
        entry = {**e, "douban_id": did, "title": f"新{e['title']}", "year": COMING_YEAR, "rating": None,
                 "votes": None, "review_count": 0, "comment_count": e["comment_count"] // 10,
                 "release_dates": [{"date": date, "region": "中国大陆", "rerelease": False}], "release_date": date,
                 "wish_count": e["wish_count"] + e["watched_count"], "watched_count": None,
                 "traits": ("coming", "no_score")}
        out.append(entry)
    return out


def films(catalogue: Iterable[dict]) -> list[dict]:
    """The catalogue's films as plain canonical records (markers dropped, TV subjects left out)."""
    return [normalise_record(e) for e in catalogue if e["kind"] == "film"]


def films_in_years(catalogue: Iterable[dict], lo: int = YEAR_RANGE[0], hi: int = YEAR_RANGE[1]) -> list[dict]:
    """What a crawl of years lo..hi should store: films whose subject year is in range."""
    return [r for r in films(catalogue) if r["year"] is not None and lo <= r["year"] <= hi]


def store_catalogue(catalogue: list[dict], url_or_engine=None, *, source: str = "mock-catalogue",
                    batch: int = 5000, fetched_at: datetime | None = None) -> int:
    """Write the catalogue's films into a store (no crawl); returns how many were written."""
    engine = store.connect(url_or_engine) if url_or_engine is None or isinstance(url_or_engine, str) \
        else url_or_engine
    records = films(catalogue)
    written = 0
    for i in range(0, len(records), batch):
        written += store.upsert_records(engine, records[i : i + batch], source=source, fetched_at=fetched_at)
    return written
