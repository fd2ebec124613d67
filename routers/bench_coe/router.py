"""bench_coe: query level predicts every expert's score on the prompt and picks the argmax;
subject level classifies the prompt's subject and uses the subject's best expert (as coe).

Needs fitted: `bench_coe/query.safetensors` or `bench_coe/subject.safetensors` on the
base model (`composer fit bench_coe`). Below `threshold` (predicted score, or subject
confidence) it falls back and says why; experts removed since fitting are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from routers import knn
from routers.base import Query, Router, RouterError, RoutingPlan
from routers.bench_coe.fit import KEYS, ROUTER
from routers.coe.router import classify_and_map

HOW = "run `composer fit bench_coe` (it evaluates the experts on their registered examples)"


class BenchCoERouter(Router):
    """Bench-CoE: per-query score regressor (or subject classifier), k-NN on evaluation results."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        prompts = [q.prompt for q in batch]
        if self.config.level == "subject":
            return classify_and_map(self, prompts, ROUTER, KEYS["subject"], HOW, "subject")
        found = self.ctx.load_artifact(ROUTER, KEYS["query"])
        if found is None:
            raise RouterError(f"bench_coe is not fitted for base {self.ctx.base!r}: {HOW}")
        meta, data = found
        live = set(self.ctx.expert_names)
        experts = meta["experts"]
        c = self.config
        pred = knn.predict(knn.from_bytes(data), self.ctx.encoder.encode(prompts), c.k, c.temperature)
        plans = []
        for p in pred:
            ranked = sorted(
                ((e, float(s)) for e, s in zip(experts, p) if e in live and not np.isnan(s)),
                key=lambda es: -es[1],
            )
            scores = dict(ranked[:5])
            if not ranked:
                plans.append(self.fallback("none of the experts bench_coe was fitted on is registered"))
            elif ranked[0][1] < self.config.threshold:
                plans.append(
                    self.fallback(
                        f"best predicted score {ranked[0][1]:.2f} ({ranked[0][0]}) < "
                        f"threshold {self.config.threshold:.2f}",
                        scores,
                    )
                )
            else:
                e, s = ranked[0]
                plans.append(
                    self.plan(
                        "select",
                        [e],
                        scores=scores,
                        explanation=f"predicted score {s:.2f} for {e} is the highest",
                    )
                )
        return plans
