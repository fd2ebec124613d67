"""Endpoint experts and cost metadata in the registry: stored like any expert, shapes checked."""

from __future__ import annotations

import pytest

from registry import Registry, ValidationError

GOOD = {"url": "http://127.0.0.1:8000/v1/", "model": "llama-3-8b", "api_key_env": "VLLM_KEY"}


@pytest.fixture()
def reg(tmp_path):
    return Registry(home=tmp_path)


def test_endpoint_is_stored_normalised_hashed_and_removable(reg):
    rec = reg.register_endpoint(
        "far", GOOD, description="a remote model", cost={"input_per_1m": 1, "output_per_1m": 3}
    )
    assert rec.kind == "endpoint" and rec.digest and rec.path.is_dir()
    assert rec.config["endpoint"] == {**GOOD, "url": "http://127.0.0.1:8000/v1", "timeout_s": 30.0}
    assert rec.config["cost"] == {"input_per_1m": 1.0, "output_per_1m": 3.0}
    assert [p.name for p in rec.path.iterdir()] == ["endpoint.json"]
    assert reg.list(kind="endpoint") == [rec]
    reg.remove("far")
    assert reg.list(kind="endpoint") == []
    staging = reg.store.root / "staging"
    assert not staging.exists() or not list(staging.iterdir())  # the spec's scratch dir is gone too


BAD = [
    ({**GOOD, "url": "ftp://h/v1"}, "http:// or https://"),
    ({**GOOD, "url": "http:///v1"}, "no host"),
    ({**GOOD, "url": "http://h:99999/v1"}, "not a valid URL"),
    ({**GOOD, "url": "http://h/v1?x=1"}, "query or fragment"),
    ({**GOOD, "model": ""}, "remote model"),
    ({**GOOD, "api_key_env": "sk-live-123 456"}, "NAME of an environment variable"),
    ({**GOOD, "timeout_s": 0}, "timeout_s"),
    ({**GOOD, "timeout_s": float("nan")}, "timeout_s"),
    ({**GOOD, "key": "sk-123"}, "unknown endpoint field"),
]


@pytest.mark.parametrize("spec, words", BAD)
def test_bad_endpoint_specs_are_refused_with_nothing_stored(reg, spec, words):
    with pytest.raises(ValidationError, match=words):
        reg.register_endpoint("far", spec)
    assert reg.list(kind="endpoint") == [] and reg.counts()["experts"] == 0


@pytest.mark.parametrize(
    "cost, words",
    [
        ({"input_per_1m": -1}, ">= 0"),
        ({"price": 1}, "unknown cost"),
        ({"output_per_1m": float("inf")}, "finite"),
    ],
)
def test_bad_costs_are_refused(reg, cost, words):
    with pytest.raises(ValidationError, match=words):
        reg.register_endpoint("far", GOOD, cost=cost)
    rec = reg.register_endpoint("far", GOOD)
    with pytest.raises(ValidationError, match=words):
        reg.set_cost("far", cost)
    assert reg.get("far").config == rec.config


def test_set_cost_replaces_and_clears(reg):
    reg.register_endpoint("far", GOOD)
    assert reg.set_cost("far", {"active_params": 7_000_000_000}).config["cost"] == {
        "active_params": 7_000_000_000
    }
    assert "cost" not in reg.set_cost("far", None).config
    assert reg.get("far").config["endpoint"]["model"] == "llama-3-8b"
