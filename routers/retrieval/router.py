"""retrieval: top-1 expert by max cosine between the query and each expert's example embeddings
(`top_m` > 1: by the mean of its m best matches, semantic-router's aggregation).

Needs fitted: the per-expert `embeddings` artifact (made at registration). Abstains below
`threshold` to `fallback` or the base model; with `fitted_thresholds`, below the chosen
expert's own threshold (`retrieval/thresholds.json` on the base, `composer fit retrieval`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from routers.base import Query, Router, RouterError, RoutingPlan
from routers.retrieval.fit import KEY, ROUTER
from routers.semantic import route_by_similarity


class RetrievalRouter(Router):
    """Top-1 expert by max cosine to its example prompts (faiss)."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        c = self.config
        plans = route_by_similarity(self, batch, 1, "select", "max", c.depth, c.top_m)
        if not c.fitted_thresholds:
            return plans
        cuts = self._thresholds()
        out = []
        for plan in plans:
            best = plan.experts[0] if plan.experts and not plan.fallback else None
            s, t = plan.scores.get(best, 0.0), cuts.get(best)
            if best is not None and t is not None and s < t:
                plan = self.fallback(
                    f"score {s:.3f} of {best} is below its fitted threshold {t:.3f}", plan.scores
                )
            out.append(plan)
        return out

    def _thresholds(self) -> dict[str, float]:
        found = self.ctx.load_artifact(ROUTER, KEY)
        if found is None:
            raise RouterError(
                f"retrieval has no fitted thresholds for base {self.ctx.base!r}: "
                "`composer fit retrieval --data labelled.jsonl` ({prompt, expert})"
            )
        meta, data = found
        c = self.config
        if (meta["top_m"], meta["depth"]) != (c.top_m, c.depth):
            raise RouterError(
                f"retrieval's thresholds were fitted for top_m={meta['top_m']}, depth={meta['depth']}; "
                f"this request asks top_m={c.top_m}, depth={c.depth}: refit with those"
            )
        return json.loads(data)
