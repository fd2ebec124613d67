"""The REST endpoints of DESIGN §4, one `APIRouter` per feature (as vLLM's OpenAI server).

Contract: `ROUTERS` lists the routers in the order `create_app` includes them (which is the
order of /openapi.json's paths): completions (POST /v1/chat/completions, /v1/completions),
route (POST /v1/route), models (GET /v1/models), routers (GET /v1/routers), experts
(GET/POST /v1/experts, GET/DELETE /v1/experts/{name}), evaluations (POST/GET
/v1/evaluations, GET /v1/evaluations/{id}), ops (GET /healthz, /readyz, /metrics).
Handlers take the app's objects through `deps.State` and the request policy from
`policy`; none keeps state of its own.
"""

from composer.serving.routes import completions, evaluations, experts, models, ops, route, routers

ROUTERS = [
    completions.router,
    route.router,
    models.router,
    routers.router,
    experts.router,
    evaluations.router,
    ops.router,
]

__all__ = ["ROUTERS"]
