"""phatgoose: every token, at every adapted module, goes to the top-k experts by gate score.

score_e = LN(x) · LN(v_e) / sqrt(d_in) (LN without affine), top-k (default 2), softmax over
the kept scores — computed inside the host (`composer.host.gates`) at every decoding step.
Needs fitted: the per-expert `phatgoose/gates.safetensors` artifact (made at registration).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from routers.activations import layer_norm
from routers.base import Query, Router, RoutingPlan
from routers.phatgoose.fit import GATES
from routers.token import GateKind, token_plan

PHATGOOSE = GateKind(
    "phatgoose", GATES, prepare=layer_norm, score=lambda x, V: layer_norm(x) @ V.T / math.sqrt(x.shape[-1])
)


class PhatgooseRouter(Router):
    """Per-token, per-module top-k gates trained post-hoc per expert (PHATGOOSE)."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        return [token_plan(self, "phatgoose") for _ in batch]
