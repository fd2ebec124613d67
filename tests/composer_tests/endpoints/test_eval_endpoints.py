"""`composer eval` over endpoint experts: run like the others, cached, and drawn as quality vs cost.

The front server's experts (conftest `env`): two endpoints priced 2/6 per 1M tokens, the
local LoRA experts priced by their active parameters. An evaluation of routers and pinned
experts over held-in prompts of an endpoint task and a local one records each request's
cost; a rerun is answered from the output cache without one call to the upstream; the
report carries cost per request and the quality/cost plot.
"""

from __future__ import annotations

import json

import pytest

from composer.eval.report import frontier


@pytest.mark.parametrize(
    "points, hull",
    [
        ([(1, 50), (2, 60), (3, 90)], [(1, 50), (3, 90)]),  # (2, 60) lies below the chord
        ([(1, 50), (2, 80), (3, 90)], [(1, 50), (2, 80), (3, 90)]),
        ([(1, 70), (2, 60), (3, 90)], [(1, 70), (3, 90)]),  # dearer and worse: dominated
        ([(2, 80), (1, 80)], [(1, 80)]),
        ([], []),
    ],
)
def test_frontier_is_the_non_decreasing_convex_hull(points, hull):
    assert frontier(points) == hull


def test_eval_runs_endpoints_caches_them_and_plots_quality_vs_cost(env, demo_ocean, tmp_path):
    from composer import Composer
    from composer.eval import evaluate, load_benchmark, write_report
    from composer.eval.cache import OutputCache

    up, settings = env["up"], env["front"]["settings"]
    rows = [
        e
        for e in load_benchmark(demo_ocean.out / "benchmark.jsonl")
        if e.split == "held-in" and e.task in ("reverse", "add")
    ]
    rows = [e for e in rows if e.task == "reverse"][:8] + [e for e in rows if e.task == "add"][:8]
    c = Composer(settings.registry(), settings=settings)
    specs = "retrieval,retrieval(max_cost=1.0),expert:remote-reverse,expert:add"
    cache = OutputCache(tmp_path / "cache.sqlite")
    run = evaluate(c, rows, specs, {"max_new_tokens": 12}, cache=cache, usage=False)
    assert run.generated > 0
    by = {(r["router"], r["id"]): r for r in run.records}
    reverse_ids = [e.id for e in rows if e.task == "reverse"]
    assert all(by[("retrieval", i)]["served_by"] == "remote-reverse" for i in reverse_ids)
    assert all(by[("retrieval(max_cost=1.0)", i)]["served_by"] != "remote-reverse" for i in reverse_ids)
    for r in run.records:
        assert r["cost"] is not None and r["cost"] > 0

    calls = len(up.seen)
    again = evaluate(c, rows, specs, {"max_new_tokens": 12}, cache=cache, usage=False)
    assert again.generated == 0 and len(up.seen) == calls  # a rerun calls nothing
    assert [r["prediction"] for r in again.records] == [r["prediction"] for r in run.records]

    summary = {r["router"]: r for r in write_report(run, tmp_path / "report")}
    assert summary["expert:remote-reverse"]["cost_per_request"] > summary["expert:add"]["cost_per_request"]
    assert (tmp_path / "report" / "quality_cost.png").stat().st_size > 0
    assert "cost/req" in (tmp_path / "report" / "report.md").read_text()
    saved = json.loads((tmp_path / "report" / "results.json").read_text())
    assert all("cost" in r for r in saved["records"])
