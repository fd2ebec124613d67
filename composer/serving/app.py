"""The FastAPI application of DESIGN §4, over an injected `Backend`.

Contract: `create_app(backend, settings, registry=None)` returns the app. Endpoints:
POST /v1/chat/completions, /v1/completions (OpenAI-compatible; `model` = "composer",
"composer:<router>", a base model or an expert name; optional `routing`; responses carry
`routing`; `stream: true` is SSE), POST /v1/route, GET /v1/models, GET /v1/routers,
GET/POST /v1/experts, GET/DELETE /v1/experts/{name}, POST /v1/evaluations, GET
/v1/evaluations[/{id}], GET /healthz, /readyz, /metrics, /openapi.json. With
`settings.api_key`, POST/DELETE /v1/experts and POST /v1/evaluations need
`Authorization: Bearer <key>` (compared in constant time); reads never do. Errors are
`{"error": {"type", "message"}}` (errors.py). Model, router, routing config and the
settings' limits (prompt characters, prompts per request, max_tokens, experts per request)
are checked here, before any work reaches the backend; requests that do model work pass
`Admission` (429 beyond `max_queue` in flight, 503 past `request_timeout_s`).
"""
from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from fastapi import Query as Param
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

import routers
from composer.serving import openai as oai
from composer.serving.admission import Admission
from composer.serving.backend import Backend, default_base
from composer.serving.errors import ERROR_RESPONSES, ApiError, install
from composer.serving.metrics import CONTENT_TYPE, Metrics
from composer.serving.registration import public_record
from composer.serving.schemas import (
    ChatRequest,
    CompletionRequest,
    EvaluationRequest,
    RegisterRequest,
    RouteRequest,
    RoutingOptions,
)
from composer.settings import Settings
from registry import NotFoundError, Registry
from registry.db import MAX_VERSION
from routers import Query, RoutingPlan

DEFAULT_MAX_TOKENS = 128
ALIAS = "composer"
GENERATED = {200: {"description": "an OpenAI completion object, or with stream: true server-sent events",
                   "content": {"application/json": {}, "text/event-stream": {"schema": {"type": "string"}}}}}

Version = Annotated[int | None, Param(ge=1, le=MAX_VERSION, description="a stored version; latest if absent")]


@dataclass
class Target:
    """Where a request goes: a router over a base model's experts, or one named expert."""
    base: str
    router: str | None = None
    config: dict | None = None
    direct: RoutingPlan | None = None


def parse(model: type[BaseModel], raw: str | bytes | dict) -> BaseModel:
    try:
        return model.model_validate(raw) if isinstance(raw, dict) else model.model_validate_json(raw)
    except ValidationError as e:
        msg = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors()[:5])
        raise ApiError(400, "invalid_request_error", msg) from None


def create_app(backend: Backend, settings: Settings, registry: Registry | None = None) -> FastAPI:
    registry = registry or settings.registry()
    app = FastAPI(title="Composer", summary="Route prompts to specialised experts (OpenAI-compatible).",
                  responses=ERROR_RESPONSES)
    metrics = Metrics()
    admission = Admission(settings.max_queue, settings.request_timeout_s)
    install(app)
    default_router = settings.default_router

    async def require_key(authorization: str | None = Header(None)) -> None:
        if settings.api_key is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise ApiError(401, "unauthorized", "this endpoint needs a valid API key: Authorization: Bearer <key>",
                           headers={"WWW-Authenticate": "Bearer"})

    @app.middleware("http")
    async def observe(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.observe(getattr(route, "path", "(unmatched)"), response.status_code, time.perf_counter() - t0)
        return response

    # -- resolving what a request asks for -------------------------------------------------
    def target(model: str, routing: RoutingOptions | None) -> Target:
        if model == ALIAS or model.startswith(ALIAS + ":"):
            alias = model.partition(":")[2]
            if alias and alias not in routers.names():
                raise ApiError(404, "model_not_found", f"no router {alias!r}: models are 'composer', "
                               f"'composer:<router>' ({', '.join(routers.names())}) or an expert name")
            asked = routing.router if routing else None
            if alias and asked and asked != alias:
                raise ApiError(400, "invalid_routing", f"model {model!r} names router {alias!r} but "
                               f"routing.router is {asked!r}")
            name = alias or asked or default_router
            config = routing.config() if routing else {}
            routers.parse_config(name, **config)  # RouterError -> 400 before any work
            within_expert_limit(config)
            return Target(default_base(registry, settings), name, config)
        try:
            rec = registry.get(model)
        except NotFoundError:
            raise ApiError(404, "model_not_found", f"the model {model!r} does not exist; "
                           "GET /v1/models lists them") from None
        if routing is not None:
            raise ApiError(400, "invalid_routing", f"{model!r} is an expert: routing applies to models "
                           "'composer' and 'composer:<router>'")
        if rec.kind == "base":
            return Target(rec.name, direct=RoutingPlan.direct(rec.name, base=True))
        base = rec.base_model if rec.kind == "lora" else default_base(registry, settings)
        return Target(base, direct=RoutingPlan.direct(rec.name))

    def within_expert_limit(config: dict) -> None:
        experts = config.get("experts")
        asked = {"top_k": config.get("top_k"), "experts": len(experts) if isinstance(experts, list) else None}
        for key, n in asked.items():
            if isinstance(n, int) and n > settings.max_experts:
                raise ApiError(400, "invalid_routing", f"routing.{key} asks for {n} experts; this server combines "
                               f"at most {settings.max_experts} per request (COMPOSER_MAX_EXPERTS)")

    def within_prompt_limits(texts: list[str]) -> None:
        if len(texts) > settings.max_prompts:
            raise ApiError(400, "invalid_request_error", f"{len(texts)} prompts in one request; the limit is "
                           f"{settings.max_prompts} (COMPOSER_MAX_PROMPTS)")
        n = sum(map(len, texts))
        if n > settings.max_prompt_chars:
            raise ApiError(400, "invalid_request_error", f"the prompt is {n} characters; the limit is "
                           f"{settings.max_prompt_chars} (COMPOSER_MAX_PROMPT_CHARS)")

    async def plans_for(t: Target, texts: list[str], deadline: float) -> list[RoutingPlan]:
        if t.direct is not None:
            return [t.direct] * len(texts)
        plans = await admission.run(backend.route(t.base, [Query(prompt=x) for x in texts], t.router,
                                                  t.config or {}), deadline)
        for p in plans:
            if p.mode in ("merge", "ensemble") and len(p.experts) > settings.max_experts:
                raise ApiError(400, "invalid_routing", f"router {p.router!r} combines {len(p.experts)} experts; "
                               f"this server allows {settings.max_experts} per request (COMPOSER_MAX_EXPERTS): "
                               "narrow it with routing.experts or top_k")
        return plans

    def sampling(req, chat: bool) -> dict:
        asked = getattr(req, "max_completion_tokens", None) or req.max_tokens
        n = asked or min(DEFAULT_MAX_TOKENS, settings.max_tokens)
        if n > settings.max_tokens:
            raise ApiError(400, "invalid_request_error", f"max_tokens {n} exceeds this server's limit "
                           f"{settings.max_tokens} (COMPOSER_MAX_TOKENS)")
        # asked for n tokens: a prompt leaving fewer in the model's context is a 400 (as vLLM);
        # the default shrinks to what the context leaves
        return {"max_new_tokens": n, "temperature": req.temperature, "top_p": req.top_p, "chat": chat,
                "seed": req.seed, "fit_context": asked is None}

    # -- OpenAI-compatible generation -------------------------------------------------------
    @app.post("/v1/chat/completions", responses=GENERATED)
    async def chat_completions(req: ChatRequest):
        within_prompt_limits([m.text() for m in req.messages])
        t, gen = target(req.model, req.routing), sampling(req, chat=True)
        async with admission.slot() as place:
            deadline = admission.deadline()
            plan, = await plans_for(t, [req.routed_text()], deadline)
            metrics.decided(plan)
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            if req.stream:
                stream = admission.hand_over(place, backend.stream(t.base, req.chat(), plan, gen), deadline)
                await stream.prime()  # an error before the first token is an HTTP error, not an event
                return StreamingResponse(oai.sse_chat(req.model, stream, plan, req.stops(), include_usage),
                                         media_type="text/event-stream")
            c, = await admission.run(backend.execute(t.base, [req.chat()], [plan], gen), deadline)
        metrics.generated(plan.router, len(c.token_ids))
        return oai.chat_response(req.model, c, req.stops())

    @app.post("/v1/completions", responses=GENERATED)
    async def completions(req: CompletionRequest):
        prompts = req.prompts()
        within_prompt_limits(prompts)
        t, gen = target(req.model, req.routing), sampling(req, chat=False)
        if req.stream and len(prompts) != 1:
            raise ApiError(400, "invalid_request_error", "stream: true takes a single prompt")
        async with admission.slot() as place:
            deadline = admission.deadline()
            plans = await plans_for(t, prompts, deadline)
            for p in plans:
                metrics.decided(p)
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            if req.stream:
                stream = admission.hand_over(place, backend.stream(t.base, prompts[0], plans[0], gen), deadline)
                await stream.prime()
                return StreamingResponse(oai.sse_text(req.model, stream, plans[0], req.stops(), include_usage),
                                         media_type="text/event-stream")
            cs = await admission.run(backend.execute(t.base, prompts, plans, gen), deadline)
        metrics.generated(plans[0].router, sum(len(c.token_ids) for c in cs))
        return oai.text_response(req.model, cs, req.stops())

    @app.post("/v1/route")
    async def route(req: RouteRequest):
        prompts = req.prompts()
        within_prompt_limits(prompts)
        t = target(req.model, req.routing)
        async with admission.slot():
            plans = await plans_for(t, prompts, admission.deadline())
        return {"object": "list", "model": req.model,
                "data": [{"prompt": p, **plan.model_dump(exclude_none=True)} for p, plan in zip(prompts, plans)]}

    # -- discovery --------------------------------------------------------------------------
    @app.get("/v1/models")
    async def models():
        def entry(id_: str, kind: str, created: int = 0, **extra) -> dict:
            return {"id": id_, "object": "model", "created": created, "owned_by": "composer",
                    "composer": {"kind": kind, **extra}}
        data = [entry(ALIAS, "router", router=default_router)]
        data += [entry(f"{ALIAS}:{n}", "router", router=n) for n in routers.names()]
        for rec in registry.list():
            data.append(entry(rec.name, rec.kind, int(rec.created_at.timestamp()), version=rec.version,
                              base=rec.base_model, description=rec.description))
        return {"object": "list", "data": data}

    @app.get("/v1/routers")
    async def list_routers():
        return {"object": "list", "default": default_router,
                "data": [{"name": n, "description": s["description"], "config_schema": s["config"]}
                         for n, s in routers.schemas().items()]}

    @app.get("/v1/experts")
    async def list_experts(kind: str | None = None):
        if kind not in (None, "lora", "model", "base"):
            raise ApiError(400, "invalid_request_error", "kind must be lora, model or base")
        return {"object": "list", "data": [public_record(r) for r in registry.list(kind=kind)]}

    @app.get("/v1/experts/{name}")
    async def get_expert(name: str, version: Version = None):
        return public_record(registry.get(name, version), examples=True)

    @app.post("/v1/experts", status_code=201, dependencies=[Depends(require_key)],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": RegisterRequest.model_json_schema()},
                  "multipart/form-data": {"schema": {"type": "object", "required": ["archive", "metadata"],
                                                     "properties": {"archive": {"type": "string", "format": "binary"},
                                                                    "metadata": {"type": "string"}}}}}}})
    async def register(request: Request):
        ctype = request.headers.get("content-type", "")
        size = int(request.headers.get("content-length") or 0)
        if size > settings.max_upload_bytes + (1 << 20):
            raise ApiError(413, "request_too_large", f"upload is {size} bytes (limit {settings.max_upload_bytes}, "
                           "COMPOSER_MAX_UPLOAD_MB)")
        archive = None
        if ctype.startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=4)
            upload, meta = form.get("archive"), form.get("metadata")
            if upload is None or isinstance(upload, str) or not isinstance(meta, str):
                raise ApiError(400, "invalid_request_error", "multipart registration needs a file field 'archive' "
                               "and a JSON field 'metadata'")
            req = parse(RegisterRequest, meta)
            if req.path is not None:
                raise ApiError(400, "invalid_request_error", "give either an archive or a path, not both")
            if upload.size is not None and upload.size > settings.max_upload_bytes:
                raise ApiError(413, "request_too_large", f"upload is {upload.size} bytes "
                               f"(limit {settings.max_upload_bytes}, COMPOSER_MAX_UPLOAD_MB)")
            archive = await upload.read()
        elif ctype.startswith("application/json"):
            req = parse(RegisterRequest, await request.body())
        else:
            raise ApiError(415, "unsupported_media_type", "send application/json (server-side path) or "
                           "multipart/form-data (archive + metadata)")
        rec = await backend.register(req, archive)
        return JSONResponse(public_record(rec), status_code=201)

    @app.delete("/v1/experts/{name}", dependencies=[Depends(require_key)])
    async def remove(name: str, version: Version = None):
        rec = await backend.remove(name, version)
        return {"deleted": True, "expert": public_record(rec)}

    # -- batch evaluation -------------------------------------------------------------------
    @app.post("/v1/evaluations", status_code=202, dependencies=[Depends(require_key)])
    async def start_evaluation(req: EvaluationRequest):
        if req.max_tokens > settings.max_tokens:
            raise ApiError(400, "invalid_request_error", f"max_tokens {req.max_tokens} exceeds this server's limit "
                           f"{settings.max_tokens} (COMPOSER_MAX_TOKENS)")
        if req.examples is not None and len(req.examples) > settings.max_eval_examples:
            raise ApiError(400, "invalid_request_error", f"{len(req.examples)} examples; an evaluation takes at most "
                           f"{settings.max_eval_examples} (COMPOSER_MAX_EVAL_EXAMPLES)")
        return JSONResponse(await backend.start_evaluation(req), status_code=202)

    @app.get("/v1/evaluations")
    async def list_evaluations():
        return {"object": "list", "data": await backend.evaluations()}

    @app.get("/v1/evaluations/{job_id}")
    async def get_evaluation(job_id: str, records: bool = False):
        try:
            return await backend.evaluation(job_id, records)
        except KeyError:
            raise ApiError(404, "not_found", f"no evaluation {job_id!r}") from None

    # -- operations -------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        parts = await backend.ready()
        ok = all(parts.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "components": parts},
                            status_code=200 if ok else 503)

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}}})
    async def prometheus():
        return Response(metrics.render(await backend.stats(), admission.active), media_type=CONTENT_TYPE)

    return app
