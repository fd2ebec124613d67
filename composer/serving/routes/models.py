"""GET /v1/models: what `model` may name, in OpenAI's list shape.

Contract: `{"object": "list", "data": [...]}` with, in order, "composer" (the default
router, `settings.default_router`), "composer:<router>" for every router, then every
registered base model and expert (latest ready version). Each entry is an OpenAI model
object (`id`, `object`, `created`, `owned_by` "composer") plus `composer`: its kind and,
for registry entries, version, base and description.
"""

from __future__ import annotations

from fastapi import APIRouter

import routers
from composer.serving.deps import State
from composer.serving.policy import ALIAS

router = APIRouter()


def entry(id_: str, kind: str, created: int = 0, **extra) -> dict:
    return {
        "id": id_,
        "object": "model",
        "created": created,
        "owned_by": "composer",
        "composer": {"kind": kind, **extra},
    }


@router.get("/v1/models")
async def models(s: State):
    data = [entry(ALIAS, "router", router=s.settings.default_router)]
    data += [entry(f"{ALIAS}:{n}", "router", router=n) for n in routers.names()]
    for rec in s.registry.list():
        data.append(
            entry(
                rec.name,
                rec.kind,
                int(rec.created_at.timestamp()),
                version=rec.version,
                base=rec.base_model,
                description=rec.description,
            )
        )
    return {"object": "list", "data": data}
