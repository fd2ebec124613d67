"""Arrow prototypes: the top right singular vector of each module's ΔW = B·A, never formed.

Contract: `prototype(A, B)` (A [r, d_in], B [d_out, r]) returns the unit-norm top right
singular vector of B·A in float64 via two thin QRs and an r×r SVD — A^T = Q_a R_a,
B = Q_b R_b, so B·A = Q_b (R_b R_a^T) Q_a^T and with R_b R_a^T = U S V^T the right singular
vectors are Q_a V — cost O((d_in + d_out) r^2), exact (no power iteration). The sign is
fixed (largest-magnitude entry positive); routing uses |x·p|, so it never matters.
`thin_svd(A, B)` is that factorisation (SpectR uses all of it). `fit_prototypes(lora)` -> {module: p}. `PROTOTYPES` is the per-expert artifact (fitter
"arrow", arrow/prototypes.safetensors; training-free: needs only the adapter).
"""

from __future__ import annotations

from pathlib import Path

import torch

from registry.lora import read_lora
from routers.artifacts import Artifact
from routers.token import vectors_to_bytes


def thin_svd(A: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values [r] and right singular vectors [r, d_in] (rows) of B·A, in float64."""
    qa, ra = torch.linalg.qr(A.double().T)  # [d_in, r], [r, r]
    _, rb = torch.linalg.qr(B.double(), mode="r")  # R of B = Q_b R_b (Q_b is not needed)
    _, s, vh = torch.linalg.svd(rb @ ra.T)
    return s, vh @ qa.T


def prototype(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    p = thin_svd(A, B)[1][0]
    p = p / p.norm()
    return (p * torch.sign(p[p.abs().argmax()])).float()


def fit_prototypes(lora) -> dict[str, torch.Tensor]:
    return {m: prototype(d.A, d.B) for m, d in lora.modules.items()}


def _fit(ctx, record, path: Path) -> tuple[bytes, dict]:
    protos = fit_prototypes(read_lora(path))
    return vectors_to_bytes(protos), {
        "format": "safetensors",
        "method": "qr+svd (exact)",
        "modules": len(protos),
    }


PROTOTYPES = Artifact("arrow", "arrow", "prototypes.safetensors", _fit)
