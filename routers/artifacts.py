"""Per-expert artifacts: what post-hoc fitting makes from one expert alone, and reads back.

Contract:
- `Artifact(name, router, key, fit, kinds=("lora",))` describes one: `name` is the fitter's
  name (fit options are keyed by it, `composer fit NAME` backfills it), `router`/`key` where
  the registry keeps it on the expert (`key` may be a function of the router context, e.g.
  of its encoder), `fit(ctx, record, path, **options) -> (bytes, meta)` makes it from the
  expert's staged files and record only (never another expert's data: registering one
  expert refits no other), and `kinds` the expert kinds it applies to.
- `artifacts()`: every artifact some registered method reads, once each, derived from the
  method registrations (`routers.base.register_method`).
- `fit_expert(ctx, record, path, options=None)` runs every artifact that applies to the
  record's kind, with a progress bar (`ctx.progress`), and returns registry artifacts
  `[(router, key, bytes, meta)]` that the registry commits atomically with the expert.
  Options for an unknown fitter, or one that does not apply to this kind, are a `RouterError`.
- `load(ctx, record, artifact)` returns the stored bytes, or None when the expert has none
  (registered before that fitter existed, or straight into the registry). Routing never
  fits: `backfill(ctx, name, experts=None)` is the explicit step (`composer fit NAME`) that
  fits and stores a missing artifact for every ready expert (or the named ones) lacking it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry import NotFoundError
from routers.base import RouterError, methods

log = logging.getLogger(__name__)
Stored = tuple[str, str, bytes, dict]  # (router, key, data, meta) as the registry takes them


@dataclass(frozen=True)
class Artifact:
    name: str
    router: str
    key: str | Callable[[Any], str]
    fit: Callable[..., tuple[bytes, dict]]
    kinds: tuple[str, ...] = ("lora",)

    def key_for(self, ctx) -> str:
        return self.key if isinstance(self.key, str) else self.key(ctx)


def artifacts() -> list[Artifact]:
    seen: dict[str, Artifact] = {}
    for m in methods():
        for a in m.artifacts:
            seen.setdefault(a.name, a)
    return list(seen.values())


def named(name: str) -> Artifact | None:
    return next((a for a in artifacts() if a.name == name), None)


def fit_expert(ctx, record, path: str | Path, options: dict[str, dict] | None = None) -> list[Stored]:
    options = dict(options or {})
    todo = [a for a in artifacts() if record.kind in a.kinds]
    known = {a.name for a in artifacts()}
    if set(options) - known:
        raise RouterError(
            f"fit options for unknown fitter(s) {', '.join(sorted(set(options) - known))}; "
            f"known: {', '.join(sorted(known))}"
        )
    idle = set(options) - {a.name for a in todo}
    if idle:
        raise RouterError(f"fit options for {', '.join(sorted(idle))} do not apply to a {record.kind} expert")
    out: list[Stored] = []
    for a in ctx.progress(todo, desc=f"fitting {record.name}"):
        data, meta = a.fit(ctx, record, Path(path), **options.get(a.name, {}))
        out.append((a.router, a.key_for(ctx), data, meta))
    return out


def load(ctx, record, artifact: Artifact) -> bytes | None:
    try:
        return ctx.registry.get_artifact(
            record.name, artifact.router, artifact.key_for(ctx), version=record.version
        )[1]
    except NotFoundError:
        return None


def backfill(ctx, name: str, experts: Sequence[str] | None = None, **options) -> dict:
    """Fit and store artifact `name` (with its fit `options`) for the ready experts that lack it."""
    artifact = named(name)
    if artifact is None:
        raise RouterError(f"no per-expert artifact {name!r}; known: {', '.join(a.name for a in artifacts())}")
    records = [r for r in ctx.experts if r.kind in artifact.kinds]
    if experts is not None:
        unknown = sorted(set(experts) - {r.name for r in records})
        if unknown:
            raise RouterError(
                f"{name}: unknown expert(s) {', '.join(unknown)} (or of a kind it does not apply to)"
            )
        records = [r for r in records if r.name in set(experts)]
    fitted, present = [], []
    for rec in ctx.progress(records, desc=f"backfilling {name}"):
        if load(ctx, rec, artifact) is not None:
            present.append(rec.name)
            continue
        data, meta = artifact.fit(ctx, rec, rec.path, **options)
        ctx.registry.put_artifact(
            rec.name, artifact.router, artifact.key_for(ctx), data, meta, version=rec.version
        )
        log.info("backfilled %s/%s of %s v%d", artifact.router, artifact.key_for(ctx), rec.name, rec.version)
        fitted.append(rec.name)
    return {"artifact": name, "fitted": fitted, "present": present}
