"""Request policy: what a request targets, the server's limits, and its sampling settings.

Contract: pure functions over a request's fields, the `Settings` and (to resolve names) the
`Registry`; each refuses with an `ApiError` (400, or 404 for an unknown model/router alias)
whose message names the problem and, for a limit, its variable. Nothing here does model work.
- `target(model, routing, settings, registry)` -> `Target`: "composer" is the default router
  (`settings.default_router`), "composer:<router>" a named one (404 if no such router; 400
  if `routing.router` names another), both over `registry.routing_base(settings.base)` (None: no base model, endpoint and whole-model experts only), with the
  routing config validated by the router (`RouterError`, a 400) and `check_experts`; a
  registered name is a direct plan (a base model: the base itself; a LoRA: its base; a
  whole model: the default base) and takes no `routing` (400); anything else is a 404.
- `check_experts(config, settings)`: `top_k` or an `experts` list above `max_experts`.
- `check_prompts(texts, settings)`: more than `max_prompts` prompts, or more than
  `max_prompt_chars` characters in all.
- `check_plans(plans, settings)`: a merge or ensemble plan combining more than `max_experts`.
- `sampling(request, settings, chat)` -> the backend's generation settings: `max_tokens`
  (chat: `max_completion_tokens` first) above `settings.max_tokens` is a 400; unasked, it
  is min(`DEFAULT_MAX_TOKENS`, `settings.max_tokens`) and `fit_context` shrinks it to what
  the model's context leaves (asked for, a prompt leaving fewer is a 400, as vLLM).
- `check_evaluation(request, settings)`: `max_tokens` and the inline examples' count.
- `check_upload_size(size, settings, slack=0)`: a 413 beyond `max_upload_bytes` + slack.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import routers
from composer.serving.errors import ApiError
from composer.serving.schemas import EvaluationRequest, RoutingOptions
from composer.settings import Settings
from registry import NotFoundError, Registry
from routers import RoutingPlan

ALIAS = "composer"
DEFAULT_MAX_TOKENS = 128
COMBINING = ("merge", "ensemble")  # modes that run several experts at once


@dataclass
class Target:
    """Where a request goes: a router over a base model's experts, or one named expert."""

    base: str | None  # None: no base model registered (endpoint and whole-model experts only)
    router: str | None = None
    config: dict | None = None
    direct: RoutingPlan | None = None


def is_alias(model: str) -> bool:
    return model == ALIAS or model.startswith(ALIAS + ":")


def target(model: str, routing: RoutingOptions | None, settings: Settings, registry: Registry) -> Target:
    if is_alias(model):
        return _routed(model, routing, settings, registry)
    try:
        rec = registry.get(model)
    except NotFoundError:
        raise ApiError(
            404, "model_not_found", f"the model {model!r} does not exist; GET /v1/models lists them"
        ) from None
    if routing is not None:
        raise ApiError(
            400,
            "invalid_routing",
            f"{model!r} is an expert: routing applies to models 'composer' and 'composer:<router>'",
        )
    if rec.kind == "base":
        return Target(rec.name, direct=RoutingPlan.direct(rec.name, base=True))
    base = rec.base_model if rec.kind == "lora" else registry.routing_base(settings.base)
    return Target(base, direct=RoutingPlan.direct(rec.name))


def _routed(model: str, routing: RoutingOptions | None, settings: Settings, registry: Registry) -> Target:
    alias = model.partition(":")[2]
    if alias and alias not in routers.names():
        raise ApiError(
            404,
            "model_not_found",
            f"no router {alias!r}: models are 'composer', "
            f"'composer:<router>' ({', '.join(routers.names())}) or an expert name",
        )
    asked = routing.router if routing else None
    if alias and asked and asked != alias:
        raise ApiError(
            400, "invalid_routing", f"model {model!r} names router {alias!r} but routing.router is {asked!r}"
        )
    name = alias or asked or settings.default_router
    config = routing.config() if routing else {}
    routers.parse_config(name, **config)  # RouterError -> 400 before any work
    check_experts(config, settings)
    return Target(registry.routing_base(settings.base), name, config)


def check_experts(config: dict, settings: Settings) -> None:
    experts = config.get("experts")
    asked = {"top_k": config.get("top_k"), "experts": len(experts) if isinstance(experts, list) else None}
    for key, n in asked.items():
        if isinstance(n, int) and n > settings.max_experts:
            raise ApiError(
                400,
                "invalid_routing",
                f"routing.{key} asks for {n} experts; this server combines "
                f"at most {settings.max_experts} per request (COMPOSER_MAX_EXPERTS)",
            )


def check_prompts(texts: list[str], settings: Settings) -> None:
    if len(texts) > settings.max_prompts:
        raise ApiError(
            400,
            "invalid_request_error",
            f"{len(texts)} prompts in one request; the limit is "
            f"{settings.max_prompts} (COMPOSER_MAX_PROMPTS)",
        )
    n = sum(map(len, texts))
    if n > settings.max_prompt_chars:
        raise ApiError(
            400,
            "invalid_request_error",
            f"the prompt is {n} characters; the limit is "
            f"{settings.max_prompt_chars} (COMPOSER_MAX_PROMPT_CHARS)",
        )


def check_plans(plans: Iterable[RoutingPlan], settings: Settings) -> None:
    for p in plans:
        if p.mode in COMBINING and len(p.experts) > settings.max_experts:
            raise ApiError(
                400,
                "invalid_routing",
                f"router {p.router!r} combines {len(p.experts)} experts; "
                f"this server allows {settings.max_experts} per request (COMPOSER_MAX_EXPERTS): "
                "narrow it with routing.experts or top_k",
            )


def check_max_tokens(n: int, settings: Settings) -> None:
    if n > settings.max_tokens:
        raise ApiError(
            400,
            "invalid_request_error",
            f"max_tokens {n} exceeds this server's limit {settings.max_tokens} (COMPOSER_MAX_TOKENS)",
        )


def sampling(request, settings: Settings, chat: bool) -> dict:
    """`request` is a `ChatRequest` or a `CompletionRequest`."""
    asked = getattr(request, "max_completion_tokens", None) or request.max_tokens
    n = asked or min(DEFAULT_MAX_TOKENS, settings.max_tokens)
    check_max_tokens(n, settings)
    return {
        "max_new_tokens": n,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "chat": chat,
        "seed": request.seed,
        "fit_context": asked is None,
    }


def check_evaluation(request: EvaluationRequest, settings: Settings) -> None:
    check_max_tokens(request.max_tokens, settings)
    if request.examples is not None and len(request.examples) > settings.max_eval_examples:
        raise ApiError(
            400,
            "invalid_request_error",
            f"{len(request.examples)} examples; an evaluation takes at "
            f"most {settings.max_eval_examples} (COMPOSER_MAX_EVAL_EXAMPLES)",
        )


def check_upload_size(size: int | None, settings: Settings, slack: int = 0) -> None:
    """`slack`: room for a multipart body's own framing around the archive."""
    if size is not None and size > settings.max_upload_bytes + slack:
        raise ApiError(
            413,
            "request_too_large",
            f"upload is {size} bytes (limit {settings.max_upload_bytes}, COMPOSER_MAX_UPLOAD_MB)",
        )
