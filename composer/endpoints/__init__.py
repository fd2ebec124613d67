"""Endpoint experts: models served by OpenAI-compatible servers elsewhere (vLLM, SGLang, Ollama, APIs).

`guard` decides whether the server may call a URL (operator allowlist, no link-local or
metadata addresses), `client` speaks the OpenAI protocol to one endpoint (no redirects
followed, the key read from the environment per call), `pool` runs requests on endpoint
experts with per-endpoint health and latency, and `register` checks an endpoint answers
before it is registered.
"""

from composer.endpoints.client import EndpointError, EndpointResult
from composer.endpoints.guard import EndpointRefused, check_url
from composer.endpoints.pool import EndpointPool

__all__ = ["EndpointError", "EndpointPool", "EndpointRefused", "EndpointResult", "check_url"]
