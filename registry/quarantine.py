"""Quarantine: expert versions that a host could not load or run, kept out of routing.

Contract (methods mixed into ``Registry``):
- ``quarantine(name, version, reason)`` marks a ready version (idempotent: the reason is
  updated); every process sees it at its next read (it is a write: the revision changes).
- ``quarantined()`` -> {(name, version): {"reason", "since"}} over ready versions, answered
  from memory while the registry's revision is unchanged (routing asks on every request).
- ``release(name, version=None)`` lifts it (every version of the name when none is given);
  returns how many were lifted. Removing an expert removes its quarantine with it.
"""

from __future__ import annotations

from sqlalchemy import select

from .db import Expert, Quarantine, as_utc


class QuarantineMixin:
    def quarantine(self, name: str, version: int, reason: str) -> None:
        with self._tx() as s:
            exp = self._find(s, name, version)
            row = s.get(Quarantine, exp.id)
            if row is None:
                s.add(Quarantine(expert_id=exp.id, reason=reason[:2000]))
            else:
                row.reason = reason[:2000]

    def release(self, name: str, version: int | None = None) -> int:
        with self._tx() as s:
            q = select(Expert.id).where(Expert.name == name)
            if version is not None:
                q = q.where(Expert.version == version)
            rows = s.scalars(select(Quarantine).where(Quarantine.expert_id.in_(q))).all()
            for row in rows:
                s.delete(row)
            return len(rows)

    def quarantined(self) -> dict[tuple[str, int], dict]:
        revision = self.revision()
        hit = self._lists.get(("quarantine",))
        if hit is not None and revision is not None and hit[0] == revision:
            return dict(hit[1])
        with self._tx() as s:
            rows = s.execute(
                select(Expert.name, Expert.version, Quarantine.reason, Quarantine.created_at)
                .join(Quarantine, Quarantine.expert_id == Expert.id)
                .where(Expert.status == "ready")
            ).all()
        found = {(n, v): {"reason": r, "since": as_utc(t).isoformat()} for n, v, r, t in rows}
        self._lists[("quarantine",)] = (revision, found)
        return dict(found)
