"""coe (Composition of Experts): category classifier on prompt embeddings, then category -> expert."""
from routers.coe.fit import derive_map, fit_coe
from routers.coe.router import CoERouter

__all__ = ["CoERouter", "derive_map", "fit_coe"]
