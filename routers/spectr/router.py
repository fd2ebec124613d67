"""spectr: every token, at every adapted module, goes to the top-k experts by ‖M_e x‖.

Training-free: M_e = diag(σ/‖σ‖) Vᵀ from the SVD of each expert's ΔW (made at registration,
`spectr/spectra.safetensors`), so the score is ‖ΔW_e x‖ / ‖ΔW_e‖_F; softmax(kept scores /
temperature), top-k or dynamic-k (top_p) as every token router. Experts of different ranks
share one table: each row holds an expert's M flattened and zero-padded (zero rows add
nothing to the norm).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from routers.base import Query, Router, RoutingPlan
from routers.spectr.fit import SPECTRA
from routers.token import GateKind, token_plan


def score(x: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """x [N, d], V [S, m·d] (each row an expert's M, [m, d] flattened) -> ‖M_e x‖, [N, S]."""
    S, d = V.shape[0], x.shape[-1]
    proj = x @ V.reshape(S * (V.shape[1] // d), d).T  # [N, S·m]
    return proj.float().view(x.shape[0], S, -1).norm(dim=-1)


SPECTR = GateKind("spectr", SPECTRA, prepare=lambda m: m, score=score)


class SpectrRouter(Router):
    """Training-free per-token routing by each expert's whole singular spectrum (SpectR)."""

    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        return [token_plan(self, "spectr") for _ in batch]
