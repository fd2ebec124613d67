"""arrow: every token, at every adapted module, goes to the top-k experts by |x · prototype|.

Training-free: prototypes are the top right singular vectors of each expert's ΔW (made at
registration, `arrow/prototypes.safetensors`); softmax(kept scores / temperature). Agrees
with PEFT's `create_arrow_model` on the same adapters and settings (tests/test_token_routers).
"""

from __future__ import annotations

from collections.abc import Sequence

from routers.arrow.fit import PROTOTYPES
from routers.base import Query, Router, RoutingPlan
from routers.token import GateKind, token_plan

ARROW = GateKind("arrow", PROTOTYPES, prepare=lambda p: p, score=lambda x, V: (x @ V.T).abs())


class ArrowRouter(Router):
    """Training-free per-token routing by LoRA prototypes (Arrow; as PEFT's create_arrow_model)."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        return [token_plan(self, "arrow") for _ in batch]
