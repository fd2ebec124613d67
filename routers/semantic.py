"""Shared pieces of the semantic (embedding-similarity) routers.

Contract: `AbstainConfig` adds `threshold` (abstain below this similarity) and `fallback`
(expert to use then; default the base model) to the cost knob (`routers.cost.CostConfig`:
with `cost_weight`/`max_cost` every expert is scored and ranked by score - λ·cost; the
plan's scores are those, and the threshold applies to them). `score_experts(ctx, vectors, k, scorer)`
ranks experts per query by "max" (max-cosine over each expert's examples, faiss; with
`top_m` > 1 the mean of its m best examples), "centroid" (cosine to the mean embedding) or
"density" (the kernel density of its examples at the query, `bandwidth`; see
`routers.index`), best first. `pick(router, ranked, k)` turns a
ranking into a plan: the top `k` (uniform weights) unless the best score is below the
threshold, in which case it abstains with the reason. Whole-model experts can be selected,
not merged or ensembled: `route_by_similarity` ranks LoRA experts only for other modes. `route_by_similarity` is the whole
route method of the retrieval-style routers: encode, rank, pick.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from routers import cost
from routers.base import Mode, Router, RoutingPlan

Scorer = Literal["max", "centroid", "density"]
BANDWIDTH = 0.1  # the density scorer's kernel width (cosine units), chosen by bench/realtext.py


class AbstainConfig(cost.CostConfig):
    threshold: float | None = Field(
        None, ge=-1, le=1, description="abstain when the best cosine is below this"
    )
    fallback: str | None = Field(None, description="expert used when abstaining (default: the base model)")


SCORER_TEXT = {
    "max": "max cosine to its examples",
    "centroid": "cosine to its centroid",
    "density": "kernel density of its examples",
}


def score_experts(
    ctx,
    queries: np.ndarray,
    k: int,
    scorer: Scorer = "max",
    depth: int = 256,
    top_m: int = 1,
    bandwidth: float = BANDWIDTH,
) -> list[list[tuple[str, float]]]:
    if scorer == "max":
        return ctx.index.max_cosine(queries, k, depth=depth, top_m=top_m)
    if scorer == "density":
        return ctx.index.density(queries, k, bandwidth, depth=depth)
    names, C = ctx.index.centroids()
    if not names:
        return [[] for _ in queries]
    sims = queries @ C.T
    top = np.argsort(-sims, axis=1)[:, :k]
    return [[(names[j], float(s[j])) for j in row] for s, row in zip(sims, top)]


def pick(router: Router, ranked: list[tuple[str, float]], k: int, mode: Mode, what: str) -> RoutingPlan:
    scores = dict(ranked)
    if not ranked:
        return router.fallback("no experts are registered for this base model")
    best, s = ranked[0]
    threshold = router.config.threshold
    if threshold is not None and s < threshold:
        return router.fallback(f"best {what} {s:.3f} ({best}) is below the threshold {threshold:.3f}", scores)
    chosen = [e for e, _ in ranked[:k]]
    listed = ", ".join(f"{e} {sc:.3f}" for e, sc in ranked[: max(k, 3)])
    verb = {"select": "selected", "merge": "merged uniformly", "ensemble": "ensembled"}[mode]
    return router.plan(
        mode, chosen, scores=scores, explanation=f"{verb} {', '.join(chosen)} by {what} ({listed})"
    )


def route_by_similarity(
    router: Router,
    batch,
    k: int,
    mode: Mode,
    scorer: Scorer,
    depth: int = 256,
    top_m: int = 1,
    bandwidth: float = BANDWIDTH,
) -> list[RoutingPlan]:
    ctx, c = router.ctx, router.config
    q = ctx.encoder.encode([x.prompt for x in batch])
    adapters = None if mode == "select" else set(ctx.adapter_names)  # read once per batch
    extra = 0 if adapters is None else len(ctx.expert_names) - len(adapters)
    priced = cost.active(c)
    n = len(ctx.expert_names) if priced else max(k, 3) + extra  # a few more, to explain
    ranked = score_experts(ctx, q, n, scorer, depth, top_m, bandwidth)
    if adapters is not None:
        ranked = [[(e, s) for e, s in r if e in adapters] for r in ranked]
    what = {
        "max": SCORER_TEXT["max"] if top_m == 1 else f"mean cosine of its {top_m} best examples",
        "density": f"{SCORER_TEXT['density']} (bandwidth {bandwidth:g})",
    }.get(scorer, SCORER_TEXT[scorer])
    if priced:
        weight = c.cost_weight
        if weight == "calibrated":
            weight = cost.stored_weight(ctx, router.name, c.model_dump(exclude={"cost_weight", "max_cost"}))
        units = ctx.pricing.units(ctx.expert_names)
        ranked = [cost.rerank(r, lambda e: units.get(e, 0.0), weight, c.max_cost) for r in ranked]
        what += f" - {weight:g} x price" + (f", price <= {c.max_cost:g}" if c.max_cost is not None else "")
    return [pick(router, r, k, mode, what) for r in ranked]
