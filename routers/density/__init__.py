"""density: the expert whose examples are densest around the query (a kernel density estimate)."""

from routers.base import register_method
from routers.density.config import DensityConfig
from routers.density.router import DensityRouter
from routers.embeddings import EMBEDDINGS

register_method("density", DensityRouter, DensityConfig, artifacts=[EMBEDDINGS])

__all__ = ["DensityRouter"]
