"""Bad requests to the REST API: 38 malformed bodies (JSON, types, unknown fields, routers
and experts, limits, NaN/Inf, the model's context...) and versions the registry cannot
hold, each a 4xx JSON error naming the problem; nothing changes and nothing stays in
flight (fixtures in conftest.py: the app in this process behind TestClient).
"""

from __future__ import annotations

import json

import pytest
from helpers.api import REVERSE, metric, snapshot
from helpers.server import AUTH, assert_error

EXAMPLES = ["Write these letters backwards: d o g"]

# ---------------------------------------------------------------------------- malformed requests
MSG = [{"role": "user", "content": REVERSE}]


def ask(content: str = REVERSE, model: str = "composer", **kw) -> dict:
    """A chat completion body with one user message."""
    return {"model": model, "messages": [{"role": "user", "content": content}], **kw}


ROW = {"id": "r1", "prompt": REVERSE, "task": "reverse", "split": "held-in", "answer": "t a c"}


def glider_alpha(raw: bytes) -> bytes:  # Python's json parses NaN, Infinity and 1e999 (inf) as floats
    return (
        b'{"model": "composer", "messages": [{"role": "user", "content": "hi"}], "routing": '
        b'{"router": "glider", "alpha": ' + raw + b"}}"
    )


LONG = " ".join(["Write these letters backwards: c a t"] * 30)  # ~200 tokens: beyond the demo's 128 context
REQUESTS = {
    "invalid-json": ("/v1/chat/completions", b'{"model": "composer", "messages": [', 400, "not valid JSON"),
    "json-not-object": ("/v1/chat/completions", b"[1, 2]", 400, "body"),
    "model-wrong-type": ("/v1/chat/completions", {"model": 7, "messages": MSG}, 400, "model"),
    "messages-wrong-type": ("/v1/chat/completions", {"model": "composer", "messages": "hi"}, 400, "messages"),
    "max-tokens-wrong-type": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "max_tokens": "ten"},
        400,
        "max_tokens",
    ),
    "temperature-out-of-range": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "temperature": 9},
        400,
        "temperature",
    ),
    "unknown-router-alias": ("/v1/chat/completions", ask(model="composer:nope"), 404, "no router 'nope'"),
    "unknown-router": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "routing": {"router": "nope"}},
        400,
        "nope",
    ),
    "unknown-expert": (
        "/v1/chat/completions",
        {"model": "no-such-expert", "messages": MSG},
        404,
        "no-such-expert",
    ),
    "unknown-expert-in-merge": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "routing": {"router": "uniform", "experts": ["ghost"]}},
        400,
        "ghost",
    ),
    "negative-top-k": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "routing": {"router": "loraretriever", "top_k": -1}},
        400,
        "top_k",
    ),
    "huge-top-k": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "routing": {"router": "phatgoose", "top_k": 10**12}},
        400,
        "top_k",
    ),
    "top-k-beyond-experts-limit": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "routing": {"router": "loraretriever", "top_k": 5}},
        400,
        "COMPOSER_MAX_EXPERTS",
    ),
    "merge-beyond-experts-limit": (
        "/v1/chat/completions",
        {"model": "composer:uniform", "messages": MSG},
        400,
        "COMPOSER_MAX_EXPERTS",
    ),
    "alpha-nan": ("/v1/chat/completions", glider_alpha(b"NaN"), 400, "finite"),
    "alpha-infinity": ("/v1/chat/completions", glider_alpha(b"Infinity"), 400, "finite"),
    "alpha-overflow": ("/v1/chat/completions", glider_alpha(b"1e999"), 400, "finite"),
    "temperature-nan": (
        "/v1/chat/completions",
        b'{"model": "composer", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
        400,
        "temperature",
    ),
    "max-tokens-beyond-limit": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "max_tokens": 65},
        400,
        "COMPOSER_MAX_TOKENS",
    ),
    "max-tokens-zero": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "max_tokens": 0},
        400,
        "max_tokens",
    ),
    "empty-messages": ("/v1/chat/completions", {"model": "composer", "messages": []}, 400, "messages"),
    "blank-user-message": ("/v1/chat/completions", ask(" "), 400, "non-empty user message"),
    "bad-role": (
        "/v1/chat/completions",
        {"model": "composer", "messages": [{"role": "root", "content": "x"}]},
        400,
        "role",
    ),
    "prompt-beyond-context": ("/v1/chat/completions", ask(LONG), 400, "maximum context length is 128 tokens"),
    "prompt-plus-max-tokens-beyond-context": (
        "/v1/chat/completions",
        ask(" ".join([REVERSE] * 8), "reverse", max_tokens=64),
        400,
        "maximum context length",
    ),
    "stream-beyond-context": (
        "/v1/completions",
        {"model": "reverse", "prompt": LONG, "stream": True},
        400,
        "maximum context length",
    ),
    "prompt-beyond-char-limit": (
        "/v1/completions",
        {"model": "composer", "prompt": "x " * 2500},
        400,
        "COMPOSER_MAX_PROMPT_CHARS",
    ),
    "too-many-prompts": ("/v1/route", {"prompt": ["a b"] * 65}, 400, "COMPOSER_MAX_PROMPTS"),
    "empty-prompt": ("/v1/completions", {"model": "composer", "prompt": ""}, 400, "prompt"),
    "unknown-field": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "logit_bias": {"1": 2}},
        400,
        "logit_bias",
    ),
    "unknown-nested-field": (
        "/v1/chat/completions",
        {"model": "composer", "messages": [{"role": "user", "content": "x", "mood": "angry"}]},
        400,
        "mood",
    ),
    "unknown-router-config-field": (
        "/v1/route",
        {"prompt": "x", "routing": {"router": "retrieval", "deepness": 3}},
        400,
        "deepness",
    ),
    "n-two": ("/v1/chat/completions", {"model": "composer", "messages": MSG, "n": 2}, 400, "n"),
    "seed-overflow": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "seed": 2**80},
        400,
        "seed",
    ),
    "evaluation-unknown-router": ("/v1/evaluations", {"examples": [ROW], "routers": ["nope"]}, 400, "nope"),
    "evaluation-bad-limit": ("/v1/evaluations", {"examples": [ROW], "limit": -3}, 400, "limit"),
    "evaluation-bad-row": ("/v1/evaluations", {"examples": [{**ROW, "split": "sideways"}]}, 400, "split"),
    "evaluation-too-many-examples": (
        "/v1/evaluations",
        {"examples": [ROW] * 10_001},
        400,
        "COMPOSER_MAX_EVAL_EXAMPLES",
    ),
}


@pytest.mark.parametrize("case", list(REQUESTS))
def test_malformed_request_is_a_4xx_naming_the_problem(case, server, http, before):
    path, body, status, words = REQUESTS[case]
    headers = {**AUTH, "content-type": "application/json"}
    r = http.post(path, content=body if isinstance(body, bytes) else json.dumps(body), headers=headers)
    assert_error(r, status, words)
    assert snapshot(server["home"], http) == before


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("version", ["0", "-1", str(2**31), str(2**63), "one"])
def test_expert_version_outside_what_is_stored_is_a_400(method, version, server, http, before):
    """A version the registry cannot hold (schemathesis found 2**63 was a 500 from SQLite)."""
    r = http.request(method, "/v1/experts/reverse", params={"version": version}, headers=AUTH)
    assert_error(r, 400, "version")
    assert snapshot(server["home"], http) == before


def test_nothing_changed_after_the_malformed_requests(server, http, before):
    assert snapshot(server["home"], http) == before
    assert metric(http, "composer_requests_in_flight") == 0  # every admitted request gave its place back
