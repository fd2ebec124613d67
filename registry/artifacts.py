"""Router artifacts (gate vectors, prototypes, embeddings, classifiers) attached to experts.

Contract (methods mixed into ``Registry``):
- An artifact is opaque bytes plus JSON ``meta``, unique per (expert row, router, key); it
  belongs to the latest ready version of ``name`` unless a version is given.
- ``put_artifact`` writes the file atomically under a fresh name
  (``artifacts/<expert_id>/<router>/<key>.<uuid8>.<ext>``, ext = ``meta["format"]`` or
  "bin"), then upserts the row; the replaced file is deleted after the row commits, so a
  reader never sees a row whose file holds other bytes.
- ``get_artifact`` returns the record and the bytes, checked against the recorded sha256.
- ``artifacts(name=None)`` lists artifacts of the latest ready version of every name.
- router and key: ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}`` (safe as file names).
"""

from __future__ import annotations

import json
import re
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .db import Artifact, Expert, utcnow
from .errors import ConflictError, NotFoundError, RegistryError, ValidationError
from .records import ArtifactRecord
from .store import sha256_bytes

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
EXT_RE = re.compile(r"^[a-z0-9]{1,16}$")


class ArtifactsMixin:
    def _check_artifact(self, router, key, data, meta=None) -> tuple[str, str, bytes, dict]:
        for what, v in (("router", router), ("key", key)):
            if not isinstance(v, str) or not SLUG_RE.match(v):
                raise ValidationError(
                    f"artifact {what} {v!r} is invalid: use 1-128 chars of A-Z a-z 0-9 . _ -"
                )
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValidationError(f"artifact {router}/{key}: data must be bytes, got {type(data).__name__}")
        if meta is not None and not isinstance(meta, dict):
            raise ValidationError(f"artifact {router}/{key}: meta must be a dict")
        meta = dict(meta or {})
        try:
            json.dumps(meta, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValidationError(f"artifact {router}/{key}: meta is not JSON-serializable ({e})") from None
        return router, key, bytes(data), meta

    @staticmethod
    def _artifact_uri(expert_id: int, router: str, key: str, meta: dict) -> str:
        ext = str(meta.get("format", "bin"))
        ext = ext if EXT_RE.match(ext) else "bin"
        return f"artifacts/{expert_id}/{router}/{key}.{uuid.uuid4().hex[:8]}.{ext}"

    @staticmethod
    def _art_query(expert_id: int, router: str, key: str):
        return select(Artifact).where(
            Artifact.expert_id == expert_id, Artifact.router == router, Artifact.key == key
        )

    def _art(self, row: Artifact, exp: Expert) -> ArtifactRecord:
        return ArtifactRecord.from_row(row, exp, self.store.path(row.uri))

    def put_artifact(
        self,
        name: str,
        router: str,
        key: str,
        data: bytes,
        meta: dict | None = None,
        version: int | None = None,
    ) -> ArtifactRecord:
        router, key, data, meta = self._check_artifact(router, key, data, meta)
        with self._tx() as s:
            exp_id = self._find(s, name, version).id
        rel = self._artifact_uri(exp_id, router, key, meta)
        self.store.write_file_atomic(rel, data)
        old = None
        try:
            with self._tx() as s:
                exp = s.get(Expert, exp_id)
                if exp is None or exp.status != "ready":
                    raise NotFoundError(f"expert '{name}' was removed")
                row = s.scalars(self._art_query(exp_id, router, key)).first()
                if row is None:
                    row = Artifact(expert_id=exp_id, router=router, key=key)
                    s.add(row)
                else:
                    old = row.uri
                row.uri, row.sha256, row.meta, row.created_at = rel, sha256_bytes(data), meta, utcnow()
                s.flush()
                rec = self._art(row, exp)
        except BaseException as e:
            self.store.remove(rel)
            if isinstance(e, IntegrityError):
                raise ConflictError(
                    f"artifact {router}/{key} of '{name}' was written concurrently; retry"
                ) from None
            raise
        if old and old != rel:
            self.store.remove(old)
        return rec

    def get_artifact(
        self, name: str, router: str, key: str, version: int | None = None
    ) -> tuple[ArtifactRecord, bytes]:
        for attempt in range(3):  # a concurrent put may replace the file between row and read
            with self._tx() as s:
                exp = self._find(s, name, version)
                row = s.scalars(self._art_query(exp.id, router, key)).first()
                if row is None:
                    raise NotFoundError(f"expert '{name}' has no artifact {router}/{key}")
                rec = self._art(row, exp)
            try:
                data = rec.path.read_bytes()
            except FileNotFoundError:
                if attempt == 2:
                    raise RegistryError(
                        f"artifact {router}/{key} of '{name}': file {rec.uri} is missing"
                    ) from None
                continue
            if sha256_bytes(data) != rec.sha256:
                raise RegistryError(f"artifact {router}/{key} of '{name}' is corrupt (sha256 mismatch)")
            return rec, data
        raise AssertionError("unreachable")

    def artifacts(
        self, name: str | None = None, router: str | None = None, version: int | None = None
    ) -> list[ArtifactRecord]:
        with self._tx() as s:
            exps = [self._find(s, name, version)] if name is not None else s.scalars(self._latest()).all()
            by_id = {e.id: e for e in exps}
            q = select(Artifact).where(Artifact.expert_id.in_(list(by_id)))
            if router is not None:
                q = q.where(Artifact.router == router)
            rows = s.scalars(q.order_by(Artifact.expert_id, Artifact.router, Artifact.key)).all()
            return [self._art(r, by_id[r.expert_id]) for r in rows]

    def delete_artifacts(self, name: str, router: str | None = None, version: int | None = None) -> int:
        with self._tx() as s:
            exp = self._find(s, name, version)
            q = select(Artifact).where(Artifact.expert_id == exp.id)
            rows = s.scalars(q.where(Artifact.router == router) if router is not None else q).all()
            rels = [r.uri for r in rows]
            for r in rows:
                s.delete(r)
        for rel in rels:
            self.store.remove(rel)
        return len(rels)
