"""The density router and `ExampleIndex.density`: the kernel density of an expert's examples.

Units on random and hand-made unit vectors (the sentence encoder is not under test): the
score is the formula over every example, exact below the index's exact limit and a lower
bound above it; its limits are retrieval's max (small bandwidth) and the mean cosine (large
bandwidth); an expert registered with a few examples keeps a query equal to one of them,
where the mean of an expert's m best matches gives it away.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import routers
from routers import Query
from routers.index import ExampleIndex

rng = np.random.default_rng(0)


def units(n: int, d: int = 16) -> np.ndarray:
    m = rng.normal(size=(n, d)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def kde(rows: np.ndarray, q: np.ndarray, b: float) -> float:
    """The formula, in float64 with its own log-sum-exp shift."""
    s = (rows @ q).astype(np.float64)
    return float(s.max() + b * np.log(np.mean(np.exp((s - s.max()) / b))))


VECTORS = {"one": units(1), "three": units(3), "many": units(40), "some": units(7)}
QUERIES = units(6)


@pytest.mark.parametrize("bandwidth", [0.02, 0.1, 1.0, 10.0])
def test_density_is_the_formula_over_every_example(bandwidth):
    index = ExampleIndex({**VECTORS, "empty": np.zeros((0, 16), np.float32)})
    for q, ranked in zip(QUERIES, index.density(QUERIES, k=5, bandwidth=bandwidth)):
        assert [e for e, _ in ranked] != [] and "empty" not in dict(ranked)  # no rows: no candidate
        want = sorted(((kde(v, q, bandwidth), e) for e, v in VECTORS.items()), reverse=True)
        assert [e for _, e in want] == [e for e, _ in ranked]
        assert [s for s, _ in want] == pytest.approx([s for _, s in ranked], abs=1e-5)


def test_approximate_index_counts_only_the_rows_it_finds():
    exact = ExampleIndex(VECTORS)
    hnsw = ExampleIndex(VECTORS, exact_limit=10)  # 51 rows: HNSW
    q = QUERIES[:2]
    every = hnsw.density(q, k=4, bandwidth=0.1, depth=51)
    assert [[e for e, _ in r] for r in every] == [[e for e, _ in r] for r in exact.density(q, 4, 0.1)]
    for few, full in zip(hnsw.density(q, k=4, bandwidth=0.1, depth=5), every):
        full = dict(full)
        assert all(s <= full[e] + 1e-6 for e, s in few)  # missing rows add nothing: a lower bound


def test_bandwidth_limits_are_the_max_and_the_mean_cosine():
    index = ExampleIndex(VECTORS)
    for q, narrow, wide in zip(QUERIES, index.density(QUERIES, 4, 1e-3), index.density(QUERIES, 4, 100.0)):
        assert dict(narrow) == pytest.approx(
            {e: float((v @ q).max()) for e, v in VECTORS.items()}, abs=1e-3 * np.log(40) + 1e-5
        )
        assert dict(wide) == pytest.approx({e: float((v @ q).mean()) for e, v in VECTORS.items()}, abs=0.01)


def test_a_few_example_expert_keeps_its_own_prompt_where_the_top_m_mean_dilutes_it():
    """A runtime registration with three unlike examples, queried with one of them, against an
    expert of 64 examples whose best match is 0.85: density keeps the new expert (it scores at
    least 1 + b·log(1/3)); the mean of each expert's 3 best matches gives the query away."""
    q = np.eye(8, dtype=np.float32)[0]
    new = np.eye(8, dtype=np.float32)[[0, 1, 2]]
    big = units(64, 8)
    big[:, 0] = 0
    big = big / np.linalg.norm(big, axis=1, keepdims=True) * np.sqrt(1 - 0.85**2)
    big[:, 0] = 0.85 - 0.1 * (np.arange(64) % 2)  # half at 0.85, half at 0.75
    ctx = SimpleNamespace(
        index=ExampleIndex({"new": new, "big": big}),
        encoder=SimpleNamespace(name="canned", encode=lambda texts: np.stack([q for _ in texts])),
        expert_names=["big", "new"],
        adapter_names=["big", "new"],
        base="b",
    )
    (plan,) = routers.build("density", ctx).route([Query(prompt="q")])
    assert plan.experts == ["new"] and plan.scores["new"] >= 1 + 0.1 * np.log(1 / 3) - 1e-6
    assert "kernel density of its examples (bandwidth 0.1)" in plan.explanation
    (diluted,) = routers.build("retrieval", ctx, top_m=3).route([Query(prompt="q")])
    assert diluted.experts == ["big"]


def test_density_abstains_below_its_threshold():
    q = QUERIES[0]
    ctx = SimpleNamespace(
        index=ExampleIndex(VECTORS),
        encoder=SimpleNamespace(name="canned", encode=lambda texts: np.stack([q for _ in texts])),
        expert_names=sorted(VECTORS),
        adapter_names=sorted(VECTORS),
        base="b",
    )
    (plan,) = routers.build("density", ctx, threshold=0.99).route([Query(prompt="q")])
    assert plan.fallback and "below the threshold 0.990" in plan.explanation
