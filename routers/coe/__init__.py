"""coe (Composition of Experts): category classifier on prompt embeddings, then category -> expert."""

from routers.base import register_method
from routers.coe.config import CoEConfig
from routers.coe.fit import derive_map, fit_coe
from routers.coe.router import CoERouter

register_method("coe", CoERouter, CoEConfig, fit=fit_coe)

__all__ = ["CoERouter", "derive_map", "fit_coe"]
