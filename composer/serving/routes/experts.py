"""GET/POST /v1/experts, GET/DELETE /v1/experts/{name}: the registry over HTTP.

Contract: GET /v1/experts lists the latest ready version of each expert (`?kind=` lora,
model, endpoint or base; anything else is a 400); GET /{name} is one record (`?version=N`, latest if
absent), examples included; both say whether the version is "quarantined" (a host could
not load or run it: {reason, since}, out of routing). Records never show server paths (`public_record`). With an API
key set, POST and DELETE need it (`require_key`). POST registers, answering 201 with the
record: either `application/json` (a `RegisterRequest` with a server-side `path`, or
`kind: "endpoint"` with its `endpoint` object: url, model, api_key_env, timeout_s) or
`multipart/form-data` with a file field `archive` and a JSON field `metadata` (413 beyond
the upload limit, judged first from Content-Length; 400 if a field is missing, the
metadata is invalid or names a path too); any other content type is a 415. DELETE removes
a version (latest if absent) and answers `{"deleted": true, "expert"}`. A `version`
outside 1..MAX_VERSION is a 400 before the registry is asked.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi import Query as Param
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from composer.serving import policy
from composer.serving.deps import Services, State, require_key
from composer.serving.errors import ApiError
from composer.serving.registration import public_record
from composer.serving.schemas import RegisterRequest
from registry.db import MAX_VERSION

Version = Annotated[int | None, Param(ge=1, le=MAX_VERSION, description="a stored version; latest if absent")]
MULTIPART_SLACK = 1 << 20  # a multipart body's framing around the archive, judged from Content-Length
REGISTER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": RegisterRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["archive", "metadata"],
                    "properties": {
                        "archive": {"type": "string", "format": "binary"},
                        "metadata": {"type": "string"},
                    },
                }
            },
        },
    }
}

router = APIRouter()


def parse(model: type[BaseModel], raw: str | bytes | dict) -> BaseModel:
    """`raw` validated as `model`; a 400 naming the first few problems otherwise."""
    try:
        return model.model_validate(raw) if isinstance(raw, dict) else model.model_validate_json(raw)
    except ValidationError as e:
        msg = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors()[:5])
        raise ApiError(400, "invalid_request_error", msg) from None


@router.get("/v1/experts")
async def list_experts(s: State, kind: str | None = None):
    if kind not in (None, "lora", "model", "base", "endpoint"):
        raise ApiError(400, "invalid_request_error", "kind must be lora, model, endpoint or base")
    held = s.registry.quarantined()
    return {
        "object": "list",
        "data": [public_record(r, quarantined=held) for r in s.registry.list(kind=kind)],
    }


@router.get("/v1/experts/{name}")
async def get_expert(name: str, s: State, version: Version = None):
    return public_record(s.registry.get(name, version), examples=True, quarantined=s.registry.quarantined())


async def multipart(request: Request, s: Services) -> tuple[RegisterRequest, bytes]:
    form = await request.form(max_files=1, max_fields=4)
    upload, meta = form.get("archive"), form.get("metadata")
    if upload is None or isinstance(upload, str) or not isinstance(meta, str):
        raise ApiError(
            400,
            "invalid_request_error",
            "multipart registration needs a file field 'archive' and a JSON field 'metadata'",
        )
    req = parse(RegisterRequest, meta)
    if req.path is not None:
        raise ApiError(400, "invalid_request_error", "give either an archive or a path, not both")
    policy.check_upload_size(upload.size, s.settings)
    return req, await upload.read()


@router.post("/v1/experts", status_code=201, dependencies=[Depends(require_key)], openapi_extra=REGISTER_BODY)
async def register(request: Request, s: State):
    ctype = request.headers.get("content-type", "")
    policy.check_upload_size(
        int(request.headers.get("content-length") or 0), s.settings, slack=MULTIPART_SLACK
    )
    archive = None
    if ctype.startswith("multipart/form-data"):
        req, archive = await multipart(request, s)
    elif ctype.startswith("application/json"):
        req = parse(RegisterRequest, await request.body())
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send application/json (server-side path) or multipart/form-data (archive + metadata)",
        )
    rec = await s.backend.register(req, archive)
    return JSONResponse(public_record(rec), status_code=201)


@router.delete("/v1/experts/{name}", dependencies=[Depends(require_key)])
async def remove(name: str, s: State, version: Version = None):
    rec = await s.backend.remove(name, version)
    return {"deleted": True, "expert": public_record(rec)}
