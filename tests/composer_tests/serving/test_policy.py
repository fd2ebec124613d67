"""The request policy (composer/serving/policy.py), rule by rule, without HTTP or models.

Targets resolve against the demo ocean's registry (read only: one base "demo-base" and its
LoRA experts) or, for what the ocean lacks (a whole-model expert, several bases), a small
registry of its own (the demo base registered twice as a base, once as a whole model);
limits and sampling against hand-made `Settings`. Every refusal is an `ApiError`
with the status, type and words (the limit's variable) that the API answers with.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from composer.serving import policy
from composer.serving.errors import ApiError
from composer.serving.policy import DEFAULT_MAX_TOKENS, Target
from composer.serving.schemas import ChatRequest, CompletionRequest, EvaluationRequest, RoutingOptions
from composer.settings import Settings
from registry import RegistryError
from routers import RouterError, RoutingPlan

LIMITS = Settings(
    max_experts=4, max_prompts=3, max_prompt_chars=20, max_tokens=64, max_eval_examples=2, max_upload_mb=1
)
MB = 1024 * 1024


@pytest.fixture(scope="module")
def registry(demo_ocean):
    return demo_ocean.registry


@contextmanager
def refused(status: int, type_: str, *words: str):
    """The block raises an ApiError with this status, type and words in its message."""
    with pytest.raises(ApiError) as info:
        yield info
    e = info.value
    assert (e.status, e.type) == (status, type_), (e.status, e.type, e.message)
    for w in words:
        assert w in e.message, (w, e.message)


def routing(**kw) -> RoutingOptions:
    return RoutingOptions(**kw)


@pytest.fixture(scope="module")
def fleet(demo_ocean, tmp_path_factory):
    """Two bases ("a", "b") and a whole-model expert ("full"), all the demo base's files."""
    from registry import Registry

    reg = Registry(home=tmp_path_factory.mktemp("fleet"))
    src = demo_ocean.registry.get("demo-base").path
    for name in ("a", "b"):
        reg.register(src, name, kind="base")
    reg.register(src, "full", kind="model")
    return reg


# ------------------------------------------------------------------------------------ targets
def test_composer_is_the_default_router_over_the_only_base(registry):
    assert policy.target("composer", None, Settings(), registry) == Target("demo-base", "density", {})
    assert policy.target("composer", None, Settings(default_router="coe"), registry).router == "coe"
    with pytest.raises(RegistryError, match="base model 'other-base' is not registered"):
        policy.target("composer", None, Settings(base="other-base"), registry)  # COMPOSER_BASE names nothing


def test_composer_colon_router_names_the_router_and_routing_carries_its_config(registry):
    assert policy.target("composer:coe", None, LIMITS, registry) == Target("demo-base", "coe", {})
    t = policy.target("composer", routing(router="glider", alpha=5.0, top_k=2), LIMITS, registry)
    assert t == Target("demo-base", "glider", {"alpha": 5.0, "top_k": 2}) and t.direct is None
    same = policy.target("composer:glider", routing(router="glider", top_k=2), LIMITS, registry)
    assert same.router == "glider" and same.config == {"top_k": 2}
    assert policy.target("composer:glider", routing(top_k=2), LIMITS, registry).router == "glider"


def test_an_unknown_router_alias_is_a_404_listing_the_routers(registry):
    with refused(404, "model_not_found", "no router 'nope'", "retrieval", "phatgoose"):
        policy.target("composer:nope", None, LIMITS, registry)


def test_an_alias_and_a_different_routing_router_conflict(registry):
    with refused(400, "invalid_routing", "names router 'coe'", "routing.router is 'glider'"):
        policy.target("composer:coe", routing(router="glider"), LIMITS, registry)


def test_the_router_validates_its_config_before_any_work(registry):
    with pytest.raises(RouterError, match="alpha"):
        policy.target("composer", routing(router="glider", alpha="lots"), LIMITS, registry)
    with pytest.raises(RouterError, match="deepness"):
        policy.target("composer", routing(router="retrieval", deepness=3), LIMITS, registry)
    with pytest.raises(RouterError):
        policy.target("composer", routing(router="no-such-router"), LIMITS, registry)


def test_an_expert_name_is_a_direct_plan_on_its_base(registry):
    t = policy.target("reverse", None, LIMITS, registry)
    assert (t.base, t.router, t.config) == ("demo-base", None, None)
    assert t.direct == RoutingPlan.direct("reverse")
    assert (t.direct.router, t.direct.mode, t.direct.experts) == ("direct", "select", ["reverse"])


def test_a_base_name_is_the_base_model_itself(registry):
    t = policy.target("demo-base", None, LIMITS, registry)
    assert t.base == "demo-base" and t.direct == RoutingPlan.direct("demo-base", base=True)
    assert t.direct.mode == "base" and t.direct.experts == []


def test_a_whole_model_expert_runs_beside_the_default_base(fleet):
    assert policy.target("full", None, Settings(base="b"), fleet) == Target(
        "b", direct=RoutingPlan.direct("full")
    )


def test_composer_needs_one_base_a_configured_one_or_none_at_all(fleet, tmp_path):
    from registry import Registry

    with pytest.raises(RegistryError, match=r"several base models are registered \(a, b\)"):
        policy.target("composer", None, LIMITS, fleet)
    assert policy.target("composer", None, Settings(base="b"), fleet).base == "b"
    empty = Registry(home=tmp_path / "empty")  # no base model: routing over endpoint/whole-model experts
    assert policy.target("composer", None, LIMITS, empty).base is None
    with pytest.raises(RegistryError, match="'zz' is not registered"):
        policy.target("composer", None, Settings(base="zz"), empty)


def test_an_unknown_model_is_a_404(registry):
    with refused(404, "model_not_found", "'no-such-expert' does not exist", "GET /v1/models"):
        policy.target("no-such-expert", None, LIMITS, registry)
    with refused(404, "model_not_found"):
        policy.target("composerx", None, LIMITS, registry)  # not an alias: a name, and none such


def test_routing_an_expert_or_a_base_is_a_400(registry):
    for name in ("reverse", "demo-base"):
        with refused(400, "invalid_routing", f"{name!r} is an expert", "'composer:<router>'"):
            policy.target(name, routing(router="coe"), LIMITS, registry)
    with refused(400, "invalid_routing"):
        policy.target("reverse", routing(), LIMITS, registry)  # an empty routing object too


# ------------------------------------------------------------------------------------ limits
@pytest.mark.parametrize("key,config", [("top_k", {"top_k": 5}), ("experts", {"experts": list("abcde")})])
def test_experts_per_request_beyond_the_limit(key, config, registry):
    with refused(
        400, "invalid_routing", f"routing.{key} asks for 5 experts", "at most 4", "COMPOSER_MAX_EXPERTS"
    ):
        policy.check_experts(config, LIMITS)
    with refused(400, "invalid_routing", "COMPOSER_MAX_EXPERTS"):
        policy.target(
            "composer",
            routing(router="loraretriever" if key == "top_k" else "uniform", **config),
            LIMITS,
            registry,
        )


def test_experts_per_request_at_the_limit_and_what_is_not_a_count():
    policy.check_experts({"top_k": 4, "experts": list("abcd")}, LIMITS)
    policy.check_experts({}, LIMITS)
    policy.check_experts({"top_k": None, "experts": None}, LIMITS)
    policy.check_experts(
        {"top_k": "many", "experts": "abcdefgh"}, LIMITS
    )  # the router's config refuses those


def test_prompts_per_request():
    policy.check_prompts(["a", "b", "c"], LIMITS)
    with refused(
        400, "invalid_request_error", "4 prompts in one request", "limit is 3", "COMPOSER_MAX_PROMPTS"
    ):
        policy.check_prompts(["a"] * 4, LIMITS)


def test_prompt_characters_count_every_prompt_together():
    policy.check_prompts(["x" * 20], LIMITS)
    policy.check_prompts(["x" * 10, "y" * 10], LIMITS)
    with refused(400, "invalid_request_error", "21 characters", "limit is 20", "COMPOSER_MAX_PROMPT_CHARS"):
        policy.check_prompts(["x" * 11, "y" * 10], LIMITS)


def plan(mode: str, n: int, router: str = "r") -> RoutingPlan:
    return RoutingPlan(router=router, mode=mode, experts=[f"e{i}" for i in range(n)], weights=[1 / n] * n)


@pytest.mark.parametrize("mode", ["merge", "ensemble"])
def test_a_plan_combining_more_experts_than_allowed(mode):
    policy.check_plans([plan(mode, 4), plan(mode, 1)], LIMITS)
    with refused(
        400,
        "invalid_routing",
        "router 'uniform' combines 5 experts",
        "allows 4",
        "COMPOSER_MAX_EXPERTS",
        "routing.experts or top_k",
    ):
        policy.check_plans([plan(mode, 2), plan(mode, 5, router="uniform")], LIMITS)


def test_plans_that_do_not_combine_experts_pass_whatever_they_list():
    policy.check_plans([plan("token", 8), plan("select", 1), RoutingPlan.direct("b", base=True)], LIMITS)
    policy.check_plans([], LIMITS)


# ------------------------------------------------------------------------------------ sampling
def chat(**kw) -> ChatRequest:
    return ChatRequest(model="composer", messages=[{"role": "user", "content": "hi"}], **kw)


def completion(**kw) -> CompletionRequest:
    return CompletionRequest(model="composer", prompt="hi", **kw)


def test_unasked_max_tokens_is_the_default_capped_by_the_limit_and_fits_the_context():
    gen = policy.sampling(chat(), Settings(), chat=True)
    assert gen == {
        "max_new_tokens": DEFAULT_MAX_TOKENS,
        "temperature": 0.0,
        "top_p": 1.0,
        "chat": True,
        "seed": None,
        "fit_context": True,
    }
    assert policy.sampling(completion(), LIMITS, chat=False)["max_new_tokens"] == 64  # min(128, 64)
    assert policy.sampling(completion(), Settings(max_tokens=1000), chat=False)["max_new_tokens"] == 128


def test_asked_max_tokens_is_kept_and_must_fit_the_context():
    gen = policy.sampling(completion(max_tokens=10, temperature=0.7, top_p=0.9, seed=3), LIMITS, chat=False)
    assert gen == {
        "max_new_tokens": 10,
        "temperature": 0.7,
        "top_p": 0.9,
        "chat": False,
        "seed": 3,
        "fit_context": False,
    }
    assert policy.sampling(chat(max_tokens=64), LIMITS, chat=True)["max_new_tokens"] == 64  # at the limit


def test_max_completion_tokens_wins_over_max_tokens():
    gen = policy.sampling(chat(max_tokens=50, max_completion_tokens=7), LIMITS, chat=True)
    assert gen["max_new_tokens"] == 7 and gen["fit_context"] is False
    assert policy.sampling(chat(max_completion_tokens=9), LIMITS, chat=True)["max_new_tokens"] == 9


@pytest.mark.parametrize(
    "request_,n",
    [
        (chat(max_tokens=65), 65),
        (chat(max_completion_tokens=65), 65),
        (chat(max_tokens=1, max_completion_tokens=65), 65),
        (completion(max_tokens=10_000), 10_000),
    ],
    ids=["max_tokens", "max_completion_tokens", "completion-wins", "completions"],
)
def test_max_tokens_beyond_the_limit(request_, n):
    with refused(400, "invalid_request_error", f"max_tokens {n} exceeds", "limit 64", "COMPOSER_MAX_TOKENS"):
        policy.sampling(request_, LIMITS, chat=isinstance(request_, ChatRequest))


def test_an_unasked_default_never_exceeds_a_small_limit():
    assert policy.sampling(chat(), Settings(max_tokens=1), chat=True)["max_new_tokens"] == 1


# ------------------------------------------------------------------------------------ evaluations, uploads
ROW = {"id": "r1", "prompt": "p", "task": "t", "split": "held-in", "answer": "a"}


def test_evaluation_limits():
    policy.check_evaluation(EvaluationRequest(examples=[ROW, ROW], max_tokens=64), LIMITS)
    policy.check_evaluation(EvaluationRequest(benchmark="demo"), LIMITS)
    with refused(400, "invalid_request_error", "max_tokens 65 exceeds", "COMPOSER_MAX_TOKENS"):
        policy.check_evaluation(EvaluationRequest(benchmark="demo", max_tokens=65), LIMITS)
    with refused(400, "invalid_request_error", "3 examples", "at most 2", "COMPOSER_MAX_EVAL_EXAMPLES"):
        policy.check_evaluation(EvaluationRequest(examples=[ROW] * 3), LIMITS)


def test_upload_size():
    policy.check_upload_size(None, LIMITS)  # unknown: judged while unpacking
    policy.check_upload_size(MB, LIMITS)
    policy.check_upload_size(MB + 100, LIMITS, slack=100)
    with refused(
        413, "request_too_large", f"upload is {MB + 1} bytes", f"limit {MB}", "COMPOSER_MAX_UPLOAD_MB"
    ):
        policy.check_upload_size(MB + 1, LIMITS)
    with refused(413, "request_too_large"):
        policy.check_upload_size(MB + 101, LIMITS, slack=100)
