"""Adapter residency under a budget: experts load on demand, least recently used evicted first,
pinned ones kept; every request is served, and a row's answer does not depend on the budget,
the batch or what happened to be resident (compared with a host that holds every expert).

On the fast demo ocean (8 LoRA experts) with COMPOSER_MAX_ADAPTERS=2 or 3, or a memory
budget of about two experts.
"""

from __future__ import annotations

import pytest

from composer import Composer, ComposerError
from composer.settings import Settings
from routers import RoutingPlan

PROMPTS = {
    "reverse": "Write these letters backwards: c a t",
    "countdown": "Count down from 4",
    "max": "Find the largest digit: 3 9 2",
    "length": "Count the letters: a b c",
    "caesar": "Encode with the Caesar cipher, shift one: h e l l o",
    "add": "Add the two numbers: 4 5",
}
GEN = {"max_new_tokens": 6}


@pytest.fixture(scope="module")
def full(demo_ocean):
    """Every expert resident: the answers a budgeted host must give."""
    return Composer(demo_ocean.registry, settings=Settings(home=str(demo_ocean.home)))


def budgeted(ocean, **limits) -> Composer:
    return Composer(ocean.registry, settings=Settings(home=str(ocean.home), **limits))


def answers(c: Composer, names) -> list[list[int]]:
    return [
        o.token_ids
        for o in c.execute([PROMPTS[n] for n in names], [RoutingPlan.direct(n) for n in names], **GEN)
    ]


def test_every_expert_is_served_under_a_budget_of_two_as_without_one(demo_ocean, full):
    c = budgeted(demo_ocean, max_adapters=2, pinned_adapters=("reverse",))
    names = list(PROMPTS)
    want = answers(full, names)
    for _ in range(2):  # one at a time: each request loads its expert, evicting the least recently used
        assert [answers(c, [n])[0] for n in names] == want
        assert len(c.resident()) <= 2
    assert answers(c, names) == want  # one batch of six experts: run in groups that fit, same answers
    stats = c.adapters.stats()
    assert stats["resident"] <= 2 and stats["loads"] >= len(names) and stats["evictions"] >= len(names) - 2
    assert stats["load_seconds"] > 0 and stats["bytes"] > 0
    assert "reverse" in c.resident()  # pinned: never evicted, though rarely used
    assert c.host.memory()["rows_held"] <= 1.25 * c.host.memory()["rows_real"] + 1


def test_a_memory_budget_holds_about_that_much(demo_ocean, full):
    one = full.adapters.size(full.registry.get("reverse"))
    mb = -(-2 * one // 2**20)  # room for about two such experts
    c = budgeted(demo_ocean, adapter_memory_mb=mb)
    names = list(PROMPTS)
    assert answers(c, names) == answers(full, names)
    assert c.adapters.stats()["bytes"] <= mb * 2**20


def test_a_token_plan_keeps_the_candidates_its_gates_use_most_whatever_is_resident(demo_ocean, full):
    c = budgeted(demo_ocean, max_adapters=3)
    prompt = PROMPTS["caesar"]
    (plan,) = c.route([prompt], router="phatgoose")
    assert plan.mode == "token" and len(plan.experts) == 8
    cold = c.execute([prompt], [plan], **GEN)[0]
    assert len(cold.plan.experts) == 3 and "3 of 8 candidates kept" in cold.plan.explanation
    answers(c, ["max", "add", "length"])  # other experts become resident
    warm, batched = c.execute([prompt, PROMPTS["max"]], [plan, RoutingPlan.direct("max")], **GEN)
    assert warm.plan.experts == cold.plan.experts and warm.token_ids == cold.token_ids  # residency-invariant
    assert batched.token_ids == answers(full, ["max"])[0]  # and the row batched with it answers as alone
    # on the full host, the same three candidates give the same answer
    narrowed = plan.model_copy(update={"experts": cold.plan.experts})
    assert full.execute([prompt], [narrowed], **GEN)[0].token_ids == cold.token_ids


def test_a_plan_that_cannot_fit_is_a_clear_error(demo_ocean):
    c = budgeted(demo_ocean, max_adapters=2)
    merge = RoutingPlan(
        router="uniform", mode="merge", experts=["reverse", "max", "add"], weights=[1 / 3] * 3
    )
    with pytest.raises(ComposerError, match="COMPOSER_MAX_ADAPTERS=2"):
        c.execute([PROMPTS["reverse"]], [merge], **GEN)
    assert answers(c, ["reverse"])  # and the host still serves


def test_metrics_show_residency(demo_ocean, tmp_path):
    from helpers.api import answer, metric
    from helpers.local import local_server

    with local_server(demo_ocean, tmp_path, max_adapters=2) as s:
        http = s["client"]
        for name in ("reverse", "countdown", "max"):
            answer(http, name, PROMPTS[name], max_tokens=4)
        labels = {"base": "demo-base"}
        assert metric(http, "composer_adapter_residency", stat="resident", **labels) == 2
        assert metric(http, "composer_adapter_residency", stat="loads", **labels) == 3
        assert metric(http, "composer_adapter_residency", stat="evictions", **labels) == 1
        assert metric(http, "composer_adapter_residency", stat="load_seconds", **labels) > 0
        assert metric(http, "composer_adapter_residency", stat="bytes", **labels) > 0
