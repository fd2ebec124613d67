"""centroid: top-1 expert by cosine to the mean embedding of its description and examples.

Needs fitted: the per-expert `embeddings` artifact (made at registration).
"""

from __future__ import annotations

from collections.abc import Sequence

from routers.base import Query, Router, RoutingPlan
from routers.semantic import route_by_similarity


class CentroidRouter(Router):
    """Top-1 expert by cosine to its mean example embedding."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        return route_by_similarity(self, batch, 1, "select", "centroid")
