"""arrow (Ostapenko et al. 2024): training-free per-token routing by LoRA prototypes."""

from routers.arrow.config import ArrowConfig
from routers.arrow.fit import PROTOTYPES, fit_prototypes, prototype
from routers.arrow.router import ARROW, ArrowRouter
from routers.base import register_method

register_method("arrow", ArrowRouter, ArrowConfig, artifacts=[PROTOTYPES], gate=ARROW)

__all__ = ["ARROW", "PROTOTYPES", "ArrowRouter", "fit_prototypes", "prototype"]
