"""Database schema and engine (SQLAlchemy 2.0 ORM).

Contract:
- Two main tables. ``experts``: one row per (name, version); ``status`` moves
  'registering' -> 'ready' -> 'removed'; only 'ready' rows are visible to readers.
  ``artifacts``: files a router/fitter made for one expert row, unique per
  (expert_id, router, key); deleted with the expert (FK ON DELETE CASCADE, and explicitly).
- JSON columns hold plain JSON (lists / dicts); timestamps are UTC (``utcnow``); SQLite
  returns naive datetimes, readers treat them as UTC (``as_utc``).
- ``quarantine``: expert rows a host could not load or run (the reason, when); a table of
  its own, so existing databases gain it by ``create_all`` with no migration.
- ``registry_info`` holds two rows. ``id``: a random identity of this database, which the
  artifact store records so that a store is only ever swept by the database that owns it
  (``db_identity``). ``revision``: a random token replaced by every transaction that writes
  (``Registry._tx``), so readers in any process can tell in one query whether anything
  changed since they last looked (``ensure_revision`` creates it).
- ``make_engine(url)`` accepts any SQLAlchemy URL. For SQLite it creates the parent
  directory, and every connection gets WAL journaling, foreign keys and a busy timeout.
  Tables are created on open (``create_all``, retried when another client creates them at the
  same moment; no migrations yet).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DatabaseError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

SQLITE_BUSY_TIMEOUT_MS = 30_000


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


class Base(DeclarativeBase):
    pass


MAX_VERSION = 2**31 - 1  # INTEGER is 32-bit on PostgreSQL; no stored version is larger


class Expert(Base):
    __tablename__ = "experts"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_expert_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # 'base' | 'lora' | 'model'
    base_model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source: Mapped[str] = mapped_column(Text, default="")
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[dict] = mapped_column(JSON, default=dict)
    digest: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list] = mapped_column(JSON, default=list)
    domains: Mapped[list] = mapped_column(JSON, default=list)
    examples: Mapped[list] = mapped_column(JSON, default=list)
    scores: Mapped[dict] = mapped_column(JSON, default=dict)
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="registering", index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    artifacts: Mapped[list[Artifact]] = relationship(
        back_populates="expert", cascade="all, delete-orphan", passive_deletes=True
    )


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("expert_id", "router", "key", name="uq_artifact_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    expert_id: Mapped[int] = mapped_column(ForeignKey("experts.id", ondelete="CASCADE"), index=True)
    router: Mapped[str] = mapped_column(String(128))  # router names are slugs of up to 128 characters
    key: Mapped[str] = mapped_column(String(128))
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    expert: Mapped[Expert] = relationship(back_populates="artifacts")


class Quarantine(Base):
    """An expert version that failed when a host loaded or ran it: out of routing until released."""

    __tablename__ = "quarantine"

    expert_id: Mapped[int] = mapped_column(ForeignKey("experts.id", ondelete="CASCADE"), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RegistryInfo(Base):
    __tablename__ = "registry_info"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


REVISION = "revision"


def _info(engine: Engine, key: str) -> str:
    """registry_info[key], set to a random token if missing (safe against concurrent openers)."""
    for _ in range(2):
        with Session(engine) as s, s.begin():
            row = s.get(RegistryInfo, key)
            if row is not None:
                return row.value
            try:
                s.add(RegistryInfo(key=key, value=uuid.uuid4().hex))
                s.flush()
            except IntegrityError:  # created concurrently: read it back
                continue
    with Session(engine) as s:
        return s.get(RegistryInfo, key).value


def db_identity(engine: Engine) -> str:
    """This database's random, persistent id (created on first use)."""
    return _info(engine, "id")


def ensure_revision(engine: Engine) -> None:
    _info(engine, REVISION)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    """Engine for any SQLAlchemy URL; tables are created if missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:" and not db.startswith("file:"):
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(parsed, pool_pre_ping=True)
    _create_tables(engine)
    return engine


def _create_tables(engine: Engine, attempts: int = 5) -> None:
    """create_all, safe when several clients open a fresh database at once: a concurrent
    creator makes CREATE TABLE fail ('already exists'); a retry skips what now exists."""
    for attempt in range(attempts):
        try:
            Base.metadata.create_all(engine)
            return
        except DatabaseError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
