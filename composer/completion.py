"""What one executed request returns: `Completion` (torch-free; the executor and the endpoints make it).

Contract: `Completion(text, plan, expert, logprob, token_ids, finish_reason, candidates,
prompt_tokens, generated=None, cost=None)`: `expert` is the expert whose output it is
(an ensemble's winner; None for base and mixtures); `completion_tokens` is the number of
generated tokens (`generated` where token ids are not known: endpoint experts); `cost` the
request's price from its experts' prices per 1M tokens (None when none has a price).
`Completion.of(generation, plan, expert)` wraps a host `Generation`; `to_dict()` is JSON-safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from routers import RoutingPlan


@dataclass
class Completion:
    text: str
    plan: RoutingPlan
    expert: str | None  # the expert whose output this is (ensemble winner); None for base/merge
    logprob: float
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "stop"
    candidates: dict[str, float] = field(default_factory=dict)  # ensemble: expert -> mean log-lik
    prompt_tokens: int = 0
    generated: int | None = None  # tokens generated where token_ids are not known (endpoints)
    cost: float | None = None  # price of this request (the experts' prices per 1M tokens)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids) if self.generated is None else self.generated

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "expert": self.expert,
            "logprob": self.logprob,
            "finish_reason": self.finish_reason,
            "candidates": self.candidates,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "routing": self.plan.model_dump(),
        }

    @classmethod
    def of(cls, g, plan: RoutingPlan, expert: str | None, candidates=None) -> Completion:
        return cls(
            g.text, plan, expert, g.logprob, g.token_ids, g.finish_reason, candidates or {}, g.prompt_tokens
        )
