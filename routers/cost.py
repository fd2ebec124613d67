"""Cost-aware routing: one comparable price per expert, the quality/cost knob, its calibration.

Contract:
- `Pricing(registry, per_bparam)`: `pricing(name)` -> (input, output) price per 1M tokens
  of one request served by expert `name`, or None when unknown. An expert's
  `config["cost"]` prices win (endpoint experts, hosted APIs: what they charge); else its
  active parameters — `cost.active_params`, a whole model's validated `num_params`, a LoRA:
  its base's plus its own — priced at `per_bparam` per billion (`COMPOSER_PRICE_PER_BPARAM`), both ways.
  `unit(name)` is the one number routers compare: the mean of the two (0 when unknown);
  `units(names)` the same for many at one registry read.
- `CostConfig`, a mixin of query-level select routers' configs: `cost_weight` λ >= 0
  ranks experts by `score - λ * unit cost` (RouterBench's / Not Diamond's trade-off), or
  "calibrated": the λ `calibrate` stored for this router; `max_cost` drops experts whose
  unit cost is above it. `active(config)` says whether either is set.
- `rerank(ranked, unit, weight, max_cost)` applies them to one query's [(expert, score)].
- `request_cost(pricing, [(expert, weight)], prompt_tokens, completion_tokens)`: what one
  served request cost; `plan_cost(pricing, plan, served_by, ...)` the same for an executed
  plan (usage, evaluation).
- `calibrate(ctx, router, prompts, target_share, expensive_above=None, **config)`: as
  RouteLLM's `calibrate_threshold`: scores every prompt as the router does, finds for each
  the λ beyond which it leaves the expensive experts (unit cost > `expensive_above`,
  default: the cheapest expert's), and keeps the λ that sends `target_share` of the prompts
  to them — the (1 - share) quantile. Stored as the base's artifact `cost/<router>.json`
  with the router config it holds for; returns λ and the share reached on these prompts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from routers.base import RouterConfig, RouterError

DEFAULT_PER_BPARAM = 0.03
ROUTER = "cost"


class Pricing:
    def __init__(self, registry, per_bparam: float = DEFAULT_PER_BPARAM):
        self.registry, self.per_bparam = registry, per_bparam

    def __call__(self, name: str) -> tuple[float, float] | None:
        return self._price({r.name: r for r in self.registry.list()}, name)

    def unit(self, name: str) -> float:
        return self.units([name])[name]

    def units(self, names) -> dict[str, float]:
        """`unit` of many experts at one registry read (routing ranks every expert per batch)."""
        records = {r.name: r for r in self.registry.list()}
        prices = {n: self._price(records, n) for n in names}
        return {n: 0.0 if p is None else (p[0] + p[1]) / 2 for n, p in prices.items()}

    def _price(self, records: dict, name: str) -> tuple[float, float] | None:
        rec = records.get(name)
        if rec is None:
            return None
        cost = rec.config.get("cost") or {}
        if "input_per_1m" in cost or "output_per_1m" in cost:
            return float(cost.get("input_per_1m", 0.0)), float(cost.get("output_per_1m", 0.0))
        params = cost.get("active_params")
        if not params and rec.kind in ("base", "model"):
            params = rec.config.get("num_params")
        if not params and rec.kind == "lora" and rec.base_model in records:
            base = records[rec.base_model].config
            own = rec.config.get("num_params") or 0
            params = ((base.get("cost") or {}).get("active_params") or base.get("num_params") or 0) + own
        if not params:
            return None
        price = params / 1e9 * self.per_bparam
        return price, price


def request_cost(
    pricing: Callable[[str], tuple[float, float] | None],
    experts: Sequence[tuple[str, float]],
    prompt_tokens: int,
    completion_tokens: int,
) -> float | None:
    """The price of one request served by `experts` [(name, weight)]: their prices per 1M
    tokens, weighted (a mixture pays its experts' mean), times the tokens; None if unpriced."""
    known = [(p, w) for p, w in ((pricing(e), w) for e, w in experts) if p is not None]
    if not known:
        return None
    total = sum(w for _, w in known) or 1.0
    p_in = sum(p[0] * w for p, w in known) / total
    p_out = sum(p[1] * w for p, w in known) / total
    return (prompt_tokens * p_in + completion_tokens * p_out) / 1e6


def plan_cost(
    pricing, plan, served_by: str | None, prompt_tokens: int, completion_tokens: int
) -> float | None:
    """`request_cost` of a plan as executed: the expert that served it (select), every
    candidate (an ensemble runs them all), or the weighted mixture (merge, per-token)."""
    if plan.mode == "ensemble":
        costs = [request_cost(pricing, [(e, 1.0)], prompt_tokens, completion_tokens) for e in plan.experts]
        known = [c for c in costs if c is not None]
        return sum(known) if known else None
    if served_by:
        return request_cost(pricing, [(served_by, 1.0)], prompt_tokens, completion_tokens)
    weights = plan.weights or [1.0] * len(plan.experts)
    return request_cost(pricing, list(zip(plan.experts, weights)), prompt_tokens, completion_tokens)


class CostConfig(RouterConfig):
    cost_weight: float | Literal["calibrated"] = Field(
        0.0,
        description="rank experts by score - cost_weight * price per 1M tokens (0: quality only); "
        '"calibrated": the weight `composer fit ROUTER --target-share` stored',
    )
    max_cost: float | None = Field(
        None,
        ge=0,
        description="leave out experts priced above this (per 1M tokens, mean of input and output)",
    )

    def model_post_init(self, _ctx) -> None:
        if isinstance(self.cost_weight, float) and self.cost_weight < 0:
            raise ValueError("cost_weight must be >= 0 or 'calibrated'")


def active(config) -> bool:
    return getattr(config, "cost_weight", 0.0) != 0.0 or getattr(config, "max_cost", None) is not None


def rerank(
    ranked: list[tuple[str, float]], unit: Callable[[str], float], weight: float, max_cost: float | None
) -> list[tuple[str, float]]:
    kept = [(e, s - weight * unit(e)) for e, s in ranked if max_cost is None or unit(e) <= max_cost]
    return sorted(kept, key=lambda es: -es[1])


def stored_weight(ctx, router: str, config: dict) -> float:
    """The λ `calibrate` stored for `router` under this config (`RouterError` if none or another)."""
    found = ctx.load_artifact(ROUTER, f"{router}.json")
    if found is None:
        raise RouterError(
            f"{router} has no calibrated cost weight for base {ctx.base!r}: "
            f"`composer fit {router} --target-share 0.3` first"
        )
    meta, data = found
    if meta.get("config") != config:
        raise RouterError(
            f"{router}'s cost weight was calibrated with config {meta.get('config')}; this request "
            f"asks {config}: recalibrate with that config"
        )
    return float(json.loads(data)["cost_weight"])


def switch_point(scores: np.ndarray, costs: np.ndarray, expensive: np.ndarray) -> float:
    """The λ >= 0 beyond which argmax(scores - λ·costs) is no longer an expensive expert
    (0 when it never is; inf when it always is). The chosen cost never rises with λ."""
    if not expensive[np.argmax(scores)]:
        return 0.0
    cheap = ~expensive
    if not cheap.any():
        return float("inf")
    lo, hi = 0.0, 1.0
    pick = lambda lam: expensive[np.argmax(scores - lam * costs)]
    while pick(hi):
        lo, hi = hi, hi * 2
        if hi > 1e12:
            return float("inf")
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if pick(mid) else (lo, mid)
    return hi


def share_weight(points: np.ndarray, share: float) -> float:
    """The λ that leaves `share` of the prompts above their switch points: midway between
    the switch points it separates (the widest margin for prompts not seen)."""
    d = np.sort(points)[::-1]
    m = round(share * len(d))
    if m >= len(d) or not np.isfinite(d[m]):
        return 0.0 if m >= len(d) else float(np.max(d[np.isfinite(d)], initial=0.0))
    lo, hi = float(d[m]), float(d[m - 1]) if m > 0 else float("inf")
    return lo + 1.0 if not np.isfinite(hi) else (lo + hi) / 2


def calibrate(
    ctx,
    router: str,
    score: Callable[[Sequence[str]], list[list[tuple[str, float]]]],
    prompts: Sequence[str],
    target_share: float,
    config: dict,
    expensive_above: float | None = None,
) -> dict:
    """`score(prompts)` -> per prompt every expert's (name, score) as the router ranks them."""
    if not 0 <= target_share <= 1:
        raise RouterError(f"target_share must be in [0, 1], got {target_share}")
    if not prompts:
        raise RouterError("calibration needs prompts")
    names = ctx.expert_names
    units = ctx.pricing.units(names)
    unit = np.array([units[n] for n in names])
    floor = float(unit.min()) if expensive_above is None else float(expensive_above)
    expensive = unit > floor
    if not expensive.any():
        raise RouterError(f"no expert is priced above {floor:g}: nothing to calibrate (set costs first)")
    points = []
    for ranked in score(prompts):
        s = dict(ranked)
        points.append(switch_point(np.array([s.get(n, -1e9) for n in names]), unit, expensive))
    pts = np.array(points)
    weight = share_weight(pts, target_share)
    reached = float((pts > weight).mean())
    meta = {
        "config": config,
        "target_share": target_share,
        "expensive_above": floor,
        "prompts": len(prompts),
        "share_reached": reached,
        "encoder": ctx.encoder.name,
    }
    ctx.save_artifact(ROUTER, f"{router}.json", json.dumps({"cost_weight": weight}).encode(), meta)
    return {
        "router": router,
        "cost_weight": weight,
        "expensive": [n for n, x in zip(names, expensive) if x],
        **meta,
    }
