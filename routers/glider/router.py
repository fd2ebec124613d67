"""glider: per token, logits = PHATGOOSE local score + alpha * cosine(query, expert task), top-k.

The global score (cosine between the query's embedding — or an instruction written for it
— and each expert's task embedding) is computed here, per request; the host adds
alpha * global to every token's local gate logits. alpha=0 is exactly PHATGOOSE; a large
alpha follows the global ranking. With `global_top=m` the local gates choose only among the
m experts of best global score, per request (our option, not the paper's: a retrieve-then-
route shortlist; a prompt with two parts keeps both parts' experts, where a large alpha
keeps one). Needs fitted: phatgoose gates and glider task embeddings
(both made at registration); an expert without a task embedding gets no global term, and
no place in a shortlist (the plan says how many; `composer fit glider` backfills them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from routers.base import Query, Router, RoutingPlan
from routers.glider.fit import load_task_embedding
from routers.token import candidates, token_plan


class GliderRouter(Router):
    """PHATGOOSE gates plus alpha x a global task-embedding match, per request (GLIDER)."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        ctx, cfg = self.ctx, self.config
        names = candidates(self)
        if not names:
            return [token_plan(self, "phatgoose") for _ in batch]
        by_name = {r.name: r for r in ctx.experts}
        tasks = {n: load_task_embedding(ctx, by_name[n]) for n in names}
        names = [n for n in names if tasks[n] is not None]
        unfitted = (
            f"; {len(tasks) - len(names)} without a task embedding get no global term"
            if len(names) < len(tasks)
            else ""
        )
        if not names:
            return [token_plan(self, "phatgoose", note=unfitted) for _ in batch]
        texts = [q.prompt for q in batch]
        if cfg.write_query and ctx.writer is not None:
            texts = [ctx.writer.write([t]) for t in texts]
        sims = ctx.encoder.encode(texts) @ np.stack([tasks[n] for n in names]).T
        plans = []
        for s in sims:
            scores = {n: round(float(c), 4) for n, c in zip(names, s)}
            ranked = sorted(scores, key=lambda n: -scores[n])
            best = ranked[0]
            note = f" + {cfg.alpha:g} x global cosine (best: {best} {scores[best]:.3f}){unfitted}"
            shortlist = None
            if cfg.global_top is not None:
                shortlist = ranked[: cfg.global_top]
                note += f"; shortlist of the global top {cfg.global_top}: {', '.join(shortlist)}"
            plans.append(
                token_plan(
                    self,
                    "phatgoose",
                    bias={n: cfg.alpha * float(c) for n, c in zip(names, s)},
                    scores=scores,
                    note=note,
                    experts=shortlist,
                )
            )
        return plans
