"""Per-expert cost metadata: what serving one request with an expert costs.

Contract: `norm_cost(cost)` accepts None (no cost given) or a dict with any of
`input_per_1m`, `output_per_1m` (price per million input / output tokens, e.g. USD, what
hosted APIs and endpoint experts charge) and `active_params` (parameters active per token,
for local experts); every value a finite number >= 0. It returns the dict with the given
keys only (`ValidationError` names a bad one). Stored in the record's `config["cost"]`,
set at registration (`cost=`) or later (`Registry.set_cost`). How a router compares costs
(one number per expert) is `routers.cost`'s business.
"""

from __future__ import annotations

import math

from .errors import ValidationError

COST_KEYS = ("input_per_1m", "output_per_1m", "active_params")


def norm_cost(cost) -> dict | None:
    if cost is None:
        return None
    if not isinstance(cost, dict):
        raise ValidationError(f"cost must be a dict with any of {', '.join(COST_KEYS)}")
    unknown = set(cost) - set(COST_KEYS)
    if unknown:
        raise ValidationError(
            f"unknown cost field(s) {', '.join(sorted(unknown))}; known: {', '.join(COST_KEYS)}"
        )
    out = {}
    for k in COST_KEYS:
        v = cost.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValidationError(f"cost {k} must be a finite number >= 0, got {v!r}")
        out[k] = int(v) if k == "active_params" else float(v)
    return out or None
