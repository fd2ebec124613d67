"""coe: embed the prompt, classify its category (a vote of its k nearest labelled prompts),
send it to the category's expert.

Needs fitted: `coe/classifier.safetensors` on the base model (`composer fit coe`). When
the top class probability is below `threshold`, or the mapped expert is gone, the plan
falls back to `fallback` (a general expert) or the base model and says why.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from routers import knn
from routers.base import Query, Router, RouterError, RoutingPlan
from routers.coe.fit import KEY, ROUTER


def classify_and_map(
    router: Router, prompts: list[str], art_router: str, key: str, how_to_fit: str, what: str
) -> list[RoutingPlan]:
    found = router.ctx.load_artifact(art_router, key)
    if found is None:
        raise RouterError(f"{router.name} is not fitted for base {router.ctx.base!r}: {how_to_fit}")
    meta, data = found
    cats, mapping = meta["categories"], meta["map"]
    c = router.config
    probs = knn.predict(knn.from_bytes(data), router.ctx.encoder.encode(prompts), c.k, c.temperature)
    live = set(router.ctx.expert_names)
    plans = []
    for p in probs:
        j = int(np.argmax(p))
        cat, conf = cats[j], float(p[j])
        scores = {c: float(v) for c, v in sorted(zip(cats, p), key=lambda cv: -cv[1])[:5]}
        expert = mapping[cat]
        if conf < router.config.threshold:
            plans.append(
                router.fallback(
                    f"{what} {cat!r} has confidence {conf:.2f} < threshold {router.config.threshold:.2f}",
                    scores,
                )
            )
        elif expert not in live:
            plans.append(
                router.fallback(f"{what} {cat!r} maps to {expert!r}, which is not registered", scores)
            )
        else:
            plans.append(
                router.plan(
                    "select",
                    [expert],
                    scores=scores,
                    explanation=f"{what} {cat!r} (p={conf:.2f}) -> expert {expert}",
                )
            )
    return plans


class CoERouter(Router):
    """Category classifier (k-NN on prompt embeddings), then a category -> expert map."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        return classify_and_map(
            self, [q.prompt for q in batch], ROUTER, KEY, "run `composer fit coe`", "category"
        )
