"""The FastAPI application of DESIGN §4, over an injected `Backend`.

Contract: `create_app(backend, settings, registry=None)` returns the app: it opens the
registry the settings name unless one is given, stores `backend`, `settings`, `registry`,
`metrics` (`Metrics`) and `admission` (`Admission(settings.max_queue,
settings.request_timeout_s)`) on `app.state` (what handlers read, see deps.py), installs the
error handlers (errors.py: every error is `{"error": {"type", "message"}}`) and the metrics
middleware (each request counted and timed per route template), and includes the feature
routers of `routes/` (endpoints, auth and limits are documented there and in policy.py).
Several apps may live in one process: nothing is global.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request

from composer.serving.admission import Admission
from composer.serving.backend import Backend
from composer.serving.errors import ERROR_RESPONSES, install
from composer.serving.metrics import Metrics
from composer.serving.routes import ROUTERS
from composer.settings import Settings
from registry import Registry


async def observe(request: Request, call_next):
    """Count and time every request under its route template ("(unmatched)" for none)."""
    t0 = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    request.app.state.metrics.observe(
        getattr(route, "path", "(unmatched)"), response.status_code, time.perf_counter() - t0
    )
    return response


def create_app(backend: Backend, settings: Settings, registry: Registry | None = None) -> FastAPI:
    app = FastAPI(
        title="Composer",
        summary="Route prompts to specialised experts (OpenAI-compatible).",
        responses=ERROR_RESPONSES,
    )
    app.state.backend = backend
    app.state.settings = settings
    app.state.registry = registry or settings.registry()
    app.state.metrics = Metrics()
    app.state.admission = Admission(settings.max_queue, settings.request_timeout_s)
    install(app)
    app.middleware("http")(observe)
    for router in ROUTERS:
        app.include_router(router)
    return app
