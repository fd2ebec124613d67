"""centroid: the expert whose mean example embedding is closest to the query."""

from routers.base import register_method
from routers.centroid.config import CentroidConfig
from routers.centroid.router import CentroidRouter
from routers.embeddings import EMBEDDINGS

register_method("centroid", CentroidRouter, CentroidConfig, artifacts=[EMBEDDINGS])

__all__ = ["CentroidRouter"]
