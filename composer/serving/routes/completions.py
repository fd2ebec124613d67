"""POST /v1/chat/completions and /v1/completions: OpenAI-compatible generation.

Contract: the body is a `ChatRequest` / `CompletionRequest`. Before any model work the
prompts pass `policy.check_prompts`, the model and routing resolve through `policy.target`
and the sampling through `policy.sampling`; then, holding an `Admission` place, the
request is routed (`plans_for`, each decision counted in the metrics) and executed by the
backend within the request's deadline. The answer is OpenAI's completion object plus
`routing` (openai.py); with `stream: true` it is server-sent events, started only after
the first item arrived (an error before any output is still an HTTP error) and holding the
place until the stream ends (a stream is routed first, `plans_for`, then streamed).
`/v1/completions` streams a single prompt only (400).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from composer.serving import openai as oai
from composer.serving import policy
from composer.serving.backend import Served
from composer.serving.deps import State
from composer.serving.errors import ApiError
from composer.serving.policy import Target
from composer.serving.routes.route import plans_for
from composer.serving.schemas import ChatRequest, CompletionRequest
from routers import Query

GENERATED = {
    200: {
        "description": "an OpenAI completion object, or with stream: true server-sent events",
        "content": {"application/json": {}, "text/event-stream": {"schema": {"type": "string"}}},
    }
}

router = APIRouter()


async def generated(
    s: State, t: Target, texts: list[str], prompts: list, gen: dict, deadline: float
) -> Served:
    """Plans and completions for the prompts (`texts`: what routing reads), by one backend call."""
    if t.direct is not None:
        plans = [t.direct] * len(prompts)
        t0 = time.perf_counter()
        cs = await s.admission.run(s.backend.execute(t.base, prompts, plans, gen), deadline)
        return Served(plans, cs, 0.0, time.perf_counter() - t0)
    queries = [Query(prompt=x) for x in texts]
    call = s.backend.complete(t.base, queries, prompts, t.router, t.config or {}, gen)
    return await s.admission.run(call, deadline)


async def timed(response: Response, work) -> Served:
    """`await work`, with the response's Server-Timing header set from it."""
    t0 = time.perf_counter()
    served = await work
    spans = {"route": served.route_s, "execute": served.execute_s, "backend": time.perf_counter() - t0}
    response.headers["Server-Timing"] = ", ".join(f"{k};dur={v * 1e3:.2f}" for k, v in spans.items())
    if served.replica:
        response.headers["X-Composer-Replica"] = served.replica
    return served


@router.post("/v1/chat/completions", responses=GENERATED)
async def chat_completions(req: ChatRequest, s: State, response: Response):
    policy.check_prompts([m.text() for m in req.messages], s.settings)
    t = policy.target(req.model, req.routing, s.settings, s.registry)
    gen = policy.sampling(req, s.settings, chat=True)
    admission, backend = s.admission, s.backend
    async with admission.slot() as place:
        deadline = admission.deadline()
        if req.stream:
            (plan,) = await plans_for(s, t, [req.routed_text()], deadline)
            s.metrics.decided(plan)
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            stream = admission.hand_over(place, backend.stream(t.base, req.chat(), plan, gen), deadline)
            await stream.prime()  # an error before the first token is an HTTP error, not an event
            return StreamingResponse(
                oai.sse_chat(req.model, stream, plan, req.stops(), include_usage),
                media_type="text/event-stream",
            )
        served = await timed(response, generated(s, t, [req.routed_text()], [req.chat()], gen, deadline))
    (plan,), (c,) = served.plans, served.completions
    s.metrics.decided(plan)
    s.metrics.generated(plan.router, c.completion_tokens, c.cost)
    return oai.chat_response(req.model, c, req.stops())


@router.post("/v1/completions", responses=GENERATED)
async def completions(req: CompletionRequest, s: State, response: Response):
    prompts = req.prompts()
    policy.check_prompts(prompts, s.settings)
    t = policy.target(req.model, req.routing, s.settings, s.registry)
    gen = policy.sampling(req, s.settings, chat=False)
    if req.stream and len(prompts) != 1:
        raise ApiError(400, "invalid_request_error", "stream: true takes a single prompt")
    admission, backend = s.admission, s.backend
    async with admission.slot() as place:
        deadline = admission.deadline()
        if req.stream:
            (plan,) = await plans_for(s, t, prompts, deadline)
            s.metrics.decided(plan)
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            stream = admission.hand_over(place, backend.stream(t.base, prompts[0], plan, gen), deadline)
            await stream.prime()
            return StreamingResponse(
                oai.sse_text(req.model, stream, plan, req.stops(), include_usage),
                media_type="text/event-stream",
            )
        served = await timed(response, generated(s, t, prompts, prompts, gen, deadline))
    for p in served.plans:
        s.metrics.decided(p)
    cs = served.completions
    s.metrics.generated(
        served.plans[0].router,
        sum(c.completion_tokens for c in cs),
        sum(c.cost for c in cs if c.cost is not None),
    )
    return oai.text_response(req.model, cs, req.stops())
