"""`composer serve --in-process`: the same REST API in one process, without Ray.

Contract: `serve_local(settings, host, port, on_ready=None)` serves `create_app` over a
`LocalBackend` with uvicorn on host:port, calls `on_ready(url)` once it accepts
connections, and returns when it stops (Ctrl-C / SIGTERM: uvicorn finishes the requests in
flight first). For one box and development; a cluster uses `ray_cluster.launch.serve`. The
caller enforces the loopback-without-key rule (the CLI does, as for Ray).
"""

from __future__ import annotations

import threading
import time

from composer.serving.app import create_app
from composer.serving.backend import LocalBackend
from composer.settings import Settings


def serve_local(settings: Settings, host: str = "127.0.0.1", port: int = 8000, on_ready=None) -> None:
    import uvicorn

    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    backend = LocalBackend(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(backend, settings, backend.registry),
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=30,
        )
    )

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started and on_ready:
            on_ready(f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}")

    threading.Thread(target=announce, daemon=True, name="composer-ready").start()
    server.run()
