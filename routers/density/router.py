"""density: top-1 expert by the kernel density of its example embeddings at the query.

An expert's score is 1 + b·log((1/n)·Σ_i exp((cos_i − 1)/b)) over all n of its examples
(`routers.index.ExampleIndex.density`): a Parzen-window classifier with equal priors, in
cosine units. It sits between retrieval (b → 0: the max cosine, one lucky example decides)
and centroid (large b: the mean). A mean of the m best matches dilutes an expert registered
with a few unlike examples; here a query equal to one of an expert's n examples scores at
least 1 + b·log(1/n) (0.89 for n = 3 at b = 0.1). On real English (Debian summaries,
`bench/realtext.py`) it is the router closest to a logistic-regression probe. Abstains
below `threshold` to `fallback` or the base model.

Needs fitted: the per-expert `embeddings` artifact (made at registration).
"""

from __future__ import annotations

from collections.abc import Sequence

from routers.base import Query, Router, RoutingPlan
from routers.semantic import route_by_similarity


class DensityRouter(Router):
    """Top-1 expert by the kernel density of its examples at the query."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        return route_by_similarity(self, batch, 1, "select", "density", bandwidth=self.config.bandwidth)
