"""Fitting CoE's two steps (offline): a category classifier and a category -> expert map.

Contract:
- `fit_coe(ctx, rows=None, expert_map=None, results=None, by="expert")` embeds the prompts
  of `rows` ({"prompt", "category"}) as a nearest-neighbour category classifier (`knn`)
  and stores it with the map as the base model's artifact `coe/classifier.safetensors`.
  Without rows it uses the registered examples, labelled by expert name (`by="expert"`)
  or first domain (`by="domain"`). The map is `expert_map` if given, else derived from evaluation
  `results`, else the identity (by expert) or, per domain, the expert of that domain with
  the best mean registered score.
- `derive_map(results)`: per category, the expert with the best mean score; lower mean
  `cost` breaks ties (a row's, else `unit_cost(expert)`: the registered price), then the name.
  Rows: {"category", "expert", "score", optional "cost"}.
- `fit_classifier(...)` is the shared step, reused by Bench-CoE's subject level.
Returns a summary dict (categories, map, rows, source).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from routers import knn
from routers.base import RouterError

ROUTER, KEY = "coe", "classifier.safetensors"


def derive_map(results: Sequence[dict], unit_cost=None) -> dict[str, str]:
    acc: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    price = unit_cost or (lambda expert: 0.0)
    for r in results:
        try:
            cost = r["cost"] if r.get("cost") is not None else price(str(r["expert"]))
            acc[(str(r["category"]), str(r["expert"]))].append((float(r["score"]), float(cost)))
        except KeyError as e:
            raise RouterError(f"evaluation result row lacks {e.args[0]!r}: {r}") from None
    best: dict[str, tuple] = {}
    for (cat, expert), vals in acc.items():
        score, cost = np.mean([v[0] for v in vals]), np.mean([v[1] for v in vals])
        key = (-score, cost, expert)
        if cat not in best or key < best[cat][0]:
            best[cat] = (key, expert)
    return {cat: expert for cat, (_, expert) in sorted(best.items())}


def _default_rows(ctx, by: str) -> list[dict]:
    rows = []
    for rec in ctx.experts:
        cat = rec.name if by == "expert" else (rec.domains[0] if rec.domains else rec.name)
        rows += [{"prompt": ex["prompt"], "category": cat} for ex in rec.examples]
    return rows


def _domain_map(ctx, categories: list[str]) -> dict[str, str]:
    out = {}
    for cat in categories:
        members = [r for r in ctx.experts if (r.domains[0] if r.domains else r.name) == cat]
        members.sort(key=lambda r: (-np.mean(list(r.scores.values()) or [0.0]), r.name))
        out[cat] = members[0].name
    return out


def fit_classifier(
    ctx, rows: Sequence[dict], expert_map: dict[str, str], router: str, key: str, source: str
) -> dict:
    if not rows:
        raise RouterError(f"{router}: no labelled prompts to fit on")
    try:
        prompts, labels = [str(r["prompt"]) for r in rows], [str(r["category"]) for r in rows]
    except KeyError as e:
        raise RouterError(
            f"{router}: every training row needs 'prompt' and 'category' (missing {e.args[0]!r})"
        ) from None
    categories = sorted(set(labels))
    unmapped = [c for c in categories if c not in expert_map]
    if unmapped:
        raise RouterError(f"{router}: no expert mapped for categories {', '.join(unmapped)}")
    live = set(ctx.expert_names)
    dead = sorted({e for c, e in expert_map.items() if c in categories and e not in live})
    if dead:
        raise RouterError(f"{router}: map points to unregistered expert(s) {', '.join(dead)}")
    X = ctx.encoder.encode(prompts)
    Y = np.eye(len(categories), dtype=np.float32)[[categories.index(c) for c in labels]]
    meta = {
        "format": "safetensors",
        "categories": categories,
        "map": {c: expert_map[c] for c in categories},
        "encoder": ctx.encoder.name,
        "rows": len(rows),
        "source": source,
    }
    ctx.save_artifact(router, key, knn.to_bytes(X, Y), meta)
    return {k: meta[k] for k in ("categories", "map", "rows", "source")}


def fit_coe(
    ctx,
    rows: Sequence[dict] | None = None,
    expert_map: dict[str, str] | None = None,
    results: Sequence[dict] | None = None,
    by: str = "expert",
) -> dict:
    if by not in ("expert", "domain"):
        raise RouterError(f"coe: by must be 'expert' or 'domain', not {by!r}")
    source = "labelled rows" if rows is not None else f"registered examples by {by}"
    rows = list(rows) if rows is not None else _default_rows(ctx, by)
    categories = sorted({str(r.get("category")) for r in rows})
    if expert_map is None:
        if results is not None:
            expert_map, source = (
                derive_map(results, ctx.pricing.unit),
                source + ", map from evaluation results",
            )
        elif by == "expert" and set(categories) <= set(ctx.expert_names):
            expert_map = {c: c for c in categories}
        elif by == "domain":
            expert_map, source = _domain_map(ctx, categories), source + ", map from registered scores"
        else:
            raise RouterError("coe: give an expert map or evaluation results for these categories")
    return fit_classifier(ctx, rows, expert_map, ROUTER, KEY, source)
