"""Run router specs over a benchmark: route, reuse cached outputs, execute the rest.

Contract: `evaluate(composer, examples, specs, settings=None, cache=None, on_progress=None)`
-> `EvalRun`. For each spec it routes every example (queries carry `task`/`category`, so
the oracle works), looks each (example, execution, settings) up in the `OutputCache`,
executes the misses through `Composer.execute` (generation) or `Composer.choose`
(multiple choice, by log-likelihood) in batches, and records per example: router label,
plan (mode, experts, weights, fallback), served_by, prediction, correct, and cost (the
request's price at the experts' current prices, from its tokens; None when unpriced).
Endpoint experts run like the others, their answers cached the same way. A progress bar
per spec counts examples; `on_progress(label, done, total)` sees the same. Token-level
specs also get a layer x expert usage summary over a few held-out examples, one task at a
time (`usage_sample`; `usage=False` skips it: shards). `specs` may be a string ("all",
"a,b(k=v)"). `EvalRun.generated` counts rows actually executed, `cached` those answered
from the cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest

from composer.eval import cache as C
from composer.eval.benchmark import Example, normalise
from composer.eval.specs import RouterSpec, parse_specs
from composer.progress import progress
from routers import Query, RoutingPlan
from routers.cost import plan_cost

DEFAULT_SETTINGS = {"max_new_tokens": 32, "temperature": 0.0, "chat": True}
USAGE_SAMPLES = 16


@dataclass
class EvalRun:
    benchmark: str
    settings: dict
    specs: list[RouterSpec]
    records: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    usage: dict[str, dict] = field(default_factory=dict)  # label -> layer -> expert -> share
    oracle: dict[str, str | None] = field(default_factory=dict)  # example id -> oracle expert
    params: dict[str, int] = field(default_factory=dict)  # expert -> parameter count
    generated: int = 0
    cached: int = 0


def execution(plan: RoutingPlan, digests: dict[str, str], base: str) -> dict:
    """What determines the output of a plan, independent of which router made it."""
    weights = plan.weights or [None] * len(plan.experts)
    sig = {
        "base": digests.get(base),
        "mode": plan.mode,
        "experts": [
            [e, None if w is None else round(w, 6), digests.get(e)] for e, w in zip(plan.experts, weights)
        ],
    }
    if plan.mode == "ensemble":
        sig["experts"] = sorted([e, None, digests.get(e)] for e in plan.experts)
    if plan.gate is not None:
        g = plan.gate.model_dump()
        g["bias"] = {k: round(v, 6) for k, v in sorted(g["bias"].items())}
        sig["gate"] = g
    return sig


def _plans(composer, spec: RouterSpec, queries: list[Query]) -> list[RoutingPlan]:
    if spec.kind != "router":  # the base model, or one pinned expert
        return [composer.direct(composer.base if spec.kind == "base" else spec.expert)] * len(queries)
    return composer.route(queries, spec.router, **spec.config)


def _run_chunk(composer, examples: list[Example], plans: list[RoutingPlan], settings: dict) -> list[dict]:
    out: list[dict | None] = [None] * len(examples)
    gen = [i for i, e in enumerate(examples) if e.kind == "generate"]
    if gen:
        for i, c in zip(
            gen, composer.execute([examples[i].prompt for i in gen], [plans[i] for i in gen], **settings)
        ):
            out[i] = {
                "prediction": c.text,
                "served_by": c.expert,
                "tokens": c.completion_tokens,
                "prompt_tokens": c.prompt_tokens,
            }
    mc = [i for i, e in enumerate(examples) if e.kind == "choice"]
    if mc:
        scores = composer.choose(
            [examples[i].prompt for i in mc],
            [plans[i] for i in mc],
            [examples[i].choices for i in mc],
            chat=settings.get("chat", True),
        )
        for i, s in zip(mc, scores):
            best = max(range(len(s)), key=s.__getitem__)
            out[i] = {
                "prediction": examples[i].choices[best],
                "choice": best,
                "scores": [round(x, 4) for x in s],
                "served_by": plans[i].selected(),
            }
    return out


def _cost(composer, plan: RoutingPlan, out: dict) -> float | None:
    """The request's price at the experts' current prices (cached outputs keep their tokens)."""
    if "tokens" not in out:
        return None
    return plan_cost(
        composer.ctx.pricing, plan, out.get("served_by"), out.get("prompt_tokens", 0), out["tokens"]
    )


def _correct(e: Example, out: dict) -> bool:
    if e.kind == "choice":
        return out["choice"] == e.label
    return normalise(out["prediction"]) == normalise(e.answer)


def usage_sample(examples: Sequence[Example], n: int = USAGE_SAMPLES) -> list[str]:
    """Up to n held-out prompts (all prompts if none is held out), one task at a time in
    turn (tasks in order of appearance), so the sample spans the benchmark's tasks rather
    than repeating its first one."""
    pool = [e for e in examples if e.split == "held-out"] or list(examples)
    by_task: dict[str, list[str]] = {}
    for e in pool:
        by_task.setdefault(e.task, []).append(e.prompt)
    turns = zip_longest(*by_task.values())
    return [p for turn in turns for p in turn if p is not None][:n]


def _usage(composer, spec: RouterSpec, examples: list[Example]) -> dict:
    """Layer -> expert -> mean share of routing weight, over `usage_sample(examples)`."""
    sample = usage_sample(examples)
    totals: dict[str, dict[str, float]] = {}
    reports = [r["per_token"] for r in composer.inspect(sample, spec.router, **spec.config) if r["per_token"]]
    for rep in reports:
        for layer, shares in rep["layers"].items():
            for e, w in shares.items():
                totals.setdefault(layer, {}).setdefault(e, 0.0)
                totals[layer][e] += w / len(reports)
    return totals


def evaluate(
    composer,
    examples: Sequence[Example],
    specs: str | list[RouterSpec],
    settings: dict | None = None,
    cache: C.OutputCache | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    benchmark: str = "",
    batch_size: int = 64,
    usage: bool = True,
) -> EvalRun:
    examples = list(examples)
    experts = composer.experts()
    if isinstance(specs, str):
        specs = parse_specs(specs, [r.name for r in experts])
    settings = {**DEFAULT_SETTINGS, **(settings or {})}
    run = EvalRun(
        benchmark, settings, list(specs), params={r.name: int(r.config.get("num_params", 0)) for r in experts}
    )
    digests = {r.name: r.digest for r in composer.registry.list()}
    queries = [Query(prompt=e.prompt, task=e.task, category=e.category) for e in examples]
    run.oracle = {e.id: p.selected() for e, p in zip(examples, composer.route(queries, "oracle"))}
    for spec in run.specs:
        t0 = time.perf_counter()
        plans = _plans(composer, spec, queries)
        keys = [
            C.key(e.prompt, e.kind, e.choices, execution(p, digests, composer.base), settings)
            for e, p in zip(examples, plans)
        ]
        found = cache.get_many(keys) if cache else {}
        todo = [i for i, k in enumerate(keys) if k not in found]
        bar = progress(desc=spec.label, total=len(examples), unit="ex")
        bar.update(len(examples) - len(todo))
        if on_progress:
            on_progress(spec.label, len(examples) - len(todo), len(examples))
        for s in range(0, len(todo), batch_size):
            idx = todo[s : s + batch_size]
            outs = _run_chunk(composer, [examples[i] for i in idx], [plans[i] for i in idx], settings)
            new = {keys[i]: o for i, o in zip(idx, outs)}
            found.update(new)
            if cache:
                cache.put_many(new)
            run.generated += len(idx)
            bar.update(len(idx))
            if on_progress:
                on_progress(spec.label, len(examples) - len(todo) + s + len(idx), len(examples))
        bar.close()
        run.cached += len(examples) - len(todo)
        run.seconds[spec.label] = time.perf_counter() - t0
        for e, p, k in zip(examples, plans, keys):
            out = found[k]
            run.records.append(
                {
                    "id": e.id,
                    "router": spec.label,
                    "task": e.task,
                    "split": e.split,
                    "category": e.category,
                    "prompt": e.prompt,
                    "mode": p.mode,
                    "experts": p.experts,
                    "weights": [round(w, 4) for w in p.weights],
                    "top_k": p.gate.top_k if p.gate else None,
                    "fallback": p.fallback,
                    "served_by": out.get("served_by"),
                    "prediction": out["prediction"],
                    "answer": e.answer if e.kind == "generate" else e.choices[e.label],
                    "correct": _correct(e, out),
                    "cost": _cost(composer, p, out),
                }
            )
        if usage and any(p.mode == "token" for p in plans):
            run.usage[spec.label] = _usage(composer, spec, examples)
    return run
