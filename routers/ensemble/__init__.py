"""ensemble: run the top-k experts separately and keep the most confident answer."""

from routers.base import register_method
from routers.embeddings import EMBEDDINGS
from routers.ensemble.config import EnsembleConfig
from routers.ensemble.router import EnsembleRouter

register_method("ensemble", EnsembleRouter, EnsembleConfig, artifacts=[EMBEDDINGS])

__all__ = ["EnsembleRouter"]
