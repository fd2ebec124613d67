"""Endpoint experts on Ray Serve, with no local model at all: `composer serve` in front of servers.

What only Ray shows: with no base model registered the app has one `Host:(no base)`
deployment; a completion is routed in that replica to an endpoint expert and forwarded
from there (one hop, as for LoRA rows), a stream passes the endpoint's events through
Serve's proxy, the replica's endpoint health reaches /metrics, and when the endpoint
stops, its rows go to the plan's other expert — here another endpoint of the same
server, so the request is a 503 naming both. The upstream is another Composer server on
loopback (`helpers.upstream.Upstream`), started by the test.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import httpx
import pytest
from helpers.api import chat, metric
from helpers.server import AUTH, copy_home, ray_server
from helpers.upstream import Upstream, prompts

from composer.serving.ports import free_port
from registry import Registry

pytestmark = pytest.mark.slow


def test_endpoints_alone_served_streamed_and_failed_over_on_ray(demo_ocean, tmp_path):
    port = free_port()
    (tmp_path / "up-allowed").mkdir()
    empty = SimpleNamespace(home=tmp_path / "empty")
    Registry(home=empty.home).close()
    up = Upstream(copy_home(demo_ocean, tmp_path / "up"), tmp_path / "up-allowed", port).start()
    try:
        with (
            ray_server(empty, tmp_path / "ray", allowed_endpoints=(f"http://127.0.0.1:{port}",)) as server,
            httpx.Client(base_url=server["url"], timeout=120) as http,
        ):
            for task in ("caesar", "reverse"):
                r = http.post(
                    "/v1/experts",
                    headers=AUTH,
                    json={
                        "name": f"remote-{task}",
                        "kind": "endpoint",
                        "endpoint": {"url": up.url, "model": task, "timeout_s": 20},
                        "examples": prompts(demo_ocean, task, 30)[10:],
                        "cost": {"input_per_1m": 1.0, "output_per_1m": 1.0},
                    },
                )
                assert r.status_code == 201, r.text
            p = prompts(demo_ocean, "caesar", 1)[0]
            direct = httpx.post(
                up.url + "/chat/completions",
                json={"model": "caesar", "messages": [{"role": "user", "content": p}], "max_tokens": 12},
                timeout=60,
            ).json()["choices"][0]["message"]["content"]
            body = chat(http, "composer", p, max_tokens=12).json()
            assert body["routing"]["served_by"] == "remote-caesar", body
            assert body["choices"][0]["message"]["content"] == direct and body["usage"]["cost"] > 0
            stream = {
                "model": "composer",
                "stream": True,
                "max_tokens": 12,
                "messages": [{"role": "user", "content": p}],
            }
            events = [
                json.loads(line[6:])
                for line in http.post("/v1/chat/completions", json=stream).text.splitlines()
                if line.startswith("data: {")
            ]
            assert (
                "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]) == direct
            )
            assert metric(http, "composer_endpoint", expert="remote-caesar", stat="up") == 1
            up.stop()
            r = chat(http, "composer", p, max_tokens=12)
            assert r.status_code == 503, r.text
            message = r.json()["error"]["message"]
            assert "remote-caesar failed" in message and "remote-reverse failed" in message
    finally:
        up.stop()
