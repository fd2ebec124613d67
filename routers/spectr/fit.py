"""SpectR spectra: each module's ΔW = B·A as its whole thin SVD, never formed.

Contract: `spectrum(A, B)` (A [r, d_in], B [d_out, r]) returns M = diag(σ / ‖σ‖) Vᵀ, [r, d_in]:
the right singular vectors of B·A, each scaled by its share of the spectrum (σ normalised to
unit length, so every expert's ΔW counts alike, as Arrow's unit prototypes do). Then
‖M x‖ = ‖B·A x‖ / ‖B·A‖_F: how strongly the expert's update responds to x, along every
direction it writes, not only the first. For a rank-1 adapter M is Arrow's prototype and the
score is Arrow's |x·p|. Computed by Arrow's `thin_svd`, in float64 via two thin QRs and an
r×r SVD (A^T = Q_a R_a, B = Q_b R_b, R_b R_aᵀ = U S Vᵀ: the right singular vectors are Q_a V),
O((d_in + d_out) r²). Singular values below 1e-12 of the largest are dropped (a rank-deficient
adapter's null directions). Stored flattened, [r·d_in], so the host keeps one row per expert.
`fit_spectra(lora)` -> {module: M.flatten()}; `SPECTRA` is the per-expert artifact (fitter
"spectr", spectr/spectra.safetensors; training-free: needs only the adapter).
"""

from __future__ import annotations

from pathlib import Path

import torch

from registry.lora import read_lora
from routers.arrow.fit import thin_svd
from routers.artifacts import Artifact
from routers.token import vectors_to_bytes


def spectrum(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    s, v = thin_svd(A, B)
    keep = s > 1e-12 * s[0]
    s, v = s[keep], v[keep]
    return ((s / s.norm()).unsqueeze(1) * v).float()  # [r', d_in]


def fit_spectra(lora) -> dict[str, torch.Tensor]:
    return {m: spectrum(d.A, d.B).flatten() for m, d in lora.modules.items()}


def _fit(ctx, record, path: Path) -> tuple[bytes, dict]:
    spectra = fit_spectra(read_lora(path))
    return vectors_to_bytes(spectra), {
        "format": "safetensors",
        "method": "qr+svd (exact), sigma normalised",
        "modules": len(spectra),
    }


SPECTRA = Artifact("spectr", "spectr", "spectra.safetensors", _fit)
