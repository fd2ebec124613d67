"""The executor: where plans run (the split the Ray backend shares), and one bad row in a
batch of several requests failing only itself (what the Ray host deployment relies on)."""

from __future__ import annotations

import pytest

from composer.executor import HOST, execute_each, group, placement, scatter
from composer.host.host import ContextTooLong
from routers import RoutingPlan

GOOD = ["Write these letters backwards: c a t", "Count down from 4"]
LONG = " ".join(["Write these letters backwards: c a t"] * 30)  # ~200 tokens: beyond the demo's 128 context
GEN = {
    "max_new_tokens": 8,
    "temperature": 0.0,
    "top_p": 1.0,
    "chat": True,
    "seed": None,
    "fit_context": False,
}


@pytest.fixture(scope="module")
def composer(demo_ocean):
    from composer import Composer

    return Composer(demo_ocean.registry)


def test_plans_are_placed_on_the_host_or_their_whole_model():
    plans = [
        RoutingPlan.direct("big"),
        RoutingPlan.direct("reverse"),
        RoutingPlan.direct("base", base=True),
        RoutingPlan(router="uniform", mode="merge", experts=["big", "reverse"], weights=[0.5, 0.5]),
        RoutingPlan.direct("big"),
    ]
    models = {"big"}
    assert placement(plans[0], models) == ("model", "big") and placement(plans[3], models) == HOST
    groups = group(plans, models)
    assert groups == {("model", "big"): [0, 4], HOST: [1, 2, 3]}
    results = {where: [f"{where[0]}{i}" for i in idx] for where, idx in groups.items()}
    assert scatter(len(plans), groups, results) == ["model0", "host1", "host2", "host3", "model4"]


def test_a_bad_row_batched_with_good_ones_fails_only_itself(composer):
    plans = [RoutingPlan.direct("reverse"), RoutingPlan.direct("reverse"), RoutingPlan.direct("countdown")]
    prompts = [GOOD[0], LONG, GOOD[1]]
    with pytest.raises(ContextTooLong):  # as one batch, the long prompt fails it
        composer.execute(prompts, plans, **GEN)
    out = execute_each(composer.execute, prompts, plans, GEN)
    assert isinstance(out[1], ContextTooLong) and "maximum context length is 128 tokens" in str(out[1])
    for i in (0, 2):  # the good rows answer as they do alone
        alone = composer.execute([prompts[i]], [plans[i]], **GEN)[0]
        assert (out[i].token_ids, out[i].expert) == (alone.token_ids, alone.expert)
    together = execute_each(composer.execute, [GOOD[0], GOOD[1]], [plans[0], plans[2]], GEN)
    assert [c.token_ids for c in together] == [
        out[0].token_ids,
        out[2].token_ids,
    ]  # no rerun when all are good
