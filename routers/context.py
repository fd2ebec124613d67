"""What a router may use, shared by all routers of one base model and built lazily.

Contract: `RouterContext(registry, base, encoder=None, experts=None, writer=None,
fitting_host=None, progress=None, score=None, pricing=None)`:
- `experts`: the ready experts routing may pick: LoRA experts of `base`, whole-model and
  endpoint experts (a callable may supply them, so the list follows runtime registration);
  `expert_names` the same names. `adapter_names`: the LoRA experts only — what can be
  merged, ensembled in one batch or gated per token inside the host.
- `encoder` (MiniLM by default, loaded on first use), `embeddings(record)` (the expert's
  stored embeddings artifact, cached; None when it has none) and `index` (an `ExampleIndex`
  over the experts that have embeddings, rebuilt when the experts change, after
  `invalidate()`, and — while an expert lacks embeddings — after any registry write).
  Routing only loads artifacts: an expert without one is left out (logged) until `composer
  fit embeddings` backfills it, in this process or another.
- `load_artifact(router, key)` / `save_artifact(...)`: artifacts fitted over *all* experts
  of this base (CoE classifier, Bench-CoE regressor) live on the base model's record.
- Injected by the caller, so routers never import the serving core: `fitting_host()`
  returns a private, frozen copy of the base model for fitters that need forward passes
  (PHATGOOSE gates; loaded once from the `fitting_host` factory; hold `fit_lock` while
  using it; never the serving host), `progress(iterable, desc=...)` wraps long loops in a
  progress bar (default: none), `score(rows)` evaluates experts on labelled prompts
  (Bench-CoE fitting without results) and `writer` is GLIDER's instruction writer
  (`routers.glider.writers`, or None: descriptions and examples stand in); `pricing`
  (`routers.cost.Pricing`) prices experts for cost-aware routing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from registry import NotFoundError, Registry
from registry.records import ExpertRecord
from routers.artifacts import load
from routers.base import RouterError
from routers.cost import Pricing
from routers.embeddings import EMBEDDINGS, read_embeddings
from routers.encoders import Encoder, MiniLM
from routers.index import ExampleIndex

log = logging.getLogger(__name__)


def _no_progress(iterable, **_):
    return iterable


class RouterContext:
    def __init__(
        self,
        registry: Registry,
        base: str,
        encoder: Encoder | None = None,
        experts: Callable[[], list[ExpertRecord]] | None = None,
        writer=None,
        fitting_host: Callable[[], object] | None = None,
        progress: Callable | None = None,
        score: Callable[[list[dict]], list[dict]] | None = None,
        pricing: Pricing | None = None,
    ):
        self.registry, self.base = registry, base
        self._encoder, self.writer = encoder, writer
        self._load_fit_host, self._fit_host = fitting_host, None
        self.progress = progress or _no_progress
        self.score = score
        self.pricing = pricing or Pricing(registry)
        self.fit_lock = threading.Lock()
        self._experts = experts or (lambda: registry.list(kind="lora", base=base))
        self._emb: dict[tuple[str, int], np.ndarray | None] = {}
        self._memo: dict[tuple[str, str, int], object] = {}
        self._index: ExampleIndex | None = None
        self._index_key: tuple = ()
        self._index_revision: str | None = None  # set while some expert lacks embeddings

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = MiniLM()
        return self._encoder

    @property
    def experts(self) -> list[ExpertRecord]:
        return self._experts()

    @property
    def expert_names(self) -> list[str]:
        return [r.name for r in self.experts]

    @property
    def adapter_names(self) -> list[str]:
        return [r.name for r in self.experts if r.kind == "lora"]

    def fitting_host(self):
        if self._fit_host is None:
            if self._load_fit_host is None:
                raise RouterError(
                    "this router context has no fitting host (fitters that run the base model "
                    "need one: build the context with fitting_host=...)"
                )
            self._fit_host = self._load_fit_host()
        return self._fit_host

    def embeddings(self, record: ExpertRecord) -> np.ndarray | None:
        key = (record.name, record.version)
        if key not in self._emb:
            data = load(self, record, EMBEDDINGS)
            if data is None:
                log.warning(
                    "expert %s v%d has no %s embeddings: semantic routers skip it until "
                    "`composer fit embeddings`",
                    record.name,
                    record.version,
                    self.encoder.name,
                )
            self._emb[key] = None if data is None else read_embeddings(data)
        return self._emb[key]

    @property
    def index(self) -> ExampleIndex:
        """Rebuilt when the experts change, or (while some expert lacks embeddings) after any
        registry write: a backfill by another process is picked up at the next request."""
        experts = self.experts
        key = tuple(sorted((r.name, r.version) for r in experts))
        stale = self._index_revision is not None and self.registry.revision() != self._index_revision
        if self._index is None or key != self._index_key or stale:
            self._forget(set(key))
            vectors = {r.name: self.embeddings(r) for r in experts}
            self._index = ExampleIndex({n: v for n, v in vectors.items() if v is not None})
            self._index_key = key
            self._index_revision = (
                self.registry.revision() if any(v is None for v in vectors.values()) else None
            )
        return self._index

    def invalidate(self) -> None:
        """Drop what is cached about experts (the index, embeddings, memos): read again when next needed."""
        self._index = None
        self._forget({(r.name, r.version) for r in self.experts})

    def _forget(self, live: set[tuple[str, int]]) -> None:
        """Keep cached embeddings and memos of live experts only, and no 'has none' answers."""
        self._emb = {k: v for k, v in self._emb.items() if k in live and v is not None}
        self._memo = {k: v for k, v in self._memo.items() if k[1:] in live}

    def memo(self, key: tuple[str, str, int], load: Callable[[], object]):
        """`load()` cached per (what, expert, version); None (not fitted yet) is not cached."""
        if key not in self._memo:
            value = load()
            if value is None:
                return None
            self._memo[key] = value
        return self._memo[key]

    def load_artifact(self, router: str, key: str) -> tuple[dict, bytes] | None:
        try:
            rec, data = self.registry.get_artifact(self.base, router, key)
        except NotFoundError:
            return None
        return rec.meta, data

    def save_artifact(self, router: str, key: str, data: bytes, meta: dict) -> None:
        self.registry.put_artifact(self.base, router, key, data, meta)
