"""The expert registry: metadata in a SQL database, files in an ArtifactStore.

Contract:
- ``Registry(home, db_url, store_dir)``: home defaults to ``DEFAULT_HOME`` (``~/.composer``);
  db_url to ``sqlite:///<home>/registry.db`` (any SQLAlchemy URL); store to ``<home>/store``.
  The registry reads no environment: entry points pass what ``composer.settings.Settings``
  read (``Settings.from_env().registry()``). Opening runs ``recover()``.
- Readers (``get``, ``list``, ``versions``, ``artifacts`` ...) only see 'ready' rows (plus
  'removed' ones where asked); by default the latest ready version of each name.
- ``remove`` flips rows to 'removed' (kept as history), deletes their artifact rows and all
  their files; a removed name can be registered again and gets the next version number. A
  base still used by ready adapters cannot be removed.
- ``recover(grace_s)`` deletes dead 'registering' rows and sweeps store files no row
  references (older than grace_s): after a crash no half expert and no stray file remains.
  Only the database that first claimed the store sweeps it (``owns_store``), so pointing a
  second database at the same store never deletes the first one's files.
- One DB session per call (``_tx``), so one Registry may be shared by threads; several
  processes may share one database and store. Every transaction that writes replaces the
  database's revision token (``revision()``); ``list`` answers from memory while the token
  is unchanged, so routing on every request costs one small query, not a read of every
  expert. Writes must go through a Registry (or replace the token themselves). Records are
  shared by the callers of ``list`` until the registry changes: treat them as read-only.
  ``with registry.snapshot():`` makes this thread's reads in the block share one token read
  (a request reads the registry several times: routing, residency, quarantine), so a
  request costs one small query and sees one consistent registry; a write in the block is
  seen by the reads after it.
- Registration: ``register.py``; artifacts: ``artifacts.py``; quarantine: ``quarantine.py``.
"""

from __future__ import annotations

import difflib
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import and_, event, false, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from .artifacts import ArtifactsMixin
from .cost import norm_cost
from .db import (
    MAX_VERSION,
    REVISION,
    Artifact,
    Expert,
    RegistryInfo,
    db_identity,
    ensure_revision,
    make_engine,
    utcnow,
)
from .errors import ConflictError, NotFoundError
from .quarantine import QuarantineMixin
from .records import ExpertRecord, norm_scores
from .register import RegisterMixin, stale
from .store import ArtifactStore

log = logging.getLogger(__name__)
_REVISION = select(RegistryInfo.value).where(RegistryInfo.key == REVISION)


DEFAULT_HOME = "~/.composer"


class Registry(RegisterMixin, ArtifactsMixin, QuarantineMixin):
    def __init__(
        self, home: str | Path | None = None, db_url: str | None = None, store_dir: str | Path | None = None
    ):
        self.home = Path(home if home is not None else DEFAULT_HOME).expanduser()
        self.home.mkdir(parents=True, exist_ok=True)
        default_db = f"sqlite:///{self.home.resolve()}/registry.db"
        self.db_url = db_url or default_db
        self.store = ArtifactStore(store_dir or self.home / "store")
        self.engine = make_engine(self.db_url)
        ensure_revision(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self._session, "after_flush", _wrote)
        self._lists: dict[tuple, tuple[str, list[ExpertRecord]]] = {}
        self._pin = threading.local()  # this thread's snapshot: depth, token
        self.owns_store = self.store.claim(db_identity(self.engine))
        if not self.owns_store:
            log.warning(
                "store %s belongs to another registry database; it will not be swept", self.store.root
            )
        self.recover()

    def __repr__(self) -> str:
        return f"Registry(db={self.engine.url!r}, store={str(self.store.root)!r})"

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """One session and transaction per call: commits on success, rolls back on error; a
        transaction that wrote replaces the revision token before it commits."""
        with self._session() as s, s.begin():
            yield s
            s.flush()
            if s.info.get("wrote"):
                self._pin.token = None  # a snapshot reads the new token at its next read
                s.execute(
                    update(RegistryInfo).where(RegistryInfo.key == REVISION).values(value=uuid.uuid4().hex)
                )

    def revision(self) -> str:
        """A token that changes whenever any process writes to this registry's database (inside
        `snapshot()`, the one read when the snapshot began or after its last write)."""
        pin = self._pin
        if getattr(pin, "depth", 0) and getattr(pin, "token", None) is not None:
            return pin.token
        with self.engine.connect() as c:  # Core, no ORM session: this runs on every request
            token = c.execute(_REVISION).scalar()
        if getattr(pin, "depth", 0):
            pin.token = token
        return token

    @contextmanager
    def snapshot(self) -> Iterator[Registry]:
        """This thread's reads in the block share one revision read (nested blocks: the outer one)."""
        pin = self._pin
        pin.depth = getattr(pin, "depth", 0) + 1
        try:
            yield self
        finally:
            pin.depth -= 1
            if not pin.depth:
                pin.token = None

    def _rec(self, row: Expert) -> ExpertRecord:
        return ExpertRecord.from_row(row, self.store.path(row.uri))

    # ---------------------------------------------------------------- queries
    def _find(self, s: Session, name: str, version: int | None = None) -> Expert:
        q = select(Expert).where(Expert.name == name, Expert.status == "ready")
        if (
            version is not None and not 1 <= version <= MAX_VERSION
        ):  # the database cannot hold it: none stored
            q = q.where(false())
        q = q.where(Expert.version == version) if version is not None else q.order_by(Expert.version.desc())
        row = s.scalars(q.limit(1)).first()
        if row is None:
            names = s.scalars(select(Expert.name).where(Expert.status == "ready").distinct()).all()
            close = difflib.get_close_matches(str(name), names, n=3)
            what = f"expert '{name}'" + (f" version {version}" if version is not None else "")
            hint = f" (did you mean: {', '.join(close)}?)" if close else ""
            raise NotFoundError(f"{what} is not registered{hint}")
        return row

    def _latest(self):
        sub = (
            select(Expert.name, func.max(Expert.version).label("v"))
            .where(Expert.status == "ready")
            .group_by(Expert.name)
            .subquery()
        )
        return select(Expert).join(sub, and_(Expert.name == sub.c.name, Expert.version == sub.c.v))

    def get(self, name: str, version: int | None = None) -> ExpertRecord:
        with self._tx() as s:
            return self._rec(self._find(s, name, version))

    def list(
        self, kind: str | None = None, base: str | None = None, include_removed: bool = False
    ) -> list[ExpertRecord]:
        """Latest ready version per name; with include_removed, every version of every status."""
        key, revision = (kind, base, include_removed), self.revision()
        hit = self._lists.get(key)
        if hit is not None and revision is not None and hit[0] == revision:
            return list(hit[1])
        with self._tx() as s:  # read after the token: the cache never keeps rows older than their token
            q = select(Expert).where(Expert.status != "registering") if include_removed else self._latest()
            if kind is not None:
                q = q.where(Expert.kind == kind)
            if base is not None:
                q = q.where(Expert.base_model == base)
            records = [self._rec(r) for r in s.scalars(q.order_by(Expert.name, Expert.version))]
        self._lists[key] = (revision, records)
        return list(records)

    def versions(self, name: str) -> list[ExpertRecord]:
        with self._tx() as s:
            rows = s.scalars(
                select(Expert)
                .where(Expert.name == name, Expert.status != "registering")
                .order_by(Expert.version)
            ).all()
            if not rows:
                self._find(s, name)
            return [self._rec(r) for r in rows]

    def path(self, record: ExpertRecord) -> Path:
        return self.store.path(record.uri)

    def counts(self) -> dict:
        with self._tx() as s:
            return {
                "experts": s.scalar(select(func.count()).select_from(Expert)),
                "artifacts": s.scalar(select(func.count()).select_from(Artifact)),
            }

    def set_scores(self, name: str, scores: dict, version: int | None = None) -> ExpertRecord:
        """Merge ``scores`` into the record's scores (a None value deletes that benchmark)."""
        scores = norm_scores(scores)
        with self._tx() as s:
            row = self._find(s, name, version)
            merged = {**(row.scores or {}), **scores}
            row.scores = {k: v for k, v in merged.items() if v is not None}
            return self._rec(row)

    def set_cost(self, name: str, cost: dict | None, version: int | None = None) -> ExpertRecord:
        """Replace the record's cost metadata (`registry.cost.norm_cost`; None clears it)."""
        cost = norm_cost(cost)
        with self._tx() as s:
            row = self._find(s, name, version)
            config = {k: v for k, v in (row.config or {}).items() if k != "cost"}
            row.config = {**config, **({"cost": cost} if cost else {})}
            return self._rec(row)

    # --------------------------------------------------------------- removal
    def remove(self, name: str, version: int | None = None) -> ExpertRecord:
        with self._tx() as s:
            rows = (
                [self._find(s, name, version)]
                if version is not None
                else s.scalars(select(Expert).where(Expert.name == name, Expert.status == "ready")).all()
            )
            if not rows:
                self._find(s, name)
            others = s.scalars(
                select(Expert.id).where(
                    Expert.name == name, Expert.status == "ready", Expert.id.not_in([r.id for r in rows])
                )
            ).first()
            if rows[0].kind == "base" and others is None:
                users = s.scalars(
                    select(Expert.name).where(Expert.base_model == name, Expert.status == "ready").distinct()
                ).all()
                if users:
                    raise ConflictError(
                        f"base '{name}' is used by {len(users)} adapter(s) "
                        f"({', '.join(sorted(users)[:5])}); remove them first"
                    )
            rels = []
            for r in rows:
                r.status = "removed"
                rels.append(r.uri)
                for a in list(r.artifacts):
                    rels.append(a.uri)
                    s.delete(a)
            rec = self._rec(max(rows, key=lambda r: r.version))
        for rel in rels:
            self.store.remove(rel)
        return rec

    def recover(self, grace_s: float = 600) -> dict:
        """Delete dead 'registering' rows with their files; sweep unreferenced files older than grace_s."""
        now, dead, n = utcnow(), [], 0
        with self._tx() as s:
            for row in s.scalars(select(Expert).where(Expert.status == "registering")).all():
                if stale(row, grace_s, now):
                    staging = (row.config or {}).get("_registering", {}).get("staging")
                    dead += [row.uri] + ([staging] if staging else [])
                    dead += [f"artifacts/{row.id}"] if self.owns_store else []
                    s.delete(row)
                    n += 1
            live = s.scalars(select(Expert).where(Expert.status.in_(("ready", "registering")))).all()
            refs = {r.uri for r in live} | set(s.scalars(select(Artifact.uri)).all())
            refs |= {r.config["_registering"]["staging"] for r in live if "_registering" in (r.config or {})}
        for rel in dead:
            self.store.remove(rel)
        return {"rows": n, "files": self.store.sweep(refs, grace_s) if self.owns_store else []}


def _wrote(session: Session, _flush_context) -> None:
    session.info["wrote"] = True
