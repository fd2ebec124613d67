"""Fitting retrieval's per-expert abstention thresholds from labelled prompts (offline).

Contract: `fit_thresholds(ctx, rows, top_m=, depth=)` (defaults: `RetrievalConfig`'s) takes
labelled prompts {"prompt", "expert"} (expert null or "" = no registered expert should answer
it), routes each as retrieval does (top-1 by the same score), and per expert e, among the
rows routed to e, finds the cut that makes the most right decisions — accept a row whose
label is e, abstain on the others — ties going to the lowest cut (accept more), and puts the
threshold midway between the two scores that cut separates (the widest margin these rows
allow). An expert whose best cut accepts every row routed to it, or that no row was routed
to, gets no threshold: it never abstains. Stored as the base model's artifact
`retrieval/thresholds.json` with the score settings it holds for (top_m, depth, encoder);
retrieval with `fitted_thresholds=true` uses it. Returns the thresholds and, on the fitting
rows, the share of right decisions without and with them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import pairwise

from routers.base import RouterError
from routers.retrieval.config import RetrievalConfig
from routers.semantic import score_experts

ROUTER, KEY = "retrieval", "thresholds.json"


def best_cut(scored: Sequence[tuple[float, bool]]) -> tuple[float | None, int]:
    """(threshold, right decisions) for rows (score, label is this expert), accepting scores at
    or above the threshold; None when accepting every row is (one of) the best. One sweep up
    the distinct scores: raising the cut past a score rejects its rows, which is right for the
    wrong ones and wrong for the right ones."""
    counts: dict[float, list[int]] = {}
    for s, ok in scored:
        counts.setdefault(s, [0, 0])[ok] += 1
    cuts = sorted(counts)
    best, right = None, sum(ok for _, ok in scored)  # no threshold: everything accepted
    most = right
    for below, t in pairwise(cuts):
        wrong_rows, right_rows = counts[below]
        right += wrong_rows - right_rows  # the cut now sits above `below`: its rows are rejected
        if right > most:
            best, most = (below + t) / 2, right
    return best, most


_DEFAULTS = RetrievalConfig()


def fit_thresholds(
    ctx, rows: Sequence[dict] | None = None, top_m: int = _DEFAULTS.top_m, depth: int = _DEFAULTS.depth
) -> dict:
    if not rows:
        raise RouterError(
            "retrieval: abstention thresholds are fitted from labelled prompts: give rows "
            "{prompt, expert} (expert null for prompts no expert should take; CLI: --data FILE.jsonl)"
        )
    try:
        prompts = [str(r["prompt"]) for r in rows]
        labels = [r.get("expert") or None for r in rows]
    except (KeyError, AttributeError) as e:
        raise RouterError(f"retrieval: every row needs 'prompt' and 'expert' (null for none): {e}") from None
    unknown = sorted({x for x in labels if x is not None} - set(ctx.expert_names))
    if unknown:
        raise RouterError(f"retrieval: rows name unregistered expert(s) {', '.join(unknown)}")
    ranked = score_experts(ctx, ctx.encoder.encode(prompts), 1, "max", depth, top_m)
    per: dict[str, list[tuple[float, bool]]] = {}
    for r, label in zip(ranked, labels):
        if r:
            per.setdefault(r[0][0], []).append((r[0][1], r[0][0] == label))
    thresholds, right = {}, 0
    for expert, scored in sorted(per.items()):
        t, n = best_cut(scored)
        right += n
        if t is not None:
            thresholds[expert] = t
    before = sum(ok for scored in per.values() for _, ok in scored)
    meta = {
        "format": "json",
        "top_m": top_m,
        "depth": depth,
        "encoder": ctx.encoder.name,
        "rows": len(rows),
        "right_without": before / len(rows),
        "right_with": right / len(rows),
    }
    ctx.save_artifact(ROUTER, KEY, json.dumps(thresholds).encode(), meta)
    return {"thresholds": thresholds, **{k: meta[k] for k in ("rows", "right_without", "right_with")}}
