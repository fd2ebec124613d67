"""ensemble: output fusion. The top-k experts by similarity each generate an answer (as rows
of one heterogeneous batch); the executor keeps the answer with the highest mean token
log-likelihood under its own expert. The plan lists the candidates; the executor reports
which one won. Needs fitted: the per-expert `embeddings` artifact.
"""

from __future__ import annotations

from collections.abc import Sequence

from routers.base import Query, Router, RoutingPlan
from routers.semantic import route_by_similarity


class EnsembleRouter(Router):
    """Top-k experts run separately; the answer with the best mean log-likelihood wins."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        return route_by_similarity(self, batch, self.config.top_k, "ensemble", self.config.scorer)
