"""arrow (Ostapenko et al. 2024): training-free per-token routing by LoRA prototypes."""
from routers.arrow.fit import fit_prototypes, prototype
from routers.arrow.router import ArrowRouter

__all__ = ["ArrowRouter", "fit_prototypes", "prototype"]
