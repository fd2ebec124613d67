"""Endpoint experts end to end: a second Composer server on loopback stands in for a vLLM/SGLang.

The upstream (helpers.upstream: real uvicorn, its own copy of the demo ocean) serves the
demo experts by name over the OpenAI protocol. The front server (REST app over the
in-process backend) drops its own `reverse` and `uppercase` adapters and registers the
upstream's as endpoint experts `remote-reverse` / `remote-uppercase`, with a key read from
an environment variable (the `env` fixture, conftest.py). Checked: routing picks them for their prompts and answers equal
the upstream's own; streaming equals non-streaming; the key reaches the upstream only and
shows up in no response, log line, registry row or stored file; stopping the upstream
mid-traffic gives fallbacks (the plan says why) or 503s, none hung, and it is served again
once back; bad registrations are refused with nothing stored.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers.api import chat, metric, wait_until
from helpers.server import AUTH
from helpers.upstream import KEY_ENV, REMOTE, SECRET, SLOW_S, prompts


def direct_upstream(up, model: str, prompt: str, max_tokens: int = 16) -> str:
    import httpx

    r = httpx.post(
        up.url + "/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_routing_picks_endpoints_and_answers_as_the_upstream(env, demo_ocean):
    http, up = env["http"], env["up"]
    for remote, local in REMOTE.items():
        for p in prompts(demo_ocean, local, 4):
            r = chat(http, "composer", p, max_tokens=16)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["routing"]["served_by"] == remote, body["routing"]
            assert body["choices"][0]["message"]["content"] == direct_upstream(up, local, p)
            assert body["usage"]["completion_tokens"] > 0
            assert body["usage"]["cost"] == pytest.approx(
                (body["usage"]["prompt_tokens"] * 2.0 + body["usage"]["completion_tokens"] * 6.0) / 1e6
            )
    # a prompt of a local expert is still served here, by its adapter
    r = chat(http, "composer", prompts(demo_ocean, "add", 1)[0], max_tokens=8)
    assert r.json()["routing"]["served_by"] == "add"


def test_stream_equals_non_stream(env, demo_ocean):
    http = env["http"]
    p = prompts(demo_ocean, "uppercase", 1)[0]
    whole = chat(http, "composer", p, max_tokens=16).json()["choices"][0]["message"]["content"]
    with http.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "remote-uppercase",
            "messages": [{"role": "user", "content": p}],
            "stream": True,
            "max_tokens": 16,
        },
    ) as r:
        assert r.status_code == 200
        events = [json.loads(x[5:]) for x in r.iter_lines() if x.startswith("data:") and "[DONE]" not in x]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in events if c.get("choices"))
    assert text == whole and len(events) > 2
    assert events[-1]["routing"]["served_by"] == "remote-uppercase"


def test_key_reaches_its_endpoint_only_and_never_leaks(env, demo_ocean, caplog):
    http, up = env["http"], env["up"]
    caplog.set_level(logging.DEBUG)
    chat(http, "composer", prompts(demo_ocean, "reverse", 1)[0], max_tokens=8)
    forwarded = [
        a for m, path, a in up.seen if path in ("/v1/models", "/v1/chat/completions") and a is not None
    ]
    assert forwarded and set(forwarded) == {f"Bearer {SECRET}"}
    shown = [
        http.get("/v1/experts").text,
        http.get("/v1/experts/remote-reverse").text,
        http.get("/v1/models").text,
        http.get("/metrics").text,
        http.post("/v1/route", json={"prompt": prompts(demo_ocean, "reverse", 1)[0]}).text,
        chat(http, "remote-reverse", "Reverse the letters: a b", max_tokens=4).text,
    ]
    assert all(SECRET not in s for s in shown)
    assert KEY_ENV in shown[1]  # the variable's name is shown, its value never
    assert SECRET not in caplog.text
    home = env["front"]["home"]
    for f in [p for p in home.rglob("*") if p.is_file()]:
        assert SECRET.encode() not in f.read_bytes(), f


def test_down_endpoint_falls_back_or_503_then_recovers(env, demo_ocean):
    http, up = env["http"], env["up"]
    ps = prompts(demo_ocean, "reverse", 6)

    def one(p):
        t0 = time.monotonic()
        r = chat(http, "composer", p, max_tokens=8)
        return r.status_code, r.json(), time.monotonic() - t0

    with ThreadPoolExecutor(3) as pool:
        running = [pool.submit(one, p) for p in ps * 2]
        up.stop()
        after = [pool.submit(one, p) for p in ps]
        results = [f.result(timeout=120) for f in running + after]
    for status, body, seconds in results:
        assert status in (200, 503), body
        assert seconds < 60
        if status == 503:
            assert body["error"]["type"] == "expert_unavailable"
    fell = [b["routing"] for s, b, _ in results[len(running) :] if s == 200]
    assert fell and all(
        r["served_by"] not in REMOTE and "remote-reverse failed" in r["fallback"] for r in fell
    )
    assert metric(http, "composer_endpoint", expert="remote-reverse", stat="up") == 0
    assert metric(http, "composer_endpoint", expert="remote-reverse", stat="failures") >= 1
    # a request naming the endpoint has nothing to fall back to: 503 with the reason
    r = chat(http, "remote-reverse", ps[0], max_tokens=8)
    assert r.status_code == 503 and "remote-reverse" in r.json()["error"]["message"]
    up.start()
    wait_until(
        lambda: (
            chat(http, "composer", ps[0], max_tokens=8).json()["routing"]["served_by"] == "remote-reverse"
        ),
        "the endpoint serves again",
        timeout_s=30,
        interval_s=0.5,
    )
    assert metric(http, "composer_endpoint", expert="remote-reverse", stat="up") == 1


@pytest.mark.parametrize("broken, reason", [("slow", "timeout"), ("fail", "HTTP 500")])
def test_slow_or_failing_endpoint_falls_back_and_a_direct_request_gets_503(env, demo_ocean, broken, reason):
    """An endpoint past its timeout or answering 5xx: routed rows go to the next-best expert
    (the plan says which endpoint failed and why), a request naming it is a 503; none waits
    longer than the endpoint's timeout."""
    http = env["http"]
    asked = prompts(demo_ocean, "caesar", 3)
    r = http.post(
        "/v1/experts",
        headers=AUTH,
        json={
            "name": f"{broken}-one",
            "kind": "endpoint",
            "endpoint": {"url": f"{env['plain'].url}/{broken}/v1", "model": broken, "timeout_s": 0.5},
            "examples": asked,  # the very prompts: routing ranks it first for them
        },
    )
    assert r.status_code == 201, r.text
    try:
        for p in asked:
            t0 = time.monotonic()
            body = chat(http, "composer", p, max_tokens=8).json()
            assert time.monotonic() - t0 < SLOW_S
            routing = body["routing"]
            assert routing["scores"][f"{broken}-one"] == max(routing["scores"].values())
            assert routing["served_by"] == "caesar", routing
            assert f"{broken}-one failed (" in routing["fallback"] and reason in routing["fallback"]
        t0 = time.monotonic()
        r = chat(http, f"{broken}-one", asked[0], max_tokens=8)
        assert r.status_code == 503 and time.monotonic() - t0 < SLOW_S, r.text
        assert metric(http, "composer_endpoint", expert=f"{broken}-one", stat="up") == 0
    finally:
        http.delete(f"/v1/experts/{broken}-one", headers=AUTH)
