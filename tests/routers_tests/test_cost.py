"""Cost-aware routing (routers.cost): the knob, its calibration, prices — on tables and the demo ocean.

On the demo ocean half the experts are made 10x dearer; retrieval with a rising cost weight
must move a measurable share of held-in prompts to the cheap half, and a weight calibrated
on one half of the prompts to send 30% to the dear experts must send 30% +- 5 points of the
other half there (RouteLLM's calibration, checked on prompts it did not see).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers.server import copy_home

from registry import Registry
from routers import RouterError
from routers.cost import Pricing, rerank, share_weight, switch_point

DEAR = ("add", "max", "length", "countdown")


@pytest.mark.parametrize("seed", range(20))
def test_switch_point_is_where_the_choice_leaves_the_dear_experts(seed):
    rng = np.random.default_rng(seed)
    scores, costs = rng.normal(size=6), rng.uniform(0, 5, size=6)
    dear = costs > np.median(costs)
    lam = switch_point(scores, costs, dear)
    grid = np.linspace(0, 10, 4001)
    brute = [dear[np.argmax(scores - g * costs)] for g in grid]
    assert all(b == (g < lam) for g, b in zip(grid, brute) if abs(g - lam) > 1e-6)


def test_share_weight_leaves_the_asked_share_above():
    pts = np.array([0.0, 0.1, 0.2, 0.4, 0.9, 2.0, np.inf, 0.05, 0.3, 0.5])
    for share in (0.1, 0.3, 0.5, 0.7, 0.9):
        w = share_weight(pts, share)
        assert (pts > w).mean() == pytest.approx(share)
    tied = np.array([0.1, 0.1, 0.1, 0.5])  # prompts that switch together cannot be split
    assert (tied > share_weight(tied, 0.5)).mean() in (0.25, 1.0)


def test_rerank_trades_score_for_price_and_caps_it():
    ranked = [("dear", 0.9), ("cheap", 0.8)]
    unit = {"dear": 10.0, "cheap": 1.0}.get
    assert rerank(ranked, unit, 0.0, None)[0][0] == "dear"
    assert rerank(ranked, unit, 0.02, None)[0][0] == "cheap"  # 0.9 - 0.2 < 0.8 - 0.02
    assert [e for e, _ in rerank(ranked, unit, 0.0, 5.0)] == ["cheap"]


def test_pricing_reads_prices_then_active_parameters(demo_ocean, tmp_path):
    reg = Registry(home=copy_home(demo_ocean, tmp_path / "home"))
    pricing = Pricing(reg, per_bparam=1000.0)
    base = reg.list(kind="base")[0].config["num_params"]
    own = reg.get("add").config["num_params"]
    assert pricing("add") == pytest.approx(((base + own) / 1e9 * 1000,) * 2)  # a LoRA: base + its own
    reg.set_cost("add", {"input_per_1m": 1.5, "output_per_1m": 4.5})
    assert pricing("add") == (1.5, 4.5) and pricing.unit("add") == 3.0
    reg.set_cost("max", {"active_params": 2_000_000_000})
    assert pricing("max") == (2000.0, 2000.0)
    assert pricing("no-such-expert") is None


@pytest.fixture(scope="module")
def dear_half(demo_ocean, tmp_path_factory):
    from composer import Composer
    from composer.eval.benchmark import load_benchmark

    home = copy_home(demo_ocean, tmp_path_factory.mktemp("cost") / "home")
    c = Composer(Registry(home=home))
    for e in c.ctx.expert_names:
        c.registry.set_cost(
            e, {"input_per_1m": 10.0 if e in DEAR else 1.0, "output_per_1m": 10.0 if e in DEAR else 1.0}
        )
    rows = [x for x in load_benchmark(demo_ocean.out / "benchmark.jsonl") if x.split == "held-in"]
    return c, [r.prompt for r in rows]


def dear_share(c, prompts, **config) -> float:
    return float(np.mean([p.experts[0] in DEAR for p in c.route(prompts, "retrieval", **config)]))


def test_raising_the_cost_weight_moves_requests_to_cheaper_experts(dear_half):
    c, prompts = dear_half
    shares = [dear_share(c, prompts, cost_weight=w) for w in (0.0, 0.01, 0.03, 0.05, 1.0)]
    assert shares[0] == pytest.approx(len(DEAR) / 8, abs=0.05)  # quality only: each to its own expert
    assert all(a >= b for a, b in itertools.pairwise(shares))
    # measured: 0.50, 0.48, 0.42, 0.40, 0.0 (a dear expert leads its prompts by ~0.1-0.5 cosine)
    assert shares[-1] == 0.0 and shares[0] - shares[3] >= 0.05, shares
    assert dear_share(c, prompts, max_cost=5.0) == 0.0


def test_calibration_hits_the_asked_share_on_prompts_it_did_not_see(dear_half):
    c, prompts = dear_half
    fit, held = prompts[0::2], prompts[1::2]
    with pytest.raises(RouterError, match="--target-share"):
        c.route(held[:1], "retrieval", cost_weight="calibrated")
    out = c.calibrate_cost("retrieval", fit, 0.3)
    assert out["share_reached"] == pytest.approx(0.3, abs=0.02) and set(out["expensive"]) == set(DEAR)
    assert dear_share(c, held, cost_weight="calibrated") == pytest.approx(0.3, abs=0.05)
    plan = c.route(held[:1], "retrieval", cost_weight="calibrated")[0]
    assert "x price" in plan.explanation
    with pytest.raises(RouterError, match="recalibrate"):
        c.route(held[:1], "retrieval", cost_weight="calibrated", top_m=3)
