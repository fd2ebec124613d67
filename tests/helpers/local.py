"""The REST app over the in-process backend, behind FastAPI's TestClient: no Ray, no socket.

Contract: `local_server(ocean, root, **overrides)` is a context manager shaped like
`server.ray_server`: it copies the demo ocean's home into `root/home`, makes `root/allowed`
the allowed root, builds `create_app(LocalBackend(settings), settings)` with
`server_settings(...)` and the overrides, and yields {"client", "home", "allowed", "ocean",
"settings"}; "client" is a started `TestClient` (httpx's API, so the helpers of api.py take
it as they take an `httpx.Client`). `local_client(settings)` is just the client over given
settings. Server exceptions are re-raised in the test (an unexpected 500 fails loudly).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers.server import copy_home, server_settings


@contextmanager
def local_client(settings) -> Iterator:
    from fastapi.testclient import TestClient

    from composer.serving import LocalBackend, create_app

    backend = LocalBackend(settings)
    with TestClient(create_app(backend, settings, backend.registry)) as client:
        yield client


@contextmanager
def local_server(ocean, root: Path, **overrides) -> Iterator[dict]:
    home = copy_home(ocean, root / "home")
    allowed = root / "allowed"
    allowed.mkdir()
    settings = server_settings(home, allowed, **overrides)
    with local_client(settings) as client:
        yield {"client": client, "home": home, "allowed": allowed, "ocean": ocean, "settings": settings}
