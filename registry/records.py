"""Plain, immutable views of registry rows, and normalisation of user metadata.

Contract:
- ``ExpertRecord`` / ``ArtifactRecord`` are frozen dataclasses detached from any DB session
  (JSON fields are the values decoded for this read, which no live session holds: each
  registry call has its own session); ``.path`` is the absolute path of the stored files;
  ``to_dict()`` is JSON-safe (datetimes as ISO 8601 UTC strings, paths as strings).
- ``norm_examples`` accepts strings or ``{"prompt", "completion"}`` dicts and returns dicts;
  ``norm_strings`` accepts a string or an iterable of strings (tags, domains);
  ``norm_scores`` accepts benchmark -> finite number (or nested dict of them, None deletes).
  All raise ``ValidationError`` naming the bad item.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from .db import Artifact, Expert, as_utc
from .errors import ValidationError


def _jsonable(d: dict) -> dict:
    return {
        k: (v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, Path) else v)
        for k, v in d.items()
    }


@dataclass(frozen=True)
class ExpertRecord:
    id: int
    name: str
    version: int
    kind: str
    base_model: str | None
    source: str
    uri: str
    sha256: dict
    digest: str
    description: str
    tags: list
    domains: list
    examples: list
    scores: dict
    config: dict
    status: str
    created_at: datetime
    path: Path

    @classmethod
    def from_row(cls, row: Expert, path: Path) -> ExpertRecord:
        return cls(
            id=row.id,
            name=row.name,
            version=row.version,
            kind=row.kind,
            base_model=row.base_model,
            source=row.source or "",
            uri=row.uri,
            sha256=row.sha256 or {},
            digest=row.digest or "",
            description=row.description or "",
            tags=row.tags or [],
            domains=row.domains or [],
            examples=row.examples or [],
            scores=row.scores or {},
            config=row.config or {},
            status=row.status,
            created_at=as_utc(row.created_at),
            path=path,
        )

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class ArtifactRecord:
    id: int
    expert_id: int
    expert: str
    version: int
    router: str
    key: str
    uri: str
    sha256: str
    meta: dict
    created_at: datetime
    path: Path

    @classmethod
    def from_row(cls, row: Artifact, expert: Expert, path: Path) -> ArtifactRecord:
        return cls(
            id=row.id,
            expert_id=row.expert_id,
            expert=expert.name,
            version=expert.version,
            router=row.router,
            key=row.key,
            uri=row.uri,
            sha256=row.sha256,
            meta=copy.deepcopy(row.meta or {}),
            created_at=as_utc(row.created_at),
            path=path,
        )

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


def norm_strings(values, what: str) -> list[str]:
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values or ():
        if not isinstance(v, str) or not v.strip():
            raise ValidationError(f"{what} must be non-empty strings, got {v!r}")
        if v.strip() not in out:
            out.append(v.strip())
    return out


def norm_examples(examples) -> list[dict]:
    if isinstance(examples, (str, dict)):
        examples = [examples]
    out = []
    for i, e in enumerate(examples or ()):
        if isinstance(e, str):
            e = {"prompt": e}
        if not isinstance(e, dict) or set(e) - {"prompt", "completion"}:
            raise ValidationError(
                f"example {i} must be a string or a dict with 'prompt' and optional "
                f"'completion', got {e!r:.80}"
            )
        p, c = e.get("prompt"), e.get("completion")
        if not isinstance(p, str) or not p.strip():
            raise ValidationError(f"example {i}: prompt must be a non-empty string")
        if c is not None and not isinstance(c, str):
            raise ValidationError(f"example {i}: completion must be a string or null")
        out.append({"prompt": p, "completion": c})
    return out


def norm_scores(scores) -> dict:
    """Benchmark -> float or dict of floats; ``None`` values mean 'delete this score'."""
    if not isinstance(scores, dict):
        raise ValidationError(f"scores must be a dict of benchmark -> number, got {type(scores).__name__}")

    def ok(v) -> bool:
        if isinstance(v, dict):
            return all(isinstance(k, str) and ok(x) for k, x in v.items())
        return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)

    for k, v in scores.items():
        if not isinstance(k, str) or not k or (v is not None and not ok(v)):
            raise ValidationError(f"score {k!r}: expected a finite number or a dict of them, got {v!r:.80}")
    return copy.deepcopy(scores)
