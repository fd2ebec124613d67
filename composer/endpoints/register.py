"""Admitting an endpoint expert: the checks a registration makes before anything is stored.

Contract: `admit(spec, allowed)` -> the normalised spec (`registry.endpoint.norm_endpoint`)
once: the URL passes the SSRF guard (`guard.check_url`: allowlisted, no link-local or
metadata address; `EndpointRefused`, HTTP 403), the named key variable is set on this
server (the key is read, never stored), and GET {url}/models answers in the OpenAI shape
listing `model`. Otherwise a `registry.ValidationError` (HTTP 400) says what failed:
unreachable, timed out, redirected, not an OpenAI-compatible server, model not listed.
"""

from __future__ import annotations

import os

from composer.endpoints import client
from composer.endpoints.client import EndpointError
from composer.endpoints.guard import check_url
from registry import ValidationError
from registry.endpoint import norm_endpoint


def admit(spec: dict, allowed: tuple[str, ...]) -> dict:
    spec = norm_endpoint(spec)
    check_url(spec["url"], allowed)
    env = spec["api_key_env"]
    if env and not os.environ.get(env):
        raise ValidationError(f"api_key_env names {env}, which is not set on the server")
    try:
        models = client.list_models(spec)
    except EndpointError as e:
        raise ValidationError(f"the endpoint {spec['url']} did not answer GET /models: {e}") from None
    if spec["model"] not in models:
        shown = ", ".join(models[:10]) + (" ..." if len(models) > 10 else "")
        raise ValidationError(
            f"the endpoint {spec['url']} does not list model {spec['model']!r} (it lists: {shown or 'none'})"
        )
    return spec
