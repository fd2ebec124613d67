"""retrieval (Jang et al. 2023): the expert whose examples hold the query's nearest neighbour."""

from routers.base import register_method
from routers.embeddings import EMBEDDINGS
from routers.retrieval.config import RetrievalConfig
from routers.retrieval.fit import fit_thresholds
from routers.retrieval.router import RetrievalRouter

register_method("retrieval", RetrievalRouter, RetrievalConfig, artifacts=[EMBEDDINGS], fit=fit_thresholds)

__all__ = ["RetrievalRouter", "fit_thresholds"]
