"""Composer's HTTP service, independent of the runtime that executes it.

`create_app(backend, settings)` (app.py) is the FastAPI application of DESIGN §4: OpenAI-
compatible completions, routing, the registry, metrics. It talks to an injected `Backend`
(backend.py): `LocalBackend` runs everything in this process (no Ray: tests, one-box use);
`ray_cluster.backend.RayBackend` calls Ray Serve deployments. Nothing here imports Ray.
"""

from composer.serving.app import create_app
from composer.serving.backend import Backend, LocalBackend

__all__ = ["Backend", "LocalBackend", "create_app"]
