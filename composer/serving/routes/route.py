"""POST /v1/route: routing decisions and their explanations, without generating.

Contract: the body is a `RouteRequest` (`prompt`, a string or a list, or `messages`; `model`
"composer" by default; optional `routing`); the prompts pass `policy.check_prompts`, the
model and routing `policy.target`, and the answer is `{"object": "list", "model", "data":
[{"prompt", ...plan}]}`, one plan per prompt in order. Routing is model work: it holds an
`Admission` place. `plans_for(services, target, texts, deadline)` is the one way handlers
get plans (also for completions): a direct target's plan per text, else the backend's
router under the request's deadline, refused by `policy.check_plans` when a plan combines
more experts than the server allows.
"""

from __future__ import annotations

from fastapi import APIRouter

from composer.serving import policy
from composer.serving.deps import Services, State
from composer.serving.policy import Target
from composer.serving.schemas import RouteRequest
from routers import Query, RoutingPlan

router = APIRouter()


async def plans_for(s: Services, t: Target, texts: list[str], deadline: float) -> list[RoutingPlan]:
    if t.direct is not None:
        return [t.direct] * len(texts)
    plans = await s.admission.run(
        s.backend.route(t.base, [Query(prompt=x) for x in texts], t.router, t.config or {}), deadline
    )
    policy.check_plans(plans, s.settings)
    return plans


@router.post("/v1/route")
async def route(req: RouteRequest, s: State):
    prompts = req.prompts()
    policy.check_prompts(prompts, s.settings)
    t = policy.target(req.model, req.routing, s.settings, s.registry)
    async with s.admission.slot():
        plans = await plans_for(s, t, prompts, s.admission.deadline())
    return {
        "object": "list",
        "model": req.model,
        "data": [{"prompt": p, **plan.model_dump(exclude_none=True)} for p, plan in zip(prompts, plans)],
    }
