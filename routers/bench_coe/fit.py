"""Fitting Bench-CoE from evaluation results (offline).

Contract: `fit_bench_coe(ctx, results=None, level="query", per_expert=16)` with result rows
{"prompt", "expert", "score" in [0, 1], optional "category"}; without results, every expert
is scored (`ctx.score`, injected by the caller) on the first `per_expert` registered
examples (with completions) of every expert, each labelled by the expert it came from:
- query level: a nearest-neighbour regressor (`knn`) from the prompt embedding to every
  expert's score on that prompt (NaN where not evaluated), `bench_coe/query.safetensors`;
- subject level: CoE with subjects as categories — a category classifier on the prompts
  and the map derived from the results (`coe.derive_map`), as `bench_coe/subject.safetensors`.
Returns a summary dict.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from routers import knn
from routers.base import RouterError
from routers.coe.fit import derive_map, fit_classifier

ROUTER = "bench_coe"
KEYS = {"query": "query.safetensors", "subject": "subject.safetensors"}


def score_on_examples(ctx, per_expert: int) -> list[dict]:
    """Every expert's score on the registered examples of every expert (labelled by owner)."""
    if ctx.score is None:
        raise RouterError(
            "bench_coe: give evaluation results (this context cannot run experts to score them)"
        )
    rows = [
        {"prompt": ex["prompt"], "answer": ex["completion"], "category": rec.name}
        for rec in ctx.experts
        for ex in rec.examples[:per_expert]
        if ex.get("completion")
    ]
    return ctx.score(rows)


def fit_bench_coe(
    ctx, results: Sequence[dict] | None = None, level: str = "query", per_expert: int = 16
) -> dict:
    if level not in KEYS:
        raise RouterError(f"bench_coe: level must be 'query' or 'subject', not {level!r}")
    results = list(results) if results is not None else score_on_examples(ctx, per_expert)
    if not results:
        raise RouterError("bench_coe: no evaluation results to fit on")
    missing = [k for k in ("prompt", "expert", "score") if any(k not in r for r in results)]
    if missing:
        raise RouterError(f"bench_coe: result rows need {', '.join(missing)}")
    live = set(ctx.expert_names)
    results = [r for r in results if r["expert"] in live]
    if level == "subject":
        if any("category" not in r for r in results):
            raise RouterError("bench_coe: subject level needs a 'category' in every result row")
        rows = list(
            {r["prompt"]: {"prompt": r["prompt"], "category": r["category"]} for r in results}.values()
        )
        return fit_classifier(
            ctx,
            rows,
            derive_map(results, ctx.pricing.unit),
            ROUTER,
            KEYS[level],
            "evaluation results by subject",
        )
    experts = sorted({r["expert"] for r in results})
    prompts = sorted({r["prompt"] for r in results})
    pi, ei = {p: i for i, p in enumerate(prompts)}, {e: j for j, e in enumerate(experts)}
    Y = np.full((len(prompts), len(experts)), np.nan, dtype=np.float32)
    for r in results:
        Y[pi[r["prompt"]], ei[r["expert"]]] = float(r["score"])
    X = ctx.encoder.encode(prompts)
    meta = {
        "format": "safetensors",
        "experts": experts,
        "encoder": ctx.encoder.name,
        "prompts": len(prompts),
        "results": len(results),
        "mean_score": {e: float(np.nanmean(Y[:, j])) for j, e in enumerate(experts)},
        "source": "evaluation results per query",
    }
    ctx.save_artifact(ROUTER, KEYS[level], knn.to_bytes(X, Y), meta)
    return {k: meta[k] for k in ("experts", "prompts", "results", "mean_score", "source")}
