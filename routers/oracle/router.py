"""oracle: evaluation only. Each query must carry its `task`; it goes to `mapping[task]`, or
to the expert named like the task. Tasks with no known best expert (e.g. compositions)
fall back, and the plan says so. Needs nothing fitted.
"""

from __future__ import annotations

from collections.abc import Sequence

from routers.base import Query, Router, RouterError, RoutingPlan


class OracleRouter(Router):
    """Evaluation only: the expert known to be best for the query's task."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        live = set(self.ctx.expert_names)
        plans = []
        for q in batch:
            if q.task is None:
                raise RouterError("oracle is for evaluation: every query needs its 'task'")
            expert = self.config.mapping.get(q.task, q.task)
            if expert in live:
                plans.append(
                    self.plan("select", [expert], explanation=f"oracle: task {q.task!r} -> {expert}")
                )
            else:
                plans.append(self.fallback(f"oracle: no registered expert for task {q.task!r}"))
        return plans
