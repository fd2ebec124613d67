"""GET /healthz, /readyz, /metrics: liveness, readiness and Prometheus metrics.

Contract: /healthz is `{"status": "ok"}` while the process answers; /readyz asks the
backend (`ready()`: {component: bool}) and answers 200 `{"status": "ready", "components"}`
when every component is, else 503 "not ready"; /metrics is the Prometheus exposition
(metrics.py) after refreshing the gauges from the backend's `stats()`, the requests in
flight (`Admission.active`) and the quarantined experts (`Registry.quarantined()`).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from composer.serving.deps import State
from composer.serving.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/healthz")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(s: State):
    parts = await s.backend.ready()
    ok = all(parts.values())
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "components": parts}, status_code=200 if ok else 503
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}}},
)
async def prometheus(s: State):
    stats = await s.backend.stats()
    body = s.metrics.render(stats, s.admission.active, s.registry.quarantined())
    return Response(body, media_type=CONTENT_TYPE)
