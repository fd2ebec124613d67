"""Completions over the in-process backend: routing and execution in one backend call.

A routed request answers as the in-process API does (same plan, same tokens), a direct one
skips routing, several prompts of one request keep their own plans, and the Server-Timing
header names where the time went (route and execute in the executing process, backend the
whole call; the request's own spans, so backend covers the two).
"""

from __future__ import annotations

import pytest
from helpers.api import COUNTDOWN, REVERSE, chat
from helpers.local import local_server


@pytest.fixture(scope="module")
def served(demo_ocean, tmp_path_factory):
    with local_server(demo_ocean, tmp_path_factory.mktemp("completions")) as s:
        yield s


def spans(response) -> dict[str, float]:
    out = {}
    for part in response.headers["server-timing"].split(","):
        name, _, dur = part.strip().partition(";dur=")
        out[name] = float(dur)
    return out


def test_routed_completion_answers_as_the_in_process_api(served, demo_ocean):
    from composer import Composer
    from registry import Registry

    r = chat(served["client"], "composer", REVERSE, max_tokens=16)
    assert r.status_code == 200, r.text
    local = Composer(Registry(home=demo_ocean.home), settings=served["settings"]).generate(
        [REVERSE], max_new_tokens=16
    )[0]
    body = r.json()
    assert body["routing"]["served_by"] == local.expert
    assert body["choices"][0]["message"]["content"] == local.text
    t = spans(r)
    assert set(t) == {"route", "execute", "backend"} and t["route"] > 0 and t["execute"] > 0
    assert t["backend"] >= t["route"] + t["execute"] - 0.02  # the spans are rounded to 10 us


def test_direct_completion_does_not_route(served):
    r = chat(served["client"], "countdown", COUNTDOWN, max_tokens=8)
    assert r.status_code == 200, r.text
    assert r.json()["routing"]["router"] == "direct" and spans(r)["route"] == 0


def test_prompts_of_one_request_keep_their_own_plans(served):
    r = served["client"].post(
        "/v1/completions", json={"model": "composer", "prompt": [REVERSE, COUNTDOWN], "max_tokens": 8}
    )
    assert r.status_code == 200, r.text
    experts = [c["routing"]["served_by"] for c in r.json()["choices"]]
    alone = [
        served["client"].post("/v1/completions", json={"model": "composer", "prompt": p, "max_tokens": 8})
        for p in (REVERSE, COUNTDOWN)
    ]
    assert experts == [a.json()["choices"][0]["routing"]["served_by"] for a in alone]
    assert [c["text"] for c in r.json()["choices"]] == [a.json()["choices"][0]["text"] for a in alone]
