"""centroid: top-1 expert by cosine to the mean embedding of its description and examples.

Needs fitted: the per-expert `embeddings` artifact (made at registration).
"""
from __future__ import annotations

from collections.abc import Sequence

from routers.base import Query, Router, RoutingPlan, register_router
from routers.centroid.config import CentroidConfig
from routers.semantic import pick, score_experts


@register_router("centroid", CentroidConfig)
class CentroidRouter(Router):
    """Top-1 expert by cosine to its mean example embedding."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        q = self.ctx.encoder.encode([x.prompt for x in batch])
        return [pick(self, r, 1, "select", "cosine to its centroid") for r in score_experts(self.ctx, q, 3, "centroid")]
