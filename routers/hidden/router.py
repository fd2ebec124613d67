"""hidden: every token, at every adapted module, goes to the top-k experts by how close it lies
to each expert's mean hidden state there.

score_e = LN(x) · LN(c_e) / sqrt(d_in), c_e the mean of the base's standardised inputs to the
module over the expert's own examples (`hidden/centroids.safetensors`, made at registration):
PHATGOOSE's score with the gate vector replaced by the centroid, so the two differ only in
how the per-expert vector is obtained (fitted by gradient vs averaged). Top-k (default 2) or
dynamic-k (top_p), softmax over the kept scores, as every token router.
"""

from __future__ import annotations

from collections.abc import Sequence

from routers.base import Query, Router, RoutingPlan
from routers.hidden.fit import CENTROIDS
from routers.phatgoose.router import PHATGOOSE
from routers.token import GateKind, token_plan

HIDDEN = GateKind("hidden", CENTROIDS, prepare=PHATGOOSE.prepare, score=PHATGOOSE.score)


class HiddenRouter(Router):
    """Training-free per-token routing by the experts' mean hidden states (one forward pass
    over each expert's examples at registration, no gradient)."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        return [token_plan(self, "hidden") for _ in batch]
