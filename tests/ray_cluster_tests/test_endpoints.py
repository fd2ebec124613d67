"""Endpoint experts on Ray Serve: the host replica forwards, streams and falls back.

What only Ray shows: a completion routed in the host replica to an endpoint expert is
forwarded from that replica (one hop, as for LoRA rows), a stream passes the endpoint's
events through Serve's proxy, the replica's endpoint health reaches /metrics, and a
stopped endpoint's rows fall back inside the replica. The upstream is another Composer
server on loopback (`helpers.upstream.Upstream`), started by the test.
"""

from __future__ import annotations

import json

import httpx
import pytest
from helpers.api import chat, metric
from helpers.server import AUTH, copy_home, ray_server
from helpers.upstream import Upstream, prompts

from composer.serving.ports import free_port

pytestmark = pytest.mark.slow


def test_endpoint_expert_served_streamed_and_fallen_back_on_ray(demo_ocean, tmp_path):
    port = free_port()
    (tmp_path / "up-allowed").mkdir()
    up = Upstream(copy_home(demo_ocean, tmp_path / "up"), tmp_path / "up-allowed", port).start()
    try:
        with (
            ray_server(
                demo_ocean, tmp_path / "ray", allowed_endpoints=(f"http://127.0.0.1:{port}",)
            ) as server,
            httpx.Client(base_url=server["url"], timeout=120) as http,
        ):
            lora = server["settings"].registry().get("caesar")
            assert http.delete("/v1/experts/caesar", headers=AUTH).status_code == 200
            r = http.post(
                "/v1/experts",
                headers=AUTH,
                json={
                    "name": "remote-caesar",
                    "kind": "endpoint",
                    "endpoint": {"url": up.url, "model": "caesar", "timeout_s": 20},
                    "examples": [e["prompt"] for e in lora.examples],
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
            assert body["routing"]["served_by"] == "remote-caesar"
            assert body["choices"][0]["message"]["content"] == direct and body["usage"]["cost"] > 0
            events = [
                json.loads(line[6:])
                for line in http.post(
                    "/v1/chat/completions",
                    json={
                        "model": "composer",
                        "stream": True,
                        "max_tokens": 12,
                        "messages": [{"role": "user", "content": p}],
                    },
                ).text.splitlines()
                if line.startswith("data: {")
            ]
            assert (
                "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]) == direct
            )
            assert metric(http, "composer_endpoint", expert="remote-caesar", stat="up") == 1
            up.stop()
            fell = chat(http, "composer", p, max_tokens=12).json()["routing"]
            assert fell["served_by"] != "remote-caesar" and "remote-caesar failed" in fell["fallback"]
    finally:
        up.stop()
