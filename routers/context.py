"""What a router may use, shared by all routers of one base model and built lazily.

Contract: `RouterContext(registry, base, encoder=None, experts=None)`:
- `experts`: the ready experts routing may pick: LoRA experts of `base` and whole-model
  experts (a callable may supply them, so the list follows runtime registration);
  `expert_names` the same names. `adapter_names`: the LoRA experts only — what can be
  merged, ensembled in one batch or gated per token inside the host.
- `encoder` (MiniLM by default, loaded on first use), `embeddings(name)` (cached registry
  artifact) and `index` (an `ExampleIndex` over all experts, rebuilt after `invalidate()`).
- `load_artifact(router, key)` / `save_artifact(...)`: artifacts fitted over *all* experts
  of this base (CoE classifier, Bench-CoE regressor) live on the base model's record.
- `fitting_host()`: a private, frozen copy of the base model (a `composer.host.Host`, no
  adapters) for post-hoc fitters that need forward passes (PHATGOOSE gates), loaded once;
  hold `fit_lock` while using it. Never the serving host, so fitting does not stall serving.
- `writer`: GLIDER's instruction writer (`routers.glider.writers`), or None: descriptions
  and examples stand in for written instructions.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from registry import NotFoundError, Registry
from registry.records import ExpertRecord
from routers.embeddings import load_embeddings
from routers.encoders import Encoder, MiniLM
from routers.index import ExampleIndex


class RouterContext:
    def __init__(self, registry: Registry, base: str, encoder: Encoder | None = None,
                 experts: Callable[[], list[ExpertRecord]] | None = None, writer=None):
        self.registry, self.base = registry, base
        self._encoder, self.writer = encoder, writer
        self._fit_host = None
        self.fit_lock = threading.Lock()
        self._experts = experts or (lambda: registry.list(kind="lora", base=base))
        self._emb: dict[tuple[str, int], np.ndarray] = {}
        self._memo: dict[tuple[str, str, int], object] = {}
        self._index: ExampleIndex | None = None
        self._index_key: tuple = ()

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
            from composer.host import Host  # torch/transformers only when a fitter needs them
            host = Host.load(self.registry.get(self.base).path, name=self.base)
            host.model.requires_grad_(False)
            self._fit_host = host
        return self._fit_host

    def embeddings(self, record: ExpertRecord) -> np.ndarray:
        key = (record.name, record.version)
        if key not in self._emb:
            self._emb[key] = load_embeddings(self.registry, record, self.encoder)
        return self._emb[key]

    @property
    def index(self) -> ExampleIndex:
        experts = self.experts
        key = tuple(sorted((r.name, r.version) for r in experts))
        if self._index is None or key != self._index_key:
            self._index, self._index_key = ExampleIndex({r.name: self.embeddings(r) for r in experts}), key
        return self._index

    def invalidate(self) -> None:
        self._index = None
        live = {(r.name, r.version) for r in self.experts}
        self._emb = {k: v for k, v in self._emb.items() if k in live}
        self._memo = {k: v for k, v in self._memo.items() if k[1:] in live}

    def memo(self, key: tuple[str, str, int], load: Callable[[], object]):
        if key not in self._memo:
            self._memo[key] = load()
        return self._memo[key]

    def load_artifact(self, router: str, key: str) -> tuple[dict, bytes] | None:
        try:
            rec, data = self.registry.get_artifact(self.base, router, key)
        except NotFoundError:
            return None
        return rec.meta, data

    def save_artifact(self, router: str, key: str, data: bytes, meta: dict) -> None:
        self.registry.put_artifact(self.base, router, key, data, meta)
