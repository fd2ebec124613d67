"""uniform: every query gets the same merge, weight 1/n over all (or the configured) experts.
Needs nothing fitted.
"""

from __future__ import annotations

from collections.abc import Sequence

from routers.base import Query, Router, RouterError, RoutingPlan


class UniformRouter(Router):
    """Uniform merge of all (or a subset of) experts."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        live = self.ctx.adapter_names
        chosen = self.config.experts or live
        unknown = sorted(set(chosen) - set(live))
        if unknown:
            raise RouterError(
                f"uniform: unknown expert(s) {', '.join(unknown)}; registered: {', '.join(live)}"
            )
        if not chosen:
            return [self.fallback("no experts are registered for this base model") for _ in batch]
        what = "the configured subset" if self.config.experts else "every registered expert"
        return [
            self.plan(
                "merge", chosen, explanation=f"uniform merge of {what} ({len(chosen)}: {', '.join(chosen)})"
            )
            for _ in batch
        ]
