"""The movie store: one SQLAlchemy 2.x schema used by the spider, the importers, export and the clean stage.

Movies are keyed by Douban subject id; people by Douban person id when known, else by name. Every write is
an idempotent upsert: storing the same film twice updates it, never duplicates it. A film already stored is
combined with the incoming record by pipeline.film.merge, so a partial export never erases what a crawl found.
On SQLite every write transaction starts with BEGIN IMMEDIATE and waits generously for the lock, so
concurrent writers (two imports, a crawl and an import) queue instead of failing.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pipeline.errors import KadnError, RecordError, SchemaError
from pipeline.film.merge import SCALARS, merge_record
from pipeline.film.records import ATTRIBUTES, FIELDS, ID_FIELD, MAX_LEN, ROLES, first_release, gc_paused
from pipeline.redact import mask_url

SCHEMA_VERSION = "2"
# How a store of an older schema version becomes the current one: statements run in one transaction when the
# store is opened. Version 2 added the 想看 / 看过 counts, nullable, so every stored film keeps its values.
UPGRADES = {"1": ("ALTER TABLE movies ADD COLUMN wish_count INTEGER",
                  "ALTER TABLE movies ADD COLUMN watched_count INTEGER")}
DEFAULT_DATABASE_URL = "sqlite:///data/douban.sqlite"
ROLE_NAME = {role: role[:-1] for role in ROLES}  # a credit's stored role: directors -> director
ATTR_NAME = {"genres": "genre", "countries": "country", "languages": "language"}
_CHUNK = 500  # keeps IN (...) lists under SQLite's bound-parameter limit
# How long a SQLite writer waits for another one's transaction: a large import holds the lock for a while.
SQLITE_BUSY_TIMEOUT_S = 600


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "kadn_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class Movie(Base):
    __tablename__ = "movies"
    douban_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    title: Mapped[str] = mapped_column(String(MAX_LEN["title"]))
    year: Mapped[int | None] = mapped_column(Integer)
    runtime_min: Mapped[int | None] = mapped_column(Integer)
    rating: Mapped[float | None] = mapped_column(Float)
    votes: Mapped[int | None] = mapped_column(Integer)
    review_count: Mapped[int | None] = mapped_column(Integer)
    comment_count: Mapped[int | None] = mapped_column(Integer)
    imdb_id: Mapped[str | None] = mapped_column(String(16))
    wish_count: Mapped[int | None] = mapped_column(Integer)
    watched_count: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(64))
    first_fetched: Mapped[datetime | None] = mapped_column(DateTime)
    last_fetched: Mapped[datetime | None] = mapped_column(DateTime)


class Person(Base):
    __tablename__ = "people"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # 'id:<douban person id>' or 'name:<name>': one unique key for both ways of knowing a person.
    person_key: Mapped[str] = mapped_column(String(300), unique=True)
    douban_person_id: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(MAX_LEN["name"]))


class Credit(Base):
    __tablename__ = "credits"
    movie_id: Mapped[int] = mapped_column(ForeignKey("movies.douban_id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    billing: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)


class ReleaseDate(Base):
    __tablename__ = "release_dates"
    movie_id: Mapped[int] = mapped_column(ForeignKey("movies.douban_id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    date: Mapped[str] = mapped_column(String(10))
    region: Mapped[str | None] = mapped_column(String(MAX_LEN["region"]))
    rerelease: Mapped[bool] = mapped_column(Boolean)


class Attribute(Base):
    __tablename__ = "attributes"
    movie_id: Mapped[int] = mapped_column(ForeignKey("movies.douban_id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[str] = mapped_column(String(MAX_LEN["value"]))


class Ledger(DeclarativeBase):
    """The forecasts' own metadata: the table is made on the first forecast recorded, not with the films'
    schema, so a store (the shipped snapshot too) stays as it was until someone records a forecast."""


class Forecast(Ledger):
    """One forecast `kadn forecast` printed for a stored film: what a model (name + a digest of its files) said
    on a day. Imports and crawls write the films' tables only; nothing ever rewrites or drops this one."""

    __tablename__ = "forecasts"
    douban_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    made_on: Mapped[date] = mapped_column(Date, primary_key=True)  # UTC
    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex over the model's files
    score: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    level: Mapped[float] = mapped_column(Float)
    known_share: Mapped[float] = mapped_column(Float)
    wish_count: Mapped[int | None] = mapped_column(BigInteger)  # the film's wish count then, if the store has one


def database_url(url: str | None = None) -> str:
    """The explicit URL, else $DATABASE_URL, else the shipped SQLite snapshot."""
    return url or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def _sqlite_connect(dbapi_conn, _record):
    # The driver's own implicit BEGIN comes only before the first write, so a count read before it sees
    # another writer's changes; take transactions over (see _sqlite_begin).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn):
    # IMMEDIATE takes the write lock at the start (waiting up to the busy timeout): a deferred transaction
    # that reads and then writes fails at once with "database is locked" when another writer went first.
    options = conn.get_execution_options()
    if not options.get("kadn_autocommit"):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("kadn_write") else "BEGIN")


@contextmanager
def writing(engine: Engine) -> Iterator:
    """A write transaction: on SQLite it holds the write lock from its first statement to its commit."""
    with engine.connect().execution_options(kadn_write=True) as conn, conn.begin():
        yield conn


def connect(url: str | None = None, *, create: bool = True) -> Engine:
    """Open the store, creating the schema in an empty database; refuse a database of another schema."""
    url = database_url(url)
    options = {}
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0].removeprefix("file:"))  # file: URIs too
        try:
            exists = path.exists()
            if not create and not exists:
                raise KadnError(f"database {path} does not exist")
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror
            blocker = next((p for p in path.parents if p.exists() or p.is_symlink()), None)
            if blocker is not None and not blocker.is_dir():  # the path runs through a regular file
                reason = f"{blocker} is a file, not a directory"
            raise KadnError(f"cannot use database {path}: {reason}") from None
        if "timeout" not in url.partition("?")[2]:
            options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    try:
        engine = create_engine(url, **options)
    except (SQLAlchemyError, ImportError) as exc:
        shown = mask_url(url)
        raise KadnError(f"cannot open database {shown!r}: {exc.__class__.__name__}: "
                        f"{str(exc).replace(url, shown)}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    try:
        _check_schema(engine, create=create)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]  # libpq adds a hint line
        raise KadnError(f"cannot use database {mask_url(engine.url)!r}: {exc.__class__.__name__}: {reason}") from None
    return engine


def _check_schema(engine: Engine, *, create: bool) -> None:
    tables = set(inspect(engine).get_table_names())
    where = mask_url(engine.url)
    if not tables:
        if not create:
            raise SchemaError(f"database {where} is empty: run `kadn import` or `scrapy crawl douban` first")
        _create_schema(engine)
        tables = set(inspect(engine).get_table_names())
    if Meta.__tablename__ not in tables:
        raise SchemaError(
            f"database {where} was not written by douban-kadn (no kadn_meta table; it has "
            f"{', '.join(sorted(tables)[:6])}); point DATABASE_URL at a douban-kadn store or an empty database"
        )
    with engine.connect() as conn:
        version = conn.scalar(select(Meta.value).where(Meta.key == "schema_version"))
    if version in UPGRADES:
        _upgrade(engine, where, version)
        version = SCHEMA_VERSION
    if version != SCHEMA_VERSION:
        raise SchemaError(f"database {where} has schema version {version}, this douban-kadn expects {SCHEMA_VERSION}")
    missing = set(Base.metadata.tables) - tables
    if missing:
        raise SchemaError(f"database {where} lacks tables {', '.join(sorted(missing))}")


def _upgrade(engine: Engine, where: str, old: str) -> None:
    """Bring an older store to SCHEMA_VERSION in one transaction (a concurrent opener waits, then finds it done)."""
    try:
        with writing(engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7241017)"))  # one upgrader at a time
            version = conn.scalar(select(Meta.value).where(Meta.key == "schema_version"))
            for statement in UPGRADES.get(version, ()):
                conn.execute(text(statement))
            conn.execute(Meta.__table__.update().where(Meta.key == "schema_version").values(value=SCHEMA_VERSION))
    except SQLAlchemyError as exc:
        raise SchemaError(f"database {where} has schema version {old} and cannot be upgraded to {SCHEMA_VERSION} "
                          f"({exc.__class__.__name__}: {exc.orig}); open it once where it is writable") from None


def _create_schema(engine: Engine) -> None:
    """Create the tables once, even when several crawlers open one empty database at the same moment."""
    for attempt in range(3):
        try:
            # On SQLite each statement commits on its own, as the shipped snapshot was written (so that
            # `make snapshot` rebuilds it byte for byte); a concurrent creator is caught below.
            with engine.connect().execution_options(kadn_autocommit=True) as conn, conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(7241017)"))  # one creator at a time
                if Meta.__tablename__ in inspect(conn).get_table_names():
                    return  # another process won the race
                Base.metadata.create_all(conn)
                conn.execute(_insert(conn, Meta).values(key="schema_version", value=SCHEMA_VERSION))
            return
        except SQLAlchemyError:
            # SQLite has no advisory lock: a concurrent creator makes CREATE TABLE fail; look again.
            if attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))


def _insert(engine_or_conn, table):
    """The dialect's INSERT, which knows ON CONFLICT (SQLite and PostgreSQL both do)."""
    name = engine_or_conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise KadnError(f"unsupported database dialect {name!r}: use SQLite or PostgreSQL")


def _chunks(items: list, size: int = _CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def person_key(name: str, pid: str | None) -> str:
    return f"id:{pid}" if pid else f"name:{name}"


def upsert_records(
    engine: Engine, records: Iterable[dict], *, source: str, fetched_at: datetime | None = None, conn=None
) -> int:
    """Store canonical records (see pipeline.film.records) in one transaction; returns how many were written."""
    records = list(records)
    if not records:
        return 0
    if fetched_at is not None and fetched_at.tzinfo is not None:
        fetched_at = fetched_at.astimezone(timezone.utc).replace(tzinfo=None)  # stored as naive UTC
    if conn is None:
        with writing(engine) as conn:
            return _upsert(conn, records, source, fetched_at)
    return _upsert(conn, records, source, fetched_at)


def _upsert(conn, records: list[dict], source: str, fetched_at: datetime | None) -> int:
    # A film twice in one batch merges like a film already stored. Sorting by id makes every writer take
    # row locks in the same order, so concurrent crawlers on PostgreSQL cannot deadlock.
    by_id: dict[int, dict] = {}
    for rec in records:
        by_id[rec["douban_id"]] = merge_record(by_id.get(rec["douban_id"]), rec)
    records = [by_id[k] for k in sorted(by_id)]
    ids = [r["douban_id"] for r in records]

    stmt = _insert(conn, Movie)
    table = Movie.__table__
    # New films go in as they are (RETURNING names those this writer inserted). The others are then locked
    # (FOR UPDATE on PostgreSQL, the write lock on SQLite) so nobody changes them between the read and the
    # merge written below.
    inserted = set(conn.execute(stmt.on_conflict_do_nothing(index_elements=["douban_id"])
                                .returning(table.c.douban_id), _movie_rows(records, source, fetched_at)).scalars())
    existing = [i for i in ids if i not in inserted]
    stored = {r["douban_id"]: r for r in _read_records(conn, existing, lock=True)} if existing else {}
    last: dict[int, datetime | None] = {}
    for chunk in _chunks(existing):
        last.update(conn.execute(select(Movie.douban_id, Movie.last_fetched).where(Movie.douban_id.in_(chunk))).all())
    if fetched_at is not None:
        # A fetch older than what is stored (a slower concurrent crawler) must not overwrite newer values.
        records = [r for r in records if last.get(r["douban_id"]) is None or last[r["douban_id"]] <= fetched_at]
    updated = []
    for i, rec in enumerate(records):
        mid = rec["douban_id"]
        if mid not in inserted:
            # A newer fetch of a page stored from an older fetch of it supersedes that one's lists.
            newer_fetch = fetched_at is not None and last[mid] is not None
            records[i] = merge_record(stored[mid], rec, supersedes=newer_fetch)
            updated.append(records[i])
    if updated:
        updates = {k: stmt.excluded[k] for k in SCALARS}
        updates["source"] = stmt.excluded.source
        updates["first_fetched"] = func.coalesce(table.c.first_fetched, stmt.excluded.first_fetched)
        updates["last_fetched"] = func.coalesce(stmt.excluded.last_fetched, table.c.last_fetched)
        # executemany with one compiled statement: far cheaper than a multi-VALUES statement per chunk.
        conn.execute(stmt.on_conflict_do_update(index_elements=["douban_id"], set_=updates),
                     _movie_rows(updated, source, fetched_at))

    person_ids = _person_ids(conn, records)
    credits, attrs, dates = defaultdict(list), defaultdict(list), defaultdict(list)
    for r in records:
        mid = r["douban_id"]
        for role in ROLES:
            credits[ROLE_NAME[role], mid] = [
                {"movie_id": mid, "role": ROLE_NAME[role], "billing": billing,
                 "person_id": person_ids[person_key(name, pid)]}
                for billing, (name, pid) in enumerate(zip(r[role], r[ID_FIELD[role]]))]
        for attr in ATTRIBUTES:
            attrs[ATTR_NAME[attr], mid] = [{"movie_id": mid, "kind": ATTR_NAME[attr], "position": i, "value": v}
                                           for i, v in enumerate(r[attr])]
        dates[None, mid] = [{"movie_id": mid, "position": i, **d} for i, d in enumerate(r["release_dates"])]
    _replace_children(conn, Credit, Credit.role, credits)
    _replace_children(conn, Attribute, Attribute.kind, attrs)
    _replace_children(conn, ReleaseDate, None, dates)
    return len(by_id)


def _movie_rows(records: list[dict], source: str, fetched_at: datetime | None) -> list[dict]:
    return [{"douban_id": r["douban_id"], **{k: r[k] for k in SCALARS}, "source": source,
             "first_fetched": fetched_at, "last_fetched": fetched_at} for r in records]


def _replace_children(conn, model, kind_column, groups: dict[tuple, list[dict]]) -> None:
    """Replace each (kind, movie)'s child rows by the given ones (the merged lists: empty means none)."""
    by_kind: dict = defaultdict(list)
    rows = []
    for (kind, movie_id), group in groups.items():
        by_kind[kind].append(movie_id)
        rows += group
    for kind, ids in by_kind.items():
        for chunk in _chunks(ids):
            where = model.movie_id.in_(chunk)
            conn.execute(delete(model).where(where if kind_column is None else where & (kind_column == kind)))
    if rows:
        conn.execute(model.__table__.insert(), rows)


def _person_ids(conn, records: list[dict]) -> dict[str, int]:
    people: dict[str, dict] = {}
    for r in records:
        for role in ROLES:
            for name, pid in zip(r[role], r[ID_FIELD[role]]):
                key = person_key(name, pid)
                people.setdefault(key, {"person_key": key, "douban_person_id": pid, "name": name})
    rows = [people[k] for k in sorted(people)]  # one lock order for every writer
    stmt = _insert(conn, Person)
    if rows:
        # A person known by id keeps one row; the newest spelling of their name wins.
        conn.execute(stmt.on_conflict_do_update(index_elements=["person_key"], set_={"name": stmt.excluded.name}),
                     rows)
    ids: dict[str, int] = {}
    keys = list(people)
    for chunk in _chunks(keys):
        ids.update(conn.execute(select(Person.person_key, Person.id).where(Person.person_key.in_(chunk))).all())
    return ids


def lock_movies(conn) -> None:
    """Keep every other writer out of the movies until this transaction ends.

    SQLite's write transaction does so already; on PostgreSQL this mode admits readers only (and conflicts
    with itself), so counts taken before and after a write see no one else's films.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"LOCK TABLE {Movie.__tablename__} IN SHARE ROW EXCLUSIVE MODE"))


def count_movies(engine_or_conn) -> int:
    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.connect() as conn:
            return count_movies(conn)
    return engine_or_conn.scalar(select(func.count()).select_from(Movie)) or 0


def _release_date(dates: list[dict]) -> str | None:
    # A date written by another tool in a form we would not store must not break reading the store;
    # the clean stage drops such a record under its own reason.
    try:
        return first_release(dates)
    except RecordError:
        return None


def load_records(engine: Engine) -> list[dict]:
    """Every stored movie as canonical records, ordered by Douban id."""
    # Crawlers may be writing meanwhile: on PostgreSQL read every table from one snapshot.
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with gc_paused(), engine.connect().execution_options(**options) as conn, conn.begin():
        return _read_records(conn)


def _read_records(conn, ids: list[int] | None = None, *, lock: bool = False) -> list[dict]:
    """The stored movies (all, or those of `ids`) as canonical records, ordered by Douban id."""
    if ids is not None and len(ids) > _CHUNK:
        return [r for chunk in _chunks(sorted(ids)) for r in _read_records(conn, chunk, lock=lock)]

    def only(query, column):
        return query if ids is None else query.where(column.in_(ids))

    # Plain rows fetched in bulk, each child table once per role or kind in its key's order, then cut into
    # per-film lists by slicing: 100k films hold millions of credits, and an ORM object, a join to people
    # or a Python step per credit each cost seconds there.
    movie_query = only(select(Movie.douban_id, *(getattr(Movie, k) for k in SCALARS)).order_by(Movie.douban_id),
                       Movie.douban_id)
    movies = conn.execute(movie_query.with_for_update() if lock else movie_query).all()
    # Every field as one list over the films (in douban_id order), zipped into records at the end.
    fields = {f: list(c) for f, c in zip(("douban_id", *SCALARS), list(zip(*movies)) or [()] * (1 + len(SCALARS)))}
    films = np.fromiter(fields["douban_id"], dtype=np.int64, count=len(movies))

    def columns(query) -> tuple[list[tuple], list[tuple[int, int]]]:
        """The columns of `query`'s rows (movie_id first, ordered by it) and each film's (start, end) in them."""
        rows = conn.execute(query).all()
        cols = list(zip(*rows)) or [()] * len(query.selected_columns)
        keys = np.fromiter(cols[0], dtype=np.int64, count=len(rows))
        bounds = list(zip(np.searchsorted(keys, films, side="left").tolist(),
                          np.searchsorted(keys, films, side="right").tolist()))
        return cols, bounds

    def per_film(values: list, bounds: list[tuple[int, int]]) -> list[list]:
        return [values[a:b] for a, b in bounds]

    credits = {role: columns(only(select(Credit.movie_id, Credit.person_id).where(Credit.role == ROLE_NAME[role])
                                  .order_by(Credit.movie_id, Credit.billing), Credit.movie_id))
               for role in ROLES}
    people_query = select(Person.id, Person.name, Person.douban_person_id)
    if ids is None:
        people = conn.execute(people_query).all()
    else:
        wanted = sorted({p for cols, _ in credits.values() for p in cols[1]})
        people = [row for chunk in _chunks(wanted) for row in conn.execute(people_query.where(Person.id.in_(chunk)))]
    name_of = {pid: name for pid, name, _ in people}.__getitem__
    dpid_of = {pid: dpid for pid, _, dpid in people}.__getitem__
    for role, (cols, bounds) in credits.items():
        fields[role] = per_film(list(map(name_of, cols[1])), bounds)
        fields[ID_FIELD[role]] = per_film(list(map(dpid_of, cols[1])), bounds)
    for attr in ATTRIBUTES:
        cols, bounds = columns(only(select(Attribute.movie_id, Attribute.value).where(Attribute.kind == ATTR_NAME[attr])
                                    .order_by(Attribute.movie_id, Attribute.position), Attribute.movie_id))
        fields[attr] = per_film(list(cols[1]), bounds)
    cols, bounds = columns(only(select(ReleaseDate.movie_id, ReleaseDate.date, ReleaseDate.region, ReleaseDate.rerelease)
                                .order_by(ReleaseDate.movie_id, ReleaseDate.position), ReleaseDate.movie_id))
    fields["release_dates"] = per_film([{"date": d, "region": r, "rerelease": bool(x)} for d, r, x in zip(*cols[1:])],
                                       bounds)
    fields["release_date"] = list(map(_release_date, fields["release_dates"]))
    return [dict(zip(FIELDS, values)) for values in zip(*(fields[f] for f in FIELDS))]


def _ledger(conn) -> None:
    """Create the forecasts table if this store has none yet (a concurrent creator is waited for or wins)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(7241018)"))
    Ledger.metadata.create_all(conn, checkfirst=True)


def wish_counts(conn, ids: list[int]) -> dict[int, int | None]:
    """The stored wish count of each film (null where the page showed none)."""
    column = Movie.__table__.c.wish_count
    counts: dict[int, int | None] = {}
    for chunk in _chunks(sorted(set(ids))):
        counts.update(conn.execute(select(Movie.douban_id, column).where(Movie.douban_id.in_(chunk))).all())
    return counts


def record_forecasts(engine: Engine, rows: list[dict]) -> int:
    """Add forecasts to the ledger in one transaction: rows with douban_id, made_on, model, digest, score, low,
    high, level and known_share (wish_count is read from the store). The same film, day, model and digest
    again replaces the row."""
    if not rows:
        return 0
    with writing(engine) as conn:
        _ledger(conn)
        wishes = wish_counts(conn, [r["douban_id"] for r in rows])
        values = [{**r, "wish_count": wishes.get(r["douban_id"])} for r in rows]
        stmt = _insert(conn, Forecast)
        keys = [c.name for c in Forecast.__table__.primary_key]
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_={
            c.name: stmt.excluded[c.name] for c in Forecast.__table__.columns if c.name not in keys}), values)
    return len(rows)


def load_forecasts(engine: Engine) -> list[dict]:
    """Every recorded forecast with the film's stored rating now (None if it has none), ordered by film, day,
    model and digest; no ledger yet reads as none."""
    if Forecast.__tablename__ not in inspect(engine).get_table_names():
        return []
    query = (select(*Forecast.__table__.columns, Movie.rating)
             .join(Movie, Movie.douban_id == Forecast.douban_id, isouter=True)
             .order_by(Forecast.douban_id, Forecast.made_on, Forecast.model, Forecast.digest))
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
