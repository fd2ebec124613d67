"""The endpoint tests' servers (one set per module).

`env`: an upstream Composer server (`helpers.upstream.Upstream`, real uvicorn on loopback)
over a copy of the demo ocean, a plain web server (`PlainServer`), and the front server
under test (REST app over the in-process backend, TestClient) whose allowlist names the
upstream, the plain server, a port nothing listens on and the cloud metadata address. The
front drops its own `reverse`/`uppercase` adapters and registers the upstream's as endpoint
experts (`REMOTE`), priced, with the key in `KEY_ENV`. Yields {"up", "plain", "dead",
"http", "front", "root"}.
"""

from __future__ import annotations

import pytest
from helpers.local import local_server
from helpers.server import AUTH, copy_home
from helpers.upstream import KEY_ENV, REMOTE, SECRET, PlainServer, Upstream

from composer.serving.ports import free_port


@pytest.fixture(scope="module")
def env(demo_ocean, tmp_path_factory):
    root = tmp_path_factory.mktemp("endpoints")
    (root / "up-allowed").mkdir()
    port, dead = free_port(), free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, SECRET)
        up = Upstream(copy_home(demo_ocean, root / "up"), root / "up-allowed", port).start()
        plain = PlainServer(free_port(), redirect_to=up.url + "/models")
        try:
            allowed = (
                up.url.removesuffix("/v1"),
                plain.url,
                f"http://127.0.0.1:{dead}",
                "http://169.254.169.254",
            )
            with local_server(demo_ocean, root / "front", allowed_endpoints=allowed) as front:
                http = front["client"]
                reg = front["settings"].registry()
                for remote, local in REMOTE.items():
                    rec = reg.get(local)
                    assert http.delete(f"/v1/experts/{local}", headers=AUTH).status_code == 200
                    r = http.post(
                        "/v1/experts",
                        headers=AUTH,
                        json={
                            "name": remote,
                            "kind": "endpoint",
                            "endpoint": {
                                "url": up.url,
                                "model": local,
                                "api_key_env": KEY_ENV,
                                "timeout_s": 20,
                            },
                            "description": rec.description,
                            "examples": [e["prompt"] for e in rec.examples],
                            "cost": {"input_per_1m": 2.0, "output_per_1m": 6.0},
                        },
                    )
                    assert r.status_code == 201, r.text
                yield {"up": up, "plain": plain, "dead": dead, "http": http, "front": front, "root": root}
        finally:
            plain.close()
            up.stop()
