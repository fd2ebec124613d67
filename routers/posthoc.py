"""Post-hoc fitting at registration: per-expert artifacts made from that expert alone.

Contract: `@posthoc(name)` registers `fn(ctx, record, path, **options) -> [(router, key,
bytes, meta)]`, run for a new expert while it is being registered (`record` is the draft,
`path` the staged adapter directory); `fit_expert(ctx, record, path, options=None)` runs
every registered fitter with a progress bar (`options[name]` are that fitter's keyword
options, e.g. {"phatgoose": {"steps": 200}}) and returns all artifacts, which the registry
commits atomically with the expert. `run(name, ...)` runs one fitter;
`stored(ctx, record, fitter, router, key)` returns an expert's artifact bytes, running and
storing that fitter first for experts registered before it existed (a backfill). No
fitter may read or change another expert's data, so registering one expert never refits
the others. Fitters of LoRA-only artifacts return [] for other kinds.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from composer.progress import progress
from routers.base import RouterError
from routers.embeddings import fit_embeddings

log = logging.getLogger(__name__)
Artifact = tuple[str, str, bytes, dict]
_FITTERS: dict[str, Callable[..., list[Artifact]]] = {}


def posthoc(name: str):
    def deco(fn):
        _FITTERS[name] = fn
        return fn
    return deco


def fitters() -> list[str]:
    return list(_FITTERS)


def run(name: str, ctx, record, path: str | Path, **options) -> list[Artifact]:
    if name not in _FITTERS:
        raise KeyError(f"no post-hoc fitter {name!r}; known: {', '.join(_FITTERS)}")
    return _FITTERS[name](ctx, record, Path(path), **options)


def stored(ctx, record, fitter: str, router: str, key: str) -> bytes:
    from registry import NotFoundError
    try:
        return ctx.registry.get_artifact(record.name, router, key, version=record.version)[1]
    except NotFoundError:
        pass
    log.info("backfilling %s/%s of %s v%d", router, key, record.name, record.version)
    arts = run(fitter, ctx, record, record.path)
    for r, k, data, meta in arts:
        ctx.registry.put_artifact(record.name, r, k, data, meta, version=record.version)
    return next(data for r, k, data, _ in arts if (r, k) == (router, key))


def fit_expert(ctx, record, path: str | Path, options: dict[str, dict] | None = None) -> list[Artifact]:
    options = dict(options or {})
    unknown = set(options) - set(_FITTERS)
    if unknown:
        raise RouterError(f"fit options for unknown fitter(s) {', '.join(sorted(unknown))}; known: {', '.join(_FITTERS)}")
    out: list[Artifact] = []
    bar = progress(list(_FITTERS), desc=f"fitting {record.name}")
    for name in bar:
        bar.set_postfix(step=name, refresh=False)
        out += run(name, ctx, record, path, **options.get(name, {}))
    return out


@posthoc("embeddings")
def _embeddings(ctx, record, path: Path) -> list[Artifact]:
    return fit_embeddings(record, ctx.encoder)
