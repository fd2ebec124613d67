"""Post-hoc fitting at registration: per-expert artifacts made from that expert alone.

Contract: `@posthoc(name)` registers `fn(ctx, record, path) -> [(router, key, bytes, meta)]`,
run for a new expert while it is being registered (`record` is the draft, `path` the
staged adapter directory); `fit_expert(ctx, record, path)` runs every registered fitter
with a progress bar and returns all artifacts, which the registry commits atomically
with the expert. No fitter may read or change another expert's data, so registering one
expert never refits the others. Token-level routers add their fitters here.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from composer.progress import progress
from routers.embeddings import fit_embeddings

Artifact = tuple[str, str, bytes, dict]
_FITTERS: dict[str, Callable[..., list[Artifact]]] = {}


def posthoc(name: str):
    def deco(fn):
        _FITTERS[name] = fn
        return fn
    return deco


def fitters() -> list[str]:
    return list(_FITTERS)


def fit_expert(ctx, record, path: str | Path) -> list[Artifact]:
    out: list[Artifact] = []
    bar = progress(list(_FITTERS.items()), desc=f"fitting {record.name}")
    for name, fn in bar:
        bar.set_postfix(step=name, refresh=False)
        out += fn(ctx, record, Path(path))
    return out


@posthoc("embeddings")
def _embeddings(ctx, record, path: Path) -> list[Artifact]:
    return fit_embeddings(record, ctx.encoder)
