"""Router framework and query-level routers: units on hand-made vectors, then the demo ocean."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

import routers
from composer.demo.build import benchmark_rows
from routers import Query, RouterError, knn
from routers.coe import derive_map
from routers.index import ExampleIndex


# -- units (hand-made vectors stand in for the sentence encoder) -----------------------------
def unit(*v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


class CannedEncoder:
    name = "canned"

    def __init__(self, table):
        self.table = table

    def encode(self, texts):
        return np.stack([self.table[t] for t in texts])


def fake_ctx(vectors: dict[str, list], queries: dict[str, np.ndarray]):
    index = ExampleIndex({e: np.stack(v) for e, v in vectors.items()})
    return SimpleNamespace(
        index=index,
        encoder=CannedEncoder(queries),
        expert_names=sorted(vectors),
        adapter_names=sorted(vectors),
        base="b",
    )


def test_index_scores_each_expert_by_its_best_example():
    idx = ExampleIndex({"a": np.stack([unit(1, 0, 0), unit(0, 1, 0)]), "b": np.stack([unit(1, 1, 0)])})
    (ranked,) = idx.max_cosine(unit(0, 1, 0)[None], k=2)
    assert [e for e, _ in ranked] == ["a", "b"]
    assert ranked[0][1] == pytest.approx(1.0) and ranked[1][1] == pytest.approx(math.sqrt(0.5))
    names, C = idx.centroids()
    assert names == ["a", "b"] and np.allclose(np.linalg.norm(C, axis=1), 1)


def test_retrieval_top_m_scores_an_expert_by_the_mean_of_its_best_matches():
    """One lucky example wins the max; the mean of the m best matches (semantic-router's
    aggregation) prefers the expert whose examples agree with the query."""
    q = unit(1, 0, 0)
    lucky = [q, unit(0, 1, 0), unit(0, 0, 1)]  # cosines 1, 0, 0
    steady = [unit(0.9, 0.44, 0), unit(0.9, 0, 0.44), unit(0.9, -0.44, 0)]  # ~0.9 each
    ctx = fake_ctx({"lucky": lucky, "steady": steady}, {"q": q})
    (by_max,) = routers.build("retrieval", ctx).route([Query(prompt="q")])
    assert by_max.experts == ["lucky"] and by_max.scores["lucky"] == pytest.approx(1.0)
    (by_mean,) = routers.build("retrieval", ctx, top_m=3).route([Query(prompt="q")])
    assert by_mean.experts == ["steady"] and "mean cosine of its 3 best examples" in by_mean.explanation
    assert by_mean.scores["lucky"] == pytest.approx(1 / 3, abs=1e-6)
    assert by_mean.scores["steady"] == pytest.approx(float(np.mean([float(q @ v) for v in steady])), abs=1e-6)
    (two,) = ctx.index.max_cosine(q[None], k=2, top_m=2)  # the mean of each expert's 2 best
    assert dict(two)["lucky"] == pytest.approx(0.5, abs=1e-6)


def with_store(ctx):
    """The fake context keeps base artifacts in a dict (the registry's role, around the unit)."""
    store = {}
    ctx.save_artifact = lambda router, key, data, meta: store.__setitem__((router, key), (meta, data))
    ctx.load_artifact = lambda router, key: store.get((router, key))
    return ctx


def cos(c: float, axis: int):
    v = np.zeros(3, dtype=np.float32)
    v[axis], v[2] = c, math.sqrt(1 - c * c)
    return v


def test_fitted_thresholds_abstain_per_expert_where_one_threshold_cannot():
    """Expert a's right answers score high and a wrong one 0.6; b's right answers score 0.5 and
    a wrong one 0.45. One global threshold either lets a's 0.7 through or stops b's 0.55; fitted
    per expert, a abstains below 0.75 (midway 0.6..0.9) and b below 0.475."""
    table = {
        "a1": cos(0.95, 0),
        "a2": cos(0.9, 0),
        "not a": cos(0.6, 0),
        "b1": cos(0.5, 1),
        "not b": cos(0.45, 1),
    }
    table |= {"weak a": cos(0.7, 0), "fair b": cos(0.55, 1)}
    ctx = with_store(fake_ctx({"a": [unit(1, 0, 0)], "b": [unit(0, 1, 0)]}, table))
    labelled = [
        {"prompt": "a1", "expert": "a"},
        {"prompt": "a2", "expert": "a"},
        {"prompt": "not a", "expert": None},
    ]
    labelled += [{"prompt": "b1", "expert": "b"}, {"prompt": "not b", "expert": None}]
    with pytest.raises(RouterError, match="no fitted thresholds"):
        routers.build("retrieval", ctx, fitted_thresholds=True).route([Query(prompt="a1")])
    summary = routers.method("retrieval").fit(ctx, rows=labelled)
    assert summary["thresholds"] == pytest.approx({"a": 0.75, "b": 0.475}, abs=1e-5)
    assert summary["right_without"] == pytest.approx(3 / 5) and summary["right_with"] == 1.0
    weak, fair = routers.build("retrieval", ctx, fitted_thresholds=True).route(
        [Query(prompt="weak a"), Query(prompt="fair b")]
    )
    assert weak.mode == "base" and "below its fitted threshold 0.750" in weak.explanation
    assert fair.experts == ["b"] and not fair.fallback
    with pytest.raises(RouterError, match="refit"):
        routers.build("retrieval", ctx, fitted_thresholds=True, top_m=2).route([Query(prompt="a1")])
    for bad, message in [
        ([{"expert": "a"}], "needs 'prompt'"),
        ([{"prompt": "a1", "expert": "zz"}], "zz"),
        ([], "labelled"),
    ]:
        with pytest.raises(RouterError, match=message):
            routers.method("retrieval").fit(ctx, rows=bad)


def test_best_cut_is_the_brute_force_cut():
    """The one-sweep cut equals trying every cut (most right decisions, lowest cut on ties)."""
    import random

    from routers.retrieval.fit import best_cut

    rng = random.Random(0)
    for _ in range(200):
        scored = [(round(rng.random(), 1), rng.random() < 0.6) for _ in range(rng.randint(1, 12))]
        cuts = sorted({s for s, _ in scored})
        brute = max(
            ((sum((s >= t) == ok for s, ok in scored), -i) for i, t in enumerate(cuts)),
        )
        t, right = best_cut(scored)
        assert right == brute[0]
        i = -brute[1]
        assert t == (None if i == 0 else (cuts[i - 1] + cuts[i]) / 2)


def test_retrieval_threshold_abstains_and_says_why():
    ctx = fake_ctx(
        {"a": [unit(1, 0, 0)], "b": [unit(0, 1, 0)]}, {"near a": unit(1, 0.1, 0), "far": unit(0, 0, 1)}
    )
    plain = routers.build("retrieval", ctx).route([Query(prompt="near a"), Query(prompt="far")])
    assert plain[0].experts == ["a"] and plain[0].mode == "select" and "a" in plain[0].explanation
    strict = routers.build("retrieval", ctx, threshold=0.5, fallback="b").route([Query(prompt="far")])[0]
    assert strict.experts == ["b"] and strict.fallback and "below the threshold" in strict.explanation
    base = routers.build("retrieval", ctx, threshold=0.5).route([Query(prompt="far")])[0]
    assert base.mode == "base" and base.experts == [] and "base model" in base.explanation


def test_loraretriever_and_ensemble_take_top_k_with_uniform_weights():
    ctx = fake_ctx({"a": [unit(1, 0, 0)], "b": [unit(1, 1, 0)], "c": [unit(0, 0, 1)]}, {"q": unit(1, 0.2, 0)})
    merge = routers.build("loraretriever", ctx, top_k=2).route([Query(prompt="q")])[0]
    assert merge.mode == "merge" and merge.experts == ["a", "b"] and merge.weights == [0.5, 0.5]
    ens = routers.build("ensemble", ctx, top_k=3).route([Query(prompt="q")])[0]
    assert ens.mode == "ensemble" and ens.experts == ["a", "b", "c"]


def test_knn_votes_and_ignores_unknown_scores():
    X = np.stack([unit(1, 0), unit(0.9, 0.1), unit(0, 1)])
    Y = np.array([[1, np.nan], [0, 1], [0, 0]], dtype=np.float32)
    p = knn.predict((X, Y), unit(1, 0.05)[None], k=2, temperature=1.0)[0]
    assert 0.5 < p[0] < 1 and p[1] == pytest.approx(1.0)  # column 1 only known for the 2nd neighbour
    X2, Y2 = knn.from_bytes(knn.to_bytes(X, Y))
    assert np.array_equal(X2, X) and np.array_equal(np.isnan(Y2), np.isnan(Y))


def test_derive_map_best_score_then_cost_then_name():
    results = [
        {"category": "math", "expert": "big", "score": 1.0, "cost": 9},
        {"category": "math", "expert": "small", "score": 1.0, "cost": 1},
        {"category": "text", "expert": "a", "score": 0.5},
        {"category": "text", "expert": "b", "score": 0.9},
        {"category": "chat", "expert": "y", "score": 0.2},
        {"category": "chat", "expert": "x", "score": 0.2},
    ]
    assert derive_map(results) == {"chat": "x", "math": "small", "text": "b"}
    # rows without a cost take the expert's registered price: the cheaper of two ties wins
    assert derive_map(results, lambda e: {"x": 2.0, "y": 1.0}.get(e, 0.0))["chat"] == "y"
    with pytest.raises(RouterError, match="lacks 'score'"):
        derive_map([{"category": "c", "expert": "e"}])


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("nope", {}, "unknown router 'nope'; available: arrow, bench_coe"),
        ("glider", {"alpha": -1}, "alpha: Input should be greater than or equal to 0"),
        ("arrow", {"temperature": 0}, "temperature: Input should be greater than 0"),
        ("retrieval", {"treshold": 0.3}, "treshold: Extra inputs are not permitted"),
        ("loraretriever", {"top_k": 0}, "top_k: Input should be greater than or equal to 1"),
        ("loraretriever", {"combine": "sum"}, "combine: Input should be 'merge' or 'ensemble'"),
        ("retrieval", {"threshold": "high"}, "threshold"),
    ],
)
def test_bad_router_names_and_configs_are_clear(name, config, message):
    with pytest.raises(RouterError, match=message):
        routers.build(name, SimpleNamespace(), **config)


def test_every_router_publishes_a_config_schema():
    schemas = routers.schemas()
    assert set(schemas) == {
        "arrow",
        "bench_coe",
        "centroid",
        "coe",
        "density",
        "ensemble",
        "glider",
        "hidden",
        "loraretriever",
        "oracle",
        "phatgoose",
        "retrieval",
        "spectr",
        "uniform",
    }
    assert all(s["description"] and s["config"]["type"] == "object" for s in schemas.values())


# -- the demo ocean, with the real MiniLM encoder ----------------------------------------------
@pytest.fixture(scope="module")
def composer(demo_ocean):
    from composer import Composer

    return Composer(demo_ocean.registry)


@pytest.fixture(scope="module")
def rows():
    return benchmark_rows(0, ocean="symbols")


def own_expert_rate(plans, rows) -> float:
    return sum(p.experts == [r["task"]] for p, r in zip(plans, rows)) / len(rows)


@pytest.mark.parametrize("router", ["retrieval", "density"])
def test_example_routers_route_held_back_paraphrases_to_their_expert(composer, rows, router):
    held_back = [r for r in rows if r["phrasing"] == "held-back"]
    assert len({r["task"] for r in held_back}) == 8
    rate = own_expert_rate(composer.route([r["prompt"] for r in held_back], router=router), held_back)
    assert rate >= 0.90, rate


OFF_TOPIC_FIT = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves",
    "How do I bake sourdough bread?",
    "Explain photosynthesis to a child",
    "Translate good morning into Spanish",
    "What year did the Berlin wall fall?",
    "Recommend a good science fiction novel",
    "How far is the moon from the earth?",
]
OFF_TOPIC_NEW = [
    "Who painted the Mona Lisa?",
    "Give me tips for running a marathon",
    "What is the boiling point of water?",
    "Suggest a name for a pet cat",
    "How do vaccines work?",
    "Describe the rules of chess",
]


def test_fitted_thresholds_turn_away_off_topic_prompts_and_keep_paraphrases(
    demo_ocean, composer, rows, tmp_path, capsys
):
    """`composer fit retrieval --data` on a quarter of the held-in prompts (labelled by skill)
    and 8 off-topic questions (labelled none); then, on prompts it never saw, every off-topic
    question whose nearest expert got a threshold is turned away, and held-back paraphrases
    reach their expert as often as without thresholds (MiniLM: a fixed encoder, so these are
    the same on any machine; measured: 4 of the 6 go to an expert with a threshold, all 4
    turned away; paraphrases 95% with and without)."""
    import json

    from composer.cli import main

    labelled = [{"prompt": r["prompt"], "expert": r["task"]} for r in rows if r["split"] == "held-in"][::4]
    data = tmp_path / "labelled.jsonl"
    data.write_text(
        "".join(
            json.dumps(r) + "\n" for r in labelled + [{"prompt": p, "expert": None} for p in OFF_TOPIC_FIT]
        )
    )
    assert main(["--home", str(demo_ocean.home), "fit", "retrieval", "--data", str(data)]) == 0
    summary = json.loads(capsys.readouterr().out)
    thresholds = summary["thresholds"]
    assert thresholds and summary["right_with"] >= summary["right_without"]
    off = composer.route(OFF_TOPIC_NEW, router="retrieval", fitted_thresholds=True)
    plain_off = composer.route(OFF_TOPIC_NEW, router="retrieval")
    guarded = [p for p, q in zip(off, plain_off) if q.experts[0] in thresholds]
    assert guarded and all(p.mode == "base" and "fitted threshold" in p.explanation for p in guarded)
    held_back = [r for r in rows if r["phrasing"] == "held-back"]
    prompts = [r["prompt"] for r in held_back]
    with_t = own_expert_rate(composer.route(prompts, router="retrieval", fitted_thresholds=True), held_back)
    without = own_expert_rate(composer.route(prompts, router="retrieval"), held_back)
    assert with_t >= without - 0.05, (with_t, without)


def test_coe_after_fitting_routes_held_back_paraphrases(composer, rows):
    labelled = [{"prompt": r["prompt"], "category": r["task"]} for r in rows if r["split"] == "held-in"]
    summary = composer.fit("coe", rows=labelled)
    assert summary["map"] == {t: t for t in summary["categories"]} and summary["rows"] == len(labelled)
    held_back = [r for r in rows if r["phrasing"] == "held-back"]
    rate = own_expert_rate(composer.route([r["prompt"] for r in held_back], router="coe"), held_back)
    assert rate >= 0.90, rate
    # two-skill prompts split the neighbours' vote: below the threshold CoE falls back and says so
    comps = [r["prompt"] for r in rows if r["phrasing"] == "composition"][::4]
    plans = composer.route(comps, router="coe", threshold=0.9, fallback="length")
    fell = [p for p in plans if p.fallback]
    assert fell and all(p.experts == ["length"] and "confidence" in p.explanation for p in fell)
    assert all(max(p.scores.values()) >= 0.9 for p in plans if not p.fallback)


def test_coe_domain_labels_need_a_map_and_derive_one(composer):
    summary = composer.fit("coe", by="domain")
    assert set(summary["categories"]) == {"text", "cipher", "arithmetic", "counting"}
    experts = {r.name: r.domains[0] for r in composer.experts()}
    assert all(experts[e] == c for c, e in summary["map"].items())
    with pytest.raises(RouterError, match="no expert mapped"):
        composer.fit("coe", rows=[{"prompt": "x", "category": "unknown"}], expert_map={})
    composer.fit("coe")  # back to the demo's default fit


ROUTER_CONFIGS = {
    "retrieval": {},
    "density": {},
    "centroid": {},
    "loraretriever": {"top_k": 2},
    "ensemble": {"top_k": 2},
    "coe": {},
    "bench_coe": {},
    "uniform": {"experts": ["max", "length"]},
    "oracle": {},
}


@pytest.mark.parametrize("name", sorted(ROUTER_CONFIGS))
def test_every_router_routes_generates_and_explains_itself(composer, rows, name):
    """Relations only (the fast ocean's experts are partly trained, so their answers are not
    asserted): each row answers as its plan does alone, a selected expert answers as that expert
    pinned, an ensemble keeps its most likely candidate's answer; query routers that read the
    registered examples pick the prompt's own expert (a routing decision, 6 held-in prompts)."""
    picked = [r for r in rows if r["task"] in ("max", "length", "countdown") and r["split"] == "held-in"][
        ::20
    ]
    queries = [{"prompt": r["prompt"], "task": r["task"]} for r in picked]
    outs = composer.generate(queries, router=name, max_new_tokens=12, **ROUTER_CONFIGS[name])
    live = {r.name for r in composer.experts()}
    pinned = {}
    for q, o in zip(queries, outs):
        p = o.plan
        assert p.router == name and p.explanation and set(p.experts) <= live
        assert p.experts and math.isclose(sum(p.weights), 1.0) and p.mode in ("select", "merge", "ensemble")
        alone = composer.execute([q["prompt"]], [p], max_new_tokens=12)[0]
        assert (alone.text, alone.expert) == (o.text, o.expert)  # batched with the others = alone
        if p.mode == "ensemble":
            assert o.expert in p.experts and set(o.candidates) == set(p.experts)
            assert o.candidates[o.expert] == max(o.candidates.values())
        if p.mode in ("select", "ensemble"):  # the answer is the chosen expert's own
            key = (q["prompt"], o.expert)
            pinned[key] = (
                pinned.get(key) or composer.generate([q["prompt"]], expert=o.expert, max_new_tokens=12)[0]
            )
            assert o.text == pinned[key].text
    if name in ("retrieval", "coe", "oracle"):
        assert sum(o.plan.experts == [r["task"]] for o, r in zip(outs, picked)) >= 5, [
            o.plan.experts for o in outs
        ]


def test_oracle_needs_tasks_and_falls_back_on_compositions(composer, rows):
    with pytest.raises(RouterError, match="every query needs its 'task'"):
        composer.route(["Count the letters: a b"], router="oracle")
    comp = next(r for r in rows if r["phrasing"] == "composition")
    (plan,) = composer.route([{"prompt": comp["prompt"], "task": comp["task"]}], router="oracle")
    assert plan.mode == "base" and "no registered expert" in plan.fallback


def test_uniform_rejects_unknown_experts(composer):
    with pytest.raises(RouterError, match="unknown expert"):
        composer.route(["x"], router="uniform", experts=["max", "ghost"])
