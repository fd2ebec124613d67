"""GET /v1/routers: the router zoo, the server's default router, and each config's schema.

Contract: `{"object": "list", "default": settings.default_router, "data": [{"name",
"description", "config_schema"}]}`, one entry per registered router (`routers.schemas()`);
`config_schema` is the JSON schema of what a request's `routing` object may carry.
"""

from __future__ import annotations

from fastapi import APIRouter

import routers
from composer.serving.deps import State

router = APIRouter()


@router.get("/v1/routers")
async def list_routers(s: State):
    return {
        "object": "list",
        "default": s.settings.default_router,
        "data": [
            {"name": n, "description": spec["description"], "config_schema": spec["config"]}
            for n, spec in routers.schemas().items()
        ],
    }
