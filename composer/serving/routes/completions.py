"""POST /v1/chat/completions and /v1/completions: OpenAI-compatible generation.

Contract: the body is a `ChatRequest` / `CompletionRequest`. Before any model work the
prompts pass `policy.check_prompts`, the model and routing resolve through `policy.target`
and the sampling through `policy.sampling`; then, holding an `Admission` place, the
request is routed (`plans_for`, each decision counted in the metrics) and executed by the
backend within the request's deadline. The answer is OpenAI's completion object plus
`routing` (openai.py); with `stream: true` it is server-sent events, started only after
the first item arrived (an error before any output is still an HTTP error) and holding the
place until the stream ends. `/v1/completions` streams a single prompt only (400).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from composer.serving import openai as oai
from composer.serving import policy
from composer.serving.deps import State
from composer.serving.errors import ApiError
from composer.serving.routes.route import plans_for
from composer.serving.schemas import ChatRequest, CompletionRequest

GENERATED = {
    200: {
        "description": "an OpenAI completion object, or with stream: true server-sent events",
        "content": {"application/json": {}, "text/event-stream": {"schema": {"type": "string"}}},
    }
}

router = APIRouter()


@router.post("/v1/chat/completions", responses=GENERATED)
async def chat_completions(req: ChatRequest, s: State):
    policy.check_prompts([m.text() for m in req.messages], s.settings)
    t = policy.target(req.model, req.routing, s.settings, s.registry)
    gen = policy.sampling(req, s.settings, chat=True)
    admission, backend = s.admission, s.backend
    async with admission.slot() as place:
        deadline = admission.deadline()
        (plan,) = await plans_for(s, t, [req.routed_text()], deadline)
        s.metrics.decided(plan)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        if req.stream:
            stream = admission.hand_over(place, backend.stream(t.base, req.chat(), plan, gen), deadline)
            await stream.prime()  # an error before the first token is an HTTP error, not an event
            return StreamingResponse(
                oai.sse_chat(req.model, stream, plan, req.stops(), include_usage),
                media_type="text/event-stream",
            )
        (c,) = await admission.run(backend.execute(t.base, [req.chat()], [plan], gen), deadline)
    s.metrics.generated(plan.router, len(c.token_ids))
    return oai.chat_response(req.model, c, req.stops())


@router.post("/v1/completions", responses=GENERATED)
async def completions(req: CompletionRequest, s: State):
    prompts = req.prompts()
    policy.check_prompts(prompts, s.settings)
    t = policy.target(req.model, req.routing, s.settings, s.registry)
    gen = policy.sampling(req, s.settings, chat=False)
    if req.stream and len(prompts) != 1:
        raise ApiError(400, "invalid_request_error", "stream: true takes a single prompt")
    admission, backend = s.admission, s.backend
    async with admission.slot() as place:
        deadline = admission.deadline()
        plans = await plans_for(s, t, prompts, deadline)
        for p in plans:
            s.metrics.decided(p)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        if req.stream:
            stream = admission.hand_over(place, backend.stream(t.base, prompts[0], plans[0], gen), deadline)
            await stream.prime()
            return StreamingResponse(
                oai.sse_text(req.model, stream, plans[0], req.stops(), include_usage),
                media_type="text/event-stream",
            )
        cs = await admission.run(backend.execute(t.base, prompts, plans, gen), deadline)
    s.metrics.generated(plans[0].router, sum(len(c.token_ids) for c in cs))
    return oai.text_response(req.model, cs, req.stops())
