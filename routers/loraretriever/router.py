"""loraretriever: top-k experts by similarity, uniform weights, fused by merge or ensemble.

LoraRetriever represents each LoRA by the mean embedding of a few of its training samples
and retrieves the top-k for the query; here that is the `centroid` scorer over the
registered examples (MiniLM instead of the paper's instruction-tuned retriever).
Needs fitted: the per-expert `embeddings` artifact.
"""

from __future__ import annotations

from collections.abc import Sequence

from routers.base import Query, Router, RoutingPlan
from routers.semantic import route_by_similarity


class LoraRetrieverRouter(Router):
    """Top-k experts by similarity, uniform weights, merged or ensembled."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        return route_by_similarity(self, batch, self.config.top_k, self.config.combine, self.config.scorer)
