"""Executing plans that select endpoint experts, with fallback to the plan's next-best expert.

Contract: `EndpointRunner(pool, live, run_elsewhere)`: `pool` is the `EndpointPool`,
`live()` the names of every expert that can serve now (servable LoRA, whole models,
endpoints), `run_elsewhere(prompt, plan, settings)` -> `Completion` executes a plan that
does not select an endpoint (the executor's own `execute`).
- `run(name, prompts, plans, settings)` -> one `Completion` per prompt from endpoint `name`.
- `stream(name, prompt, plan, settings)` yields the endpoint's deltas, then the `Completion`.
A row whose endpoint fails (down, past its timeout, 5xx, a redirect, a refused URL, or
still cooling down after a failure: `EndpointPool.down`) goes to the plan's other experts
by the router's scores, best first, skipping those that cannot serve now; the served plan
selects the one that answered, and its `fallback` and `explanation` say which endpoint(s)
failed and why. With none left (a request that named the endpoint has no scores) the row
is `ExpertUnavailable` (HTTP 503): no request waits on a dead endpoint beyond its timeout.
A stream that failed after its first delta cannot be taken back: `ExpertUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from composer.completion import Completion
from composer.endpoints.client import EndpointError, EndpointResult
from composer.endpoints.pool import EndpointPool
from composer.errors import ExpertUnavailable
from routers import RoutingPlan


def completion(r: EndpointResult, plan: RoutingPlan, name: str) -> Completion:
    return Completion(
        r.text, plan, name, 0.0, [], r.finish_reason, {}, r.prompt_tokens, generated=r.completion_tokens
    )


class EndpointRunner:
    def __init__(
        self,
        pool: EndpointPool,
        live: Callable[[], set[str]],
        run_elsewhere: Callable[[object, RoutingPlan, dict], Completion],
    ):
        self.pool, self.live, self.run_elsewhere = pool, live, run_elsewhere

    def _cooling(self, name: str) -> EndpointError | None:
        why = self.pool.down(name)
        if why is None:
            return None
        return EndpointError(
            "cooling down", f"a call less than {self.pool.cooldown_s:g} s ago failed ({why})"
        )

    def run(
        self, name: str, prompts: Sequence, plans: Sequence[RoutingPlan], settings: dict
    ) -> list[Completion]:
        cooling = self._cooling(name)
        results = [cooling] * len(prompts) if cooling else self.pool.generate(name, prompts, settings)
        return [
            self.fall_back(prompt, plan, name, r, settings)
            if isinstance(r, EndpointError)
            else completion(r, plan, name)
            for prompt, plan, r in zip(prompts, plans, results)
        ]

    def fall_back(
        self, prompt, plan: RoutingPlan, name: str, error: EndpointError, settings: dict
    ) -> Completion:
        failed, notes = {name}, [f"endpoint {name} failed ({error})"]
        live = self.live()
        ranked = [e for e, _ in sorted(plan.scores.items(), key=lambda kv: -kv[1]) if e in live]
        for alt in ranked:
            if alt in failed:
                continue
            why = f"{'; '.join(notes)}: served by the next best expert {alt}"
            alt_plan = plan.model_copy(
                update={
                    "experts": [alt],
                    "weights": [1.0],
                    "fallback": why,
                    "explanation": f"{plan.explanation}; {why}",
                }
            )
            if alt not in self.pool.names():
                return self.run_elsewhere(prompt, alt_plan, settings)
            cooling = self._cooling(alt)
            (r,) = [cooling] if cooling else self.pool.generate(alt, [prompt], settings)
            if not isinstance(r, EndpointError):
                return completion(r, alt_plan, alt)
            failed.add(alt)
            notes.append(f"endpoint {alt} failed ({r})")
        raise ExpertUnavailable(
            f"{'; '.join(notes)}; the plan has no other expert to fall back to: retry later"
        )

    def stream(self, name: str, prompt, plan: RoutingPlan, settings: dict) -> Iterator[str | Completion]:
        started = False
        try:
            if cooling := self._cooling(name):
                raise cooling
            for item in self.pool.stream(name, prompt, settings):
                if isinstance(item, str):
                    started = True
                    yield item
                else:
                    yield completion(item, plan, name)
        except EndpointError as e:
            if started:
                raise ExpertUnavailable(f"endpoint {name} failed mid-stream ({e})") from None
            c = self.fall_back(prompt, plan, name, e, settings)
            if c.text:
                yield c.text
            yield c
