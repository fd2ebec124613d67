"""Endpoint registrations that must be refused — with a clear 4xx and nothing stored.

Each case posts one bad registration to the front server (conftest `env`) and checks the
error contract (`assert_error`: status, JSON body naming the problem, no internals) and
that registry rows, store files, uploads and normal answers are unchanged (`snapshot`).
"""

from __future__ import annotations

import pytest
from helpers.api import snapshot
from helpers.server import AUTH, assert_error
from helpers.upstream import KEY_ENV


def spec(**kw) -> dict:
    return {"name": "bad-endpoint", "kind": "endpoint", "endpoint": kw, "examples": ["hello"]}


CASES = {
    "not http": (lambda e: spec(url="ftp://127.0.0.1/v1", model="reverse"), 400, "http:// or https://"),
    "not allowlisted": (lambda e: spec(url="http://127.0.0.1:9/v1", model="reverse"), 403, "not allowed"),
    "metadata address": (lambda e: spec(url="http://169.254.169.254/v1", model="x"), 403, "link-local"),
    "unreachable": (lambda e: spec(url=f"http://127.0.0.1:{e['dead']}/v1", model="x"), 400, "did not answer"),
    "model not listed": (lambda e: spec(url=e["up"].url, model="no-such-model"), 400, "does not list"),
    "not an OpenAI server": (
        lambda e: spec(url=e["plain"].url + "/html/v1", model="x"),
        400,
        "not OpenAI-compatible",
    ),
    "redirect": (lambda e: spec(url=e["plain"].url + "/redirect/v1", model="reverse"), 400, "redirect"),
    "key variable unset": (
        lambda e: spec(url=e["up"].url, model="reverse", api_key_env="COMPOSER_TEST_UNSET_VARIABLE"),
        400,
        "not set",
    ),
    "key given instead of its name": (
        lambda e: spec(url=e["up"].url, model="reverse", api_key_env="sk-123 secret"),
        400,
        "NAME of an environment variable",
    ),
    "user:password in url": (
        lambda e: spec(url=e["up"].url.replace("http://", "http://u:p@"), model="reverse"),
        400,
        "user or password",
    ),
    "endpoint object on a lora": (
        lambda e: {**spec(url=e["up"].url, model="reverse"), "kind": "lora"},
        400,
        "kind 'endpoint'",
    ),
}


@pytest.fixture(scope="module")
def before(env):
    return snapshot(env["front"]["home"], env["http"])


@pytest.mark.parametrize("case", list(CASES))
def test_bad_registration_is_refused_and_nothing_stored(env, before, case):
    make, status, words = CASES[case]
    r = env["http"].post("/v1/experts", headers=AUTH, json=make(env))
    assert_error(r, status, words)
    assert snapshot(env["front"]["home"], env["http"]) == before


def test_registration_needs_the_api_key(env, before):
    body = spec(url=env["up"].url, model="reverse", api_key_env=KEY_ENV)
    assert env["http"].post("/v1/experts", json=body).status_code == 401
    assert snapshot(env["front"]["home"], env["http"]) == before
