"""retrieval: top-1 expert by max cosine between the query and each expert's example embeddings
(`top_m` > 1: by the mean of its m best matches, semantic-router's aggregation).

Needs fitted: the per-expert `embeddings` artifact (made at registration). Abstains below
`threshold` to `fallback` or the base model.
"""

from __future__ import annotations

from collections.abc import Sequence

from routers.base import Query, Router, RoutingPlan
from routers.semantic import route_by_similarity


class RetrievalRouter(Router):
    """Top-1 expert by max cosine to its example prompts (faiss)."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        return route_by_similarity(self, batch, 1, "select", "max", self.config.depth, self.config.top_m)
