"""loraretriever: top-k experts by similarity, uniform weights, fused by merge or ensemble.

LoraRetriever represents each LoRA by the mean embedding of a few of its training samples
and retrieves the top-k for the query; here that is the `centroid` scorer over the
registered examples (MiniLM instead of the paper's instruction-tuned retriever).
Needs fitted: the per-expert `embeddings` artifact.
"""
from __future__ import annotations

from collections.abc import Sequence

from routers.base import Query, Router, RoutingPlan, register_router
from routers.loraretriever.config import LoraRetrieverConfig
from routers.semantic import pick, score_experts


@register_router("loraretriever", LoraRetrieverConfig)
class LoraRetrieverRouter(Router):
    """Top-k experts by similarity, uniform weights, merged or ensembled."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        c = self.config
        q = self.ctx.encoder.encode([x.prompt for x in batch])
        what = "cosine to its centroid" if c.scorer == "centroid" else "max cosine to its examples"
        return [pick(self, r, c.top_k, c.combine, what) for r in score_experts(self.ctx, q, c.top_k, c.scorer)]
