"""retrieval: top-1 expert by max cosine between the query and each expert's example embeddings.

Needs fitted: the per-expert `embeddings` artifact (made at registration). Abstains below
`threshold` to `fallback` or the base model.
"""
from __future__ import annotations

from collections.abc import Sequence

from routers.base import Query, Router, RoutingPlan, register_router
from routers.retrieval.config import RetrievalConfig
from routers.semantic import pick


@register_router("retrieval", RetrievalConfig)
class RetrievalRouter(Router):
    """Top-1 expert by max cosine to its example prompts (faiss)."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        q = self.ctx.encoder.encode([x.prompt for x in batch])
        ranked = self.ctx.index.max_cosine(q, k=3, depth=self.config.depth)
        return [pick(self, r, 1, "select", "max cosine to its examples") for r in ranked]
