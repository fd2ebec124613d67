"""FastAPI dependencies shared by the route modules: the app's objects and the API key.

Contract: `create_app` stores `backend`, `settings`, `registry`, `metrics` (`Metrics`) and
`admission` (`Admission`) on `app.state`; a handler takes them as one parameter typed
`State` (`state(request)`, the app's `app.state` seen through the `Services` protocol), so
route modules hold no globals and one process may run several apps. `require_key` guards
the mutating endpoints: with `settings.api_key` set, it wants `Authorization: Bearer <key>`
(compared in constant time) and answers 401 with `WWW-Authenticate: Bearer` otherwise.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Protocol

from fastapi import Depends, Header, Request

from composer.serving.admission import Admission
from composer.serving.backend import Backend
from composer.serving.errors import ApiError
from composer.serving.metrics import Metrics
from composer.settings import Settings
from registry import Registry


class Services(Protocol):
    backend: Backend
    settings: Settings
    registry: Registry
    metrics: Metrics
    admission: Admission


def state(request: Request) -> Services:
    return request.app.state


State = Annotated[Services, Depends(state)]


async def require_key(request: Request, authorization: str | None = Header(None)) -> None:
    key = state(request).settings.api_key
    if key is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise ApiError(
            401,
            "unauthorized",
            "this endpoint needs a valid API key: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
